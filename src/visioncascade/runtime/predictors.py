"""``Predictor`` backends: onnxruntime (default), LiteRT, Keras (reference) and Core ML (macOS only).

Every predictor reads its input size, colour mode and labels from the artifact's :class:`ModelSpec` — never
from the caller — and turns raw uint8 frames into probabilities with
:func:`visioncascade.data.images.prepare_image`, the same function training used.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from visioncascade.data.images import prepare_image
from visioncascade.errors import ConfigError, ModelError, VisionCascadeError
from visioncascade.spec import ModelSpec

__all__ = [
    "BACKENDS",
    "CoreMLPredictor",
    "KerasPredictor",
    "LiteRTPredictor",
    "OnnxPredictor",
    "Predictor",
    "backend_of",
    "find_spec",
    "load_predictor",
]

BACKENDS = ("auto", "onnx", "litert", "keras", "coreml")
_SUFFIX_BACKEND = {
    ".onnx": "onnx",
    ".tflite": "litert",
    ".keras": "keras",
    ".mlpackage": "coreml",
    ".mlmodel": "coreml",
}


@runtime_checkable
class Predictor(Protocol):
    """Something that turns frames into class probabilities for one model."""

    spec: ModelSpec
    backend: str

    def predict_batch(self, inputs: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, K)`` for prepared float32 inputs ``(N, H, W, C)`` of raw 0..255 pixels."""
        ...

    def predict(self, frame: np.ndarray, channel_order: str = "rgb") -> np.ndarray:
        """Probabilities ``(K,)`` for one raw uint8 frame of any size."""
        ...


def backend_of(path: str | Path) -> str | None:
    """The backend that runs ``path``: by its suffix (``.onnx`` → onnx, ``.tflite`` → litert, ``.keras`` →
    keras, ``.mlpackage``/``.mlmodel`` → coreml), a run folder → keras; None for anything else."""
    path = Path(path)
    if path.is_dir() and path.suffix != ".mlpackage":
        return "keras"
    return _SUFFIX_BACKEND.get(path.suffix)


def find_spec(artifact: str | Path) -> ModelSpec:
    """The :class:`ModelSpec` that travels with ``artifact``.

    Looked up, in order: ``<artifact>.spec.json``; an entry for the artifact in ``manifest.json`` beside it;
    ``spec.json`` beside it (a run folder or an export folder); for a run folder, its ``spec.json``.
    """
    artifact = Path(artifact)
    if artifact.is_dir() and (artifact / "spec.json").is_file() and artifact.suffix != ".mlpackage":
        return ModelSpec.load(artifact / "spec.json")
    sidecar = artifact.with_name(artifact.name + ".spec.json")
    if sidecar.is_file():
        return ModelSpec.load(sidecar)
    manifest = artifact.parent / "manifest.json"
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{manifest} is not valid JSON ({exc}); export the model again, or remove the file"
            ) from None
        entries = data.get("artifacts", []) if isinstance(data, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigError(
                f"{manifest} is not a visioncascade manifest (an object with a list of artifacts); "
                "export the model again, or remove the file"
            )
        try:
            for entry in entries:
                if (
                    Path(str(entry.get("file", entry.get("path", "")))).name == artifact.name
                    and "spec" in entry
                ):
                    return ModelSpec.from_dict(entry["spec"])
            if "spec" in data:
                return ModelSpec.from_dict(data["spec"])
        except ConfigError as exc:  # say which file, so that it can be mended or written again
            raise ConfigError(f"{manifest}: {exc}") from None
    if (artifact.parent / "spec.json").is_file():
        return ModelSpec.load(artifact.parent / "spec.json")
    raise ConfigError(
        f"no ModelSpec found for {artifact}: expected {sidecar.name}, a manifest.json or a spec.json beside it "
        "(visioncascade export writes them)"
    )


class _Base:
    backend = "base"

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def prepare(self, frame: np.ndarray, channel_order: str = "rgb") -> np.ndarray:
        """One raw frame → a ``(1, H, W, C)`` float32 model input."""
        prepared = prepare_image(frame, self.spec.input_size, self.spec.color_mode, channel_order)
        return prepared[None].astype(np.float32)

    def predict(self, frame: np.ndarray, channel_order: str = "rgb") -> np.ndarray:
        """Probabilities ``(K,)`` for one raw uint8 frame of any size."""
        return self.predict_batch(self.prepare(frame, channel_order))[0]

    def predict_batch(self, inputs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r})"


class OnnxPredictor(_Base):
    """onnxruntime on the CPU: one intra-op thread and no spinning by default (cascade-friendly)."""

    backend = "onnx"

    def __init__(self, path: str | Path, spec: ModelSpec | None = None, threads: int = 1):
        from visioncascade.export import OnnxRunner

        super().__init__(spec or find_spec(path))
        self.runner = OnnxRunner(path, intra_op_threads=threads)

    def predict_batch(self, inputs: np.ndarray) -> np.ndarray:
        return self.runner.predict(inputs)


