"""The parity proof: every artifact must compute the Keras model's probabilities from the same app frames.

Frames are the run's held-out test images at their **original size** as raw uint8 frames, the way an app
receives them:

* an RGB dataset gives each image as an RGB frame (camera / PIL path) and as a BGR frame (OpenCV path);
* a grayscale dataset gives each image as a 1-channel frame, as a camera-like colour RGB frame (the gray
  image tinted so that R, G and B differ) and as that colour frame in OpenCV's BGR order.

Each frame goes through :func:`~visioncascade.data.images.prepare_image` (``channel_order="bgr"`` for the
OpenCV frames) — the one definition of frame → model input. An OpenCV BGR frame must give exactly the input
of the RGB frame it is the BGR copy of (checked here: that is what the BGR frames prove, of
``prepare_image``); the artifact is not given that same input twice. Each *distinct* prepared input goes
through the artifact's own input path (a Core ML image input, a TFLite / ONNX float tensor), and the Keras
model gets the same inputs; counts and top-1 agreements are over distinct inputs.
Limits: max absolute probability difference fp32 ≤ 1e-4, fp16 ≤ 1e-2, int8 ≤ 5e-2, top-1 agreement ≥ 99 %.

Top-1 agreement is judged on the frames where the Keras model is decisive: its top two probabilities
differ by more than twice the precision's limit. On a near tie (Keras 0.4996 / 0.5004, say) an artifact
within the limit may rank the two classes the other way (0.5024 / 0.4976: |Δp| 0.003 under int8's 0.05),
so a flip there is reported (``near_ties``, ``near_tie_flips``, and ``top1_agreement`` over all frames)
but does not fail the proof; on a decisive frame no artifact within the limit can flip.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from visioncascade.data import Dataset, load_dataset, locate_run_data, prepare_image, resolve_splits
from visioncascade.errors import ExportError, VisionCascadeError
from visioncascade.spec import ModelSpec

__all__ = [
    "LIMITS",
    "MIN_TOP1_AGREEMENT",
    "ParityFrames",
    "artifact_predictor",
    "compare_probabilities",
    "parity_dataset",
    "parity_frames",
    "representative_images",
    "run_dataset",
]

LIMITS = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2}
MIN_TOP1_AGREEMENT = 0.99
_TINT = np.array([1.0, 0.86, 0.72], dtype=np.float32)  # camera-like colour cast: R, G and B differ


@dataclass
class ParityFrames:
    """The parity images: the app frames built, how each was fed, and the distinct prepared model inputs.

    ``frames``, ``channel_orders`` and ``sources`` list every app frame; ``prepared`` holds each distinct
    prepared input once (what every artifact and Keras are run on) and ``input_sources`` names the first
    frame that gave each. ``fingerprint`` is over every frame's prepared input, in order.
    """

    frames: list[np.ndarray]
    channel_orders: list[str]
    sources: list[str]
    prepared: np.ndarray
    split: str
    fingerprint: str = field(default="")
    input_sources: list[str] = field(default_factory=list)
    bgr_checked: int = 0

    def __len__(self) -> int:
        return len(self.prepared)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for the manifest."""
        kinds: dict[str, int] = {}
        for source in self.sources:
            kind = source.split(" ")[1]
            kinds[kind] = kinds.get(kind, 0) + 1
        return {
            "split": self.split,
            "frames": len(self.frames),
            "inputs": len(self.prepared),
            "duplicate_frames": len(self.frames) - len(self.prepared),
            "source_images": len({s.split(" ", 1)[0] for s in self.sources}),
            "frame_kinds": kinds,
            "bgr_frames_checked": self.bgr_checked,
            "fingerprint": self.fingerprint,
            "prepared_with": "visioncascade.data.images.prepare_image",
        }


def run_dataset(run_dir: Path, data: str | Path | None = None) -> tuple[Dataset, int]:
    """The run's dataset with the run's own splits (``config.yaml``'s data and seed), and the seed."""
    dataset, seed = _load_run_data(Path(run_dir), data)
    dataset, _ = resolve_splits(dataset, seed=seed)
    return dataset, seed