class LiteRTPredictor(_Base):
    """LiteRT (``ai_edge_litert``) interpreter, one image at a time; exported models take float32 in and out."""

    backend = "litert"

    def __init__(self, path: str | Path, spec: ModelSpec | None = None, threads: int = 1):
        from visioncascade.export import LiteRTRunner

        super().__init__(spec or find_spec(path))
        self.runner = LiteRTRunner(path, num_threads=threads)

    def predict_batch(self, inputs: np.ndarray) -> np.ndarray:
        return self.runner.predict(inputs)


class KerasPredictor(_Base):
    """The Keras model itself (the reference; slow per frame — use it to check, not to serve)."""

    backend = "keras"

    def __init__(self, path: str | Path, spec: ModelSpec | None = None):
        from visioncascade._tf import quiet_tensorflow

        quiet_tensorflow()  # only this backend needs TensorFlow; onnx and litert start without it
        from visioncascade.models import load_model

        path = Path(path)
        super().__init__(spec or find_spec(path))
        self.model = load_model(path)

    def predict_batch(self, inputs: np.ndarray) -> np.ndarray:
        import keras

        return keras.ops.convert_to_numpy(self.model(np.asarray(inputs, np.float32), training=False))


class CoreMLPredictor(_Base):
    """Real Core ML through coremltools (macOS only): image input, classifier output."""

    backend = "coreml"

    def __init__(self, path: str | Path, spec: ModelSpec | None = None):
        if sys.platform != "darwin":
            raise ConfigError(
                f"the coreml backend runs only on macOS (this is {platform.system()}); use --backend onnx or litert"
            )
        import coremltools as ct

        super().__init__(spec or find_spec(path))
        self.model = ct.models.MLModel(str(path))
        description = self.model.get_spec().description
        self._input = description.input[0].name
        self._probs = description.predictedProbabilitiesName

    def predict_batch(self, inputs: np.ndarray) -> np.ndarray:
        from PIL import Image

        rows = []
        for image in np.asarray(inputs, np.float32).round().clip(0, 255).astype(np.uint8):
            pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
            out = self.model.predict({self._input: pil})[self._probs]
            rows.append([out[label] for label in self.spec.labels])
        return np.asarray(rows, np.float32)


def load_predictor(path: str | Path, backend: str = "auto", spec: ModelSpec | None = None) -> Predictor:
    """Open ``path`` with ``backend`` (``auto`` picks by file suffix; a run folder means Keras).

    The model is run once on a blank input, to check that it takes the input its spec describes and gives
    one probability per label of it.

    Raises:
        ConfigError: An unknown or unsuitable backend, a missing file or spec, or a runtime package that
            is not installed.
        ModelError: The file cannot be loaded (damaged, truncated, or not a model of its kind), or does not
            fit its spec (input shape, number of labels).
    """
    path = Path(path)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not path.exists():
        raise ConfigError(f"model {path} does not exist")
    expected = backend_of(path)
    if backend == "auto":
        if expected is None:
            raise ConfigError(
                f"cannot tell the backend of {path.name}: expected .onnx, .tflite, .keras, .mlpackage or a run folder"
            )
        backend = expected
    if expected is not None and backend != expected:
        raise ConfigError(f"backend {backend!r} cannot run {path.name}; it is a {expected} model")
    cls = {
        "onnx": OnnxPredictor,
        "litert": LiteRTPredictor,
        "keras": KerasPredictor,
        "coreml": CoreMLPredictor,
    }
    try:
        predictor = cls[backend](path, spec)
    except ImportError as exc:
        raise ConfigError(
            f"the {backend} backend needs the Python package {exc.name or 'it imports'}, which is not "
            f"installed; install it with pip install 'visioncascade[export]' (runs {path.name})"
        ) from exc
    except VisionCascadeError:
        raise
    except Exception as exc:  # onnxruntime, LiteRT, Keras and coremltools: their own types for a bad file
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelError(
            f"cannot load {path} with the {backend} backend ({type(exc).__name__}: {detail}); the file is "
            "damaged or is not such a model: copy or export it again"
        ) from exc
    _check_outputs(predictor, path)
    return predictor


def _check_outputs(predictor: Predictor, path: Path) -> None:
    """Run ``predictor`` once on a blank input of its spec's shape: it must give one probability per label.

    A spec beside the wrong model (another export's ``spec.json``) would otherwise fail on the first frame
    that passes, or name the wrong labels silently. Raises :class:`ModelError` naming the file.
    """
    spec = predictor.spec
    probe = np.zeros((1, *spec.input_shape), np.float32)
    try:
        out = np.asarray(predictor.predict_batch(probe))
    except Exception as exc:  # each backend has its own error types for an input of the wrong shape
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelError(
            f"model {path} does not run on the input its spec describes ({'×'.join(map(str, spec.input_shape))}; "
            f"{type(exc).__name__}: {detail}); the spec beside it belongs to another model: export it again"
        ) from exc
    if out.ndim != 2 or out.shape != (1, spec.num_classes):
        width = out.shape[-1] if out.ndim else 0
        raise ModelError(
            f"model {path} gives {width} probabilities (output shape {tuple(out.shape)}) but its spec lists "
            f"{spec.num_classes} labels {list(spec.labels)}; the spec beside it belongs to another model: "
            "export it again, or mend the spec's labels"
        )