def parity_dataset(
    run_dir: Path, spec: ModelSpec, data: str | Path | None = None
) -> tuple[Dataset, int, list[str]]:
    """:func:`run_dataset` for a parity proof of the model of ``spec``: also the notes for the manifest.

    Data whose class names are not ``spec.labels`` is refused (:class:`ExportError` naming the classes
    missing and extra): it is not the run's data. Data of the same classes whose fingerprint is not the
    one the run was trained on (other images, or the run's data changed since) is used, with a note that
    its held-out images may overlap the training images, as ``evaluate`` notes for such data.
    """
    dataset, seed = _load_run_data(Path(run_dir), data)
    if set(dataset.labels) != set(spec.labels):
        missing = [label for label in spec.labels if label not in dataset.labels]
        extra = [label for label in dataset.labels if label not in spec.labels]
        which = "; ".join(
            part
            for part in (
                f"it lacks {', '.join(map(repr, missing))}" if missing else "",
                f"it has {', '.join(map(repr, extra))} the model does not" if extra else "",
            )
            if part
        )
        raise ExportError(
            f"the data {dataset.source} has classes {list(dataset.labels)}, the model's labels are "
            f"{list(spec.labels)} ({which}): it is not this run's data; pass --data with the run's dataset"
        )
    notes: list[str] = []
    fingerprint = dataset.fingerprint()
    if spec.data_fingerprint and fingerprint != spec.data_fingerprint:
        notes.append(
            f"the parity images come from {dataset.source}, whose fingerprint {fingerprint} is not that of "
            f"the data the run was trained on ({spec.data_fingerprint}); its held-out images may overlap "
            "the training images (the proof compares each artifact with Keras on the same frames either way)"
        )
    dataset, _ = resolve_splits(dataset, seed=seed)
    return dataset, seed, notes


def _load_run_data(run_dir: Path, data: str | Path | None) -> tuple[Dataset, int]:
    """The run's dataset as loaded (before its splits are made) and the run's seed."""
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    seed = int((config.get("train") or {}).get("seed", 0))
    source = data if data is not None else config.get("data")
    if source is None:
        raise ExportError(
            f"{run_dir} has no config.yaml naming its data, so there are no held-out images for the parity "
            "proof; pass --data with the run's dataset"
        )
    try:
        if data is None:  # data and run may have moved together since training
            source, _ = locate_run_data(source, run_dir, config.get("data_beside_run"))
        dataset = load_dataset(source)
    except VisionCascadeError as exc:
        raise ExportError(
            f"cannot load the run's data {source!r} for the parity proof ({exc}); pass --data with the dataset"
        ) from exc
    return dataset, seed


def _pick(n: int, limit: int, seed: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def parity_frames(dataset: Dataset, spec: ModelSpec, limit: int = 200, seed: int = 0) -> ParityFrames:
    """Build app-like frames from up to ``limit`` held-out images (test split, else val) of ``dataset``."""
    if limit < 1:
        raise ExportError(f"a parity proof needs at least 1 held-out image, got {limit}")
    split = "test" if len(dataset.splits.get("test", [])) else "val"
    if split not in dataset.splits or not len(dataset.splits[split]):
        raise ExportError(f"dataset {dataset.name!r} has no held-out test or val images for the parity proof")
    images = dataset.splits[split].images
    frames: list[np.ndarray] = []
    orders: list[str] = []
    sources: list[str] = []
    for i in _pick(len(images), limit, seed):
        image = np.asarray(images[i])
        where = f"{split}[{i}]"
        gray = image.ndim == 2 or image.shape[-1] == 1
        if gray:
            plain = image.reshape(image.shape[:2])
            colour = np.clip(plain[..., None].astype(np.float32) * _TINT, 0, 255).astype(np.uint8)
            frames += [plain, colour, np.ascontiguousarray(colour[..., ::-1])]
            orders += ["rgb", "rgb", "bgr"]
            h, w = plain.shape
            sources += [
                f"{where} gray-frame {w}x{h}",
                f"{where} rgb-camera-frame {w}x{h}",
                f"{where} bgr-opencv-frame {w}x{h}",
            ]
        else:
            rgb = image[..., :3]
            frames += [rgb, np.ascontiguousarray(rgb[..., ::-1])]
            orders += ["rgb", "bgr"]
            h, w = rgb.shape[:2]
            sources += [f"{where} rgb-camera-frame {w}x{h}", f"{where} bgr-opencv-frame {w}x{h}"]
    every = [
        prepare_image(frame, spec.input_size, spec.color_mode, channel_order=order)
        for frame, order in zip(frames, orders, strict=True)
    ]
    digest = hashlib.sha256(np.stack(every).tobytes()).hexdigest()[:16]
    bgr_checked = 0
    for i, order in enumerate(orders):
        if order == "bgr":  # the BGR copy of the frame before it: the OpenCV path must give the same input
            if not np.array_equal(every[i], every[i - 1]):
                raise ExportError(
                    f"prepare_image gives {sources[i]} another model input than {sources[i - 1]}, the RGB frame "
                    "it is the BGR copy of: the OpenCV path is broken (a bug in visioncascade, please report it)"
                )
            bgr_checked += 1
    seen: dict[bytes, int] = {}
    for i, prepared_input in enumerate(every):
        seen.setdefault(prepared_input.tobytes(), i)
    distinct = sorted(seen.values())
    return ParityFrames(
        frames,
        orders,
        sources,
        np.stack([every[i] for i in distinct]),
        split,
        digest,
        input_sources=[sources[i] for i in distinct],
        bgr_checked=bgr_checked,
    )


def representative_images(dataset: Dataset, spec: ModelSpec, limit: int = 200, seed: int = 0) -> np.ndarray:
    """Up to ``limit`` training images prepared for the model: the int8 calibration set."""
    images = dataset.splits["train"].images
    index = _pick(len(images), limit, seed)
    return np.stack([prepare_image(images[i], spec.input_size, spec.color_mode) for i in index])


def compare_probabilities(
    reference: np.ndarray, got: np.ndarray, precision: str, sources: list[str]
) -> dict[str, Any]:
    """Parity figures of ``got`` against ``reference`` (both ``(N, K)`` probabilities) for ``precision``."""
    reference = np.asarray(reference, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if got.shape != reference.shape:
        raise ExportError(
            f"the artifact returned probabilities of shape {got.shape}, Keras {reference.shape}"
        )
    diff = np.abs(got - reference)
    per_image = diff.max(axis=1)
    worst = int(per_image.argmax())
    agree = got.argmax(axis=1) == reference.argmax(axis=1)
    limit = LIMITS[precision]
    ranked = np.sort(reference, axis=1)
    margin = ranked[:, -1] - ranked[:, -2] if reference.shape[1] > 1 else np.full(len(reference), np.inf)
    near_tie = margin <= 2 * limit  # a flip here can be within the limit
    decisive = float(agree[~near_tie].mean()) if (~near_tie).any() else 1.0
    finite = bool(np.isfinite(got).all())
    return {
        "images": len(per_image),
        "max_abs_diff": float(per_image.max()) if finite else float("inf"),
        "mean_abs_diff": float(diff.mean()) if finite else float("inf"),
        "top1_agreement": float(agree.mean()),
        "top1_agreement_decisive": decisive,
        "near_ties": int(near_tie.sum()),
        "near_tie_flips": int((near_tie & ~agree).sum()),
        "near_tie_margin": 2 * limit,
        "worst_index": worst,
        "worst_image": sources[worst],
        "limit_max_abs_diff": limit,
        "limit_top1_agreement": MIN_TOP1_AGREEMENT,
        "passed": finite and float(per_image.max()) <= limit and decisive >= MIN_TOP1_AGREEMENT,
    }


def failure_message(artifact: str, parity: dict[str, Any], precision: str) -> str:
    """One line naming the artifact, the worst image and the difference."""
    decisive = parity["images"] - parity["near_ties"]
    return (
        f"parity failed for {artifact} ({precision}): max |Δp| {parity['max_abs_diff']:.3g} on "
        f"{parity['worst_image']} (limit {parity['limit_max_abs_diff']:g}), top-1 agreement "
        f"{parity['top1_agreement_decisive']:.2%} (needs ≥ {MIN_TOP1_AGREEMENT:.0%}) over the {decisive} of "
        f"{parity['images']} distinct inputs that are not near ties"
    )


def artifact_predictor(path: Path, fmt: str) -> tuple[Callable[[np.ndarray], np.ndarray], str] | None:
    """A function ``prepared uint8 (N, H, W, C) → probabilities (N, K)`` through the artifact's input path.

    Returns ``(predict, backend)``, or ``None`` for a neural-network ``.mlmodel`` on Linux (structure
    checks only there: the NumPy interpreter runs ML Programs).
    """
    path = Path(path)
    if fmt == "tflite":
        from visioncascade.export._runners import LiteRTRunner

        return LiteRTRunner(path).predict, "ai_edge_litert"
    if fmt == "onnx":
        from visioncascade.export._runners import OnnxRunner

        return OnnxRunner(path).predict, "onnxruntime"
    if fmt == "coreml":
        if platform.system() == "Darwin":
            return _native_coreml(path), "coreml (MLModel.predict)"
        if path.suffix == ".mlmodel":
            return None
        from visioncascade.export._mil_interpreter import MILProgram

        program = MILProgram(path)
        return program.predict, "mil-numpy-interpreter (coremltools loader)"
    raise ExportError(f"unknown format {fmt!r}")


def _native_coreml(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Real Core ML (macOS only): feed each prepared image as a PIL image to ``MLModel.predict``."""
    import coremltools as ct
    from PIL import Image

    model = ct.models.MLModel(str(path))
    spec = model.get_spec()
    labels_json = dict(spec.description.metadata.userDefined).get("visioncascade.labels")
    import json

    labels = json.loads(labels_json) if labels_json else None
    probs_name = spec.description.predictedProbabilitiesName

    def predict(images: np.ndarray) -> np.ndarray:
        rows = []
        for image in images:
            pil = (
                Image.fromarray(image[..., 0], "L") if image.shape[-1] == 1 else Image.fromarray(image, "RGB")
            )
            out = model.predict({"image": pil})[probs_name]
            keys = labels or list(out)
            rows.append([out[k] for k in keys])
        return np.asarray(rows, dtype=np.float64)

    return predict
