"""Exporting a run folder, writing ``exports/manifest.json`` atomically, and re-validating exports.

``export_run`` builds every requested artifact in a temporary sibling of ``exports/``, proves each one
against the Keras model (parity + Core ML structure checks), writes the manifest last and only then swaps
the folder into place — so ``exports/`` is either the previous complete set or the new complete set, never a
half-written package that looks valid. A failed proof raises :class:`ExportError` and leaves the previous
exports untouched.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from visioncascade import __version__
from visioncascade._fs import atomic_dir, check_run_dir, describe_folder
from visioncascade.errors import ExportError, RunExistsError, VisionCascadeError
from visioncascade.export import DEFAULT_INT8_MODE, INT8_MODES, MIN_PARITY_IMAGES
from visioncascade.export._common import (
    DEFAULT_PRECISION,
    FORMATS,
    artifact_bytes,
    artifact_sha256,
    check_precision,
)
from visioncascade.export._coreml import check_coreml_structure, export_coreml, resolve_ios_target
from visioncascade.export._onnx import ONNX_OPSET, export_onnx
from visioncascade.export._parity import (
    ParityFrames,
    artifact_predictor,
    compare_probabilities,
    failure_message,
    parity_dataset,
    parity_frames,
    representative_images,
    run_dataset,
)
from visioncascade.export._tflite import export_tflite
from visioncascade.models import load_model
from visioncascade.spec import ModelSpec

__all__ = [
    "MANIFEST_VERSION",
    "ExportResult",
    "export_run",
    "export_sizes",
    "structure_only",
    "validate_exports",
]

MANIFEST_VERSION = 1


@dataclass
class ExportResult:
    """A finished export: the folder, its manifest, and whether every proof passed."""

    out_dir: Path
    manifest: dict[str, Any]

    @property
    def artifacts(self) -> list[dict[str, Any]]:
        """The manifest's artifact entries."""
        return self.manifest["artifacts"]

    @property
    def notes(self) -> list[str]:
        """What the manifest notes about the proof (e.g. parity images that are not the run's data)."""
        return list(self.manifest.get("notes", []))

    @property
    def structure_only(self) -> list[str]:
        """The artifacts that were checked for structure only, never run (a ``.mlmodel`` on Linux)."""
        return structure_only(self.artifacts)


def structure_only(artifacts: list[dict[str, Any]]) -> list[str]:
    """The files among manifest or report ``artifacts`` whose parity was not run (structure checks only)."""
    return [a["file"] for a in artifacts if a.get("parity", {}).get("status") == "structure-only"]


def _parse_list(
    value: str | list[str] | tuple[str, ...] | None, what: str, known: tuple[str, ...]
) -> list[str]:
    if value is None:
        return []
    items = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value)]
    items = [v for v in items if v]
    unknown = [v for v in items if v not in known]
    if unknown:
        raise ExportError(f"unknown {what} {', '.join(map(repr, unknown))}; choose from {', '.join(known)}")
    return list(dict.fromkeys(items))


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def _plan(formats: list[str], precisions: list[str], coreml_format: str) -> list[tuple[str, str]]:
    plan = []
    for fmt in formats:
        wanted = precisions or [DEFAULT_PRECISION[fmt]]
        for precision in wanted:
            check_precision(
                "coreml-mlmodel" if fmt == "coreml" and coreml_format == "mlmodel" else fmt, precision
            )
            plan.append((fmt, precision))
    return plan


def _file_name(name: str, fmt: str, precision: str, coreml_format: str) -> str:
    suffix = {
        "coreml": ".mlpackage" if coreml_format == "mlprogram" else ".mlmodel",
        "tflite": ".tflite",
        "onnx": ".onnx",
    }[fmt]
    tag = "" if precision == DEFAULT_PRECISION[fmt] else f"-{precision}"
    return f"{name}{tag}{suffix}"


def _load_run(run_dir: str | Path) -> tuple[Path, keras.Model, ModelSpec]:
    run_dir = check_run_dir(run_dir)
    return run_dir, load_model(run_dir), ModelSpec.load(run_dir / "spec.json")


def _calibration_problem(model: keras.Model, spec: ModelSpec, run_dir: Path) -> str | None:
    """Why the model's ``TemperatureSoftmax`` (temperature and logit offsets) is not the calibration that
    ``spec`` records — the one every export's metadata states — or ``None`` when they agree."""
    from visioncascade.export._common import iter_layers
    from visioncascade.models.layers import TemperatureSoftmax

    want_offsets = np.asarray(spec.logit_offsets or [0.0] * spec.num_classes, dtype=np.float64)
    said = f"temperature {spec.temperature:g} and logit offsets {[round(float(v), 6) for v in want_offsets]}"
    layers = [layer for layer in iter_layers(model) if isinstance(layer, TemperatureSoftmax)]
    if not layers:
        if spec.temperature == 1.0 and not np.any(want_offsets):
            return None
        return (
            f"{run_dir / 'spec.json'} says {said}, but {run_dir / 'model.keras'} has no TemperatureSoftmax "
            "layer to apply them"
        )
    layer = layers[-1]
    temperature = float(np.asarray(layer.temperature))
    offsets = np.asarray(layer.offsets, dtype=np.float64).ravel()
    if np.isclose(temperature, spec.temperature, rtol=1e-5, atol=0) and (
        offsets.shape == want_offsets.shape and np.allclose(offsets, want_offsets, rtol=1e-5, atol=1e-6)
    ):
        return None
    return (
        f"{run_dir / 'spec.json'} says {said}, but the model's TemperatureSoftmax {layer.name!r} applies "
        f"temperature {temperature:g} and logit offsets {[round(float(v), 6) for v in offsets]}"
    )


def _keras_probabilities(model: keras.Model, prepared: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(prepared.astype(np.float32), batch_size=64, verbose=0), dtype=np.float64)


def _export_one(
    model: keras.Model,
    spec: ModelSpec,
    fmt: str,
    precision: str,
    path: Path,
    *,
    coreml_format: str,
    ios_target: str | None,
    representative: np.ndarray | None,
    tflite_int8: str = DEFAULT_INT8_MODE,
) -> Path:
    if fmt == "coreml":
        with contextlib.redirect_stdout(io.StringIO()):
            return export_coreml(
                model, path, spec, precision=precision, coreml_format=coreml_format, ios_target=ios_target
            )
    if fmt == "tflite":
        return export_tflite(
            model,
            path,
            spec,
            precision=precision,
            representative_images=representative,
            int8_mode=tflite_int8,
        )
    return export_onnx(model, path, spec, precision=precision)


def _input_description(fmt: str, spec: ModelSpec, structure: dict[str, Any] | None) -> dict[str, Any]:
    height, width = spec.input_size
    if fmt == "coreml":
        return {
            "name": "image",
            "type": "image",
            "color_layout": "GRAYSCALE" if spec.color_mode == "grayscale" else "RGB",
            "width": width,
            "height": height,
            "scale": 1.0,
            "bias": 0.0,
            "output": "classifier: classLabel + classLabel_probs",
            "resize": spec.preprocessing.get("resize", "area"),
        }
    return {
        "name": "image",
        "type": "tensor",
        "dtype": "float32",
        "shape": ["batch" if fmt == "onnx" else 1, height, width, spec.channels],
        "layout": "NHWC",
        "range": [0, 255],
        "color_mode": spec.color_mode,
        "resize": spec.preprocessing.get("resize", "area"),
        "output": "probabilities (float32, one per label, softmax, calibration applied)",
    }


def _prove(
    path: Path,
    fmt: str,
    precision: str,
    spec: ModelSpec,
    frames: ParityFrames,
    reference: np.ndarray,
    ios_target: str | None = None,
) -> dict[str, Any]:
    """Structure checks and parity for one artifact; the returned record says whether it passed.

    ``ios_target`` is the Core ML artifact's recorded minimum iOS: its specification version must not need
    a later one.

    An artifact that its runtime cannot load or run (a damaged file) is an :class:`ExportError` naming it.
    """
    record: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        if fmt == "coreml":
            record["structure"] = check_coreml_structure(path, spec, ios_target)
        runner = artifact_predictor(path, fmt)
        got = runner[0](frames.prepared) if runner is not None else None
    except (ExportError, ImportError):
        raise
    except Exception as exc:  # onnxruntime, LiteRT and coremltools raise their own types for a bad file
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ExportError(
            f"{path.name} cannot be loaded or run ({type(exc).__name__}: {detail}); the file is damaged or "
            f"is not a {fmt} model: export the run again"
        ) from exc
    if runner is None or got is None:
        record["parity"] = {
            "status": "structure-only",
            "reason": "a neural-network .mlmodel cannot be executed on Linux and the NumPy interpreter runs "
            "ML Programs only; its parity is proven by the macOS workflow",
            "proven": False,
            "passed": True,  # nothing failed: the structure checks passed; parity was not run
        }
        return record
    backend = runner[1]
    parity = compare_probabilities(reference, got, precision, frames.input_sources)
    parity["backend"] = backend
    parity["proven"] = True
    parity["seconds"] = round(time.perf_counter() - started, 3)
    record["parity"] = parity
    return record


def _check_parity_images(parity_images: int) -> None:
    if parity_images < MIN_PARITY_IMAGES:
        raise ExportError(
            f"--parity-images {parity_images} is too few for a parity proof; pass at least "
            f"{MIN_PARITY_IMAGES} (the default is 200)"
        )


def _refuse_out_over_run(out: Path, run_dir: Path) -> None:
    """ExportError when ``out`` is ``run_dir``, a folder above it, or a folder inside it other than an
    ``exports*`` folder of its own (``RUN/exports``, ``RUN/exports-int8``).

    The exports folder is swapped into place whole, so writing it over the run folder (or a parent of it)
    would delete the trained model, and one inside ``RUN/checkpoints`` or ``RUN/evaluations`` would mix
    exports into what train and evaluate write.
    """
    resolved, run = out.resolve(), run_dir.resolve()
    if resolved == run or resolved in run.parents:
        what = "is the run folder" if resolved == run else "holds the run folder"
        raise ExportError(
            f"--out {out} {what} {run_dir}: the exports replace their folder whole, which would delete the "
            f"run; choose a folder of its own, e.g. --out {run_dir / 'exports'} (the default)"
        )
    if run in resolved.parents and not (resolved.parent == run and resolved.name.startswith("exports")):
        raise ExportError(
            f"--out {out} is inside the run folder {run_dir} but is not an exports folder of it; inside a run "
            f"the exports go to {run_dir / 'exports'} (the default) or another RUN/exports-<name> folder"
        )


def _check_export_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that is not a place for exports.

    Only an absent or empty folder, or a previous exports folder (``manifest.json`` with ``spec.json`` and
    the artifacts it names, nothing else), may be written; ``overwrite`` replaces the latter. Anything
    else — a run, a dataset, a folder of other files, a damaged manifest — is refused naming what it holds,
    with or without ``overwrite``: the exports replace their folder whole, which would delete it.
    """
    if out.exists() and not out.is_dir():
        raise RunExistsError(f"--out {out} exists and is a file; choose a folder for the exports")
    if not out.is_dir() or not any(out.iterdir()):
        return
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            named = {str(entry["file"]) for entry in manifest["artifacts"]} | set(_EXPORT_FILES)
        except (ValueError, KeyError, TypeError):
            raise RunExistsError(
                f"output folder {out} holds a manifest.json that is damaged or not a visioncascade export "
                "manifest, so it is not known to be an exports folder and is not replaced; choose another "
                "--out (a new or empty folder)"
            ) from None
        others = sorted(p.name for p in out.iterdir() if p.name not in named)
        if not others:
            if overwrite:
                return
            raise RunExistsError(
                f"output folder {out} already holds exports (manifest.json); pass --overwrite to replace them "
                "atomically, or choose another --out"
            )
        what = f"{', '.join(others[:5])}{f' and {len(others) - 5} more' if len(others) > 5 else ''}"
        raise RunExistsError(
            f"output folder {out} holds exports and also {what}, which its manifest.json does not name; "
            "exports replace their folder whole, so it is not replaced: move those out or choose another --out"
        )
    raise RunExistsError(
        f"output folder {out} holds {describe_folder(out)}, not exports; exports replace their folder whole, so a "
        "folder holding anything else is never replaced: choose another --out (a new or empty folder)"
    )


def export_run(
    run_dir: str | Path,
    formats: str | list[str] | tuple[str, ...] = FORMATS,
    precisions: str | list[str] | tuple[str, ...] | None = None,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    coreml_format: str = "mlprogram",
    ios_target: str | None = None,
    parity_images: int = 200,
    data: str | Path | None = None,
    tflite_int8: str = DEFAULT_INT8_MODE,
) -> ExportResult:
    """Export a run's model to the requested formats and prove each artifact equals the Keras model.

    Args:
        run_dir: A run folder with ``model.keras`` and ``spec.json``.
        formats: Any of ``coreml``, ``tflite``, ``onnx`` (list or comma-separated).
        precisions: ``fp32``/``fp16``/``int8`` (list or comma-separated), applied to every format;
            ``None`` gives each format its default (Core ML fp16, TFLite fp32, ONNX fp32).
        out: Output folder (default ``<run_dir>/exports``).
        overwrite: Replace an existing exports folder (atomically); a folder holding anything else is never
            replaced.
        coreml_format: ``mlprogram`` (``.mlpackage``) or ``mlmodel`` (neural network, old iOS).
        ios_target: Core ML minimum deployment target, e.g. ``"iOS16"``.
        parity_images: How many held-out images to draw frames from (each gives 2-3 app frames, 1-2
            distinct model inputs); at least :data:`MIN_PARITY_IMAGES`.
        data: The run's dataset, when its ``config.yaml`` source is not reachable from here.
        tflite_int8: TFLite int8 mode: ``"dynamic"`` (default, dynamic-range) or ``"full"`` (full-integer,
            calibrated on the run's training images); float32 I/O either way.

    Returns:
        The export folder and its manifest.

    Raises:
        RunNotFoundError: No model in ``run_dir``.
        ExportError: Unknown format, impossible precision, a converter failure (naming the layer), or a
            failed parity / structure proof (naming the artifact, the worst image and the difference), or
            an ``out`` that is ``run_dir`` or a folder above it (the export would replace the run), or a
            ``spec.json`` whose temperature / logit offsets are not the model's ``TemperatureSoftmax``'s.
        RunExistsError: ``out`` holds exports and ``overwrite`` is false, or holds anything but exports (a
            run, a dataset, other files), whatever ``overwrite`` says.
    """
    fmts = _parse_list(formats, "format", FORMATS)
    if not fmts:
        raise ExportError(f"no export format given; choose from {', '.join(FORMATS)}")
    _check_parity_images(parity_images)
    precs = _parse_list(precisions, "precision", ("fp32", "fp16", "int8"))
    plan = _plan(fmts, precs, coreml_format)
    if tflite_int8 not in INT8_MODES:
        raise ExportError(f"unknown TFLite int8 mode {tflite_int8!r}; choose from {', '.join(INT8_MODES)}")
    coreml_target = None
    if "coreml" in fmts:
        for fmt, precision in plan:
            if fmt == "coreml":
                coreml_target = resolve_ios_target(coreml_format, ios_target, precision)
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "exports"
    _refuse_out_over_run(out, run_dir)
    _check_export_out(out, overwrite)
    run_dir, model, spec = _load_run(run_dir)
    calibration = _calibration_problem(model, spec, run_dir)
    if calibration is not None:
        raise ExportError(
            f"{calibration}; the exports' metadata would claim a calibration the model does not apply. "
            "spec.json and model.keras must be the ones `visioncascade train` wrote together: restore them "
            "or train the run again"
        )
    dataset, seed, notes = parity_dataset(run_dir, spec, data)
    frames = parity_frames(dataset, spec, limit=parity_images, seed=seed)
    reference = _keras_probabilities(model, frames.prepared)
    representative = (
        representative_images(dataset, spec, seed=seed)
        if tflite_int8 == "full" and any(p == "int8" for f, p in plan if f == "tflite")
        else None
    )
    name = _safe_name(spec.name)
    entries: list[dict[str, Any]] = []
    failures: list[str] = []
    with atomic_dir(out, overwrite) as tmp:
        for fmt, precision in plan:
            file_name = _file_name(name, fmt, precision, coreml_format)
            path = tmp / file_name
            started = time.perf_counter()
            _export_one(
                model, spec, fmt, precision, path,
                coreml_format=coreml_format, ios_target=ios_target, representative=representative,
                tflite_int8=tflite_int8,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            record = _prove(
                path, fmt, precision, spec, frames, reference, coreml_target if fmt == "coreml" else None
            )
            entry = {
                "file": file_name,
                "format": fmt,
                "container": path.suffix.lstrip("."),
                "precision": precision,
                "bytes": artifact_bytes(path),
                "sha256": artifact_sha256(path),
                "input": _input_description(fmt, spec, record.get("structure")),
                "labels": list(spec.labels),
                "export_seconds": round(seconds, 3),
                **record,
            }
            if fmt == "coreml":
                entry["ios_target"] = coreml_target
                entry["precision_detail"] = {
                    "fp32": "fp32 weights and compute",
                    "fp16": "fp16 weights and compute",
                    "int8": "int8 symmetric weight compression (tensors > 2048 elements), fp16 compute",
                }[precision]
            elif fmt == "tflite":
                entry["precision_detail"] = {
                    "fp32": "fp32",
                    "fp16": "fp16 weights, fp32 compute on CPU",
                    "int8": "full-integer int8 weights and activations (calibrated on "
                    f"{0 if representative is None else len(representative)} training images), float32 I/O"
                    if tflite_int8 == "full"
                    else "dynamic-range int8: int8 weights, activations quantized at run time, float32 I/O",
                }[precision]
            else:
                entry["opset"] = ONNX_OPSET
            entries.append(entry)
            if not entry["parity"]["passed"]:
                failures.append(failure_message(file_name, entry["parity"], precision))
        if failures:
            coarse = sorted({e["precision"] for e in entries if not e["parity"]["passed"]} - {"fp32"})
            hint = (
                f" ({' and '.join(coarse)} {'computes' if len(coarse) == 1 else 'compute'} more "
                "coarsely than fp32 and this model is sensitive to it: export at a higher precision, e.g. "
                "--precision fp32)"
                if coarse
                else ""
            )
            raise ExportError("; ".join(failures) + f"{hint}; nothing was written to {out}")
        spec.save(tmp / "spec.json")
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "run_dir": str(run_dir.resolve()),
            "model_sha256": artifact_sha256(run_dir / "model.keras"),
            "spec": spec.to_dict(),
            "labels": list(spec.labels),
            "parity_frames": frames.describe(),
            "notes": notes,
            "artifacts": entries,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "visioncascade_version": __version__,
            "tools": _tool_versions(),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    keras.backend.clear_session()
    return ExportResult(out_dir=out, manifest=manifest)


def _tool_versions() -> dict[str, str]:
    versions = {}
    for module in ("tensorflow", "keras", "coremltools", "onnx", "onnxruntime", "tf2onnx", "ai_edge_litert"):
        try:
            from importlib.metadata import version

            versions[module] = version(module.replace("_", "-"))
        except Exception:  # not installed: recorded as absent
            versions[module] = "absent"
    return versions


#: Files an exports folder may hold besides its artifacts (.DS_Store: what macOS Finder leaves in a copy).
_EXPORT_FILES = ("manifest.json", "spec.json", ".DS_Store")


def _normal(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples as lists), for comparing specs with what a file holds."""
    return json.loads(json.dumps(value))


def _read_manifest(manifest_path: Path) -> dict[str, Any]:
    """``manifest.json`` of an exports folder, or :class:`ExportError` saying it is damaged or not one."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ExportError(
            f"{manifest_path} is damaged (not valid JSON: {exc}); copy it again from the original exports, "
            "or export the run again"
        ) from None
    keys = manifest if isinstance(manifest, dict) else {}
    missing = [key for key in ("spec", "artifacts", "parity_frames") if key not in keys]
    entries = keys.get("artifacts")
    if not missing and (
        not isinstance(entries, list)
        or not all(
            isinstance(e, dict) and {"file", "format", "precision", "sha256"} <= set(e) for e in entries
        )
    ):
        missing = ["artifacts (each with file, format, precision and sha256)"]
    if missing:
        raise ExportError(
            f"{manifest_path} is not a visioncascade export manifest (it lacks {', '.join(missing)}); it is "
            "damaged or another tool's: copy it again from the original exports, or export the run again"
        )
    try:
        ModelSpec.from_dict(manifest["spec"])
    except (VisionCascadeError, TypeError, ValueError) as exc:
        raise ExportError(
            f"the spec in {manifest_path} is not valid ({exc}); the manifest was damaged or edited: copy it "
            "again from the original exports, or export the run again"
        ) from None
    return manifest


def _manifest_run(manifest: dict[str, Any], exports_dir: Path, run_dir: str | Path | None) -> Path:
    """The run to validate ``exports_dir`` against: ``run_dir`` if given (a run folder, or an error), else
    the manifest's ``run_dir``, else the folder above the exports (a run moved with its exports)."""
    if run_dir is not None:  # asked for: this run or an error, never a guess
        return check_run_dir(run_dir)
    recorded = manifest.get("run_dir")
    for candidate in ([Path(recorded)] if recorded else []) + [exports_dir.parent]:
        if (candidate / "model.keras").is_file() and (candidate / "spec.json").is_file():
            return candidate
    raise ExportError(
        f"the run these exports were made from, {recorded or '(not recorded)'}, no longer exists or lacks "
        f"model.keras, and {exports_dir.parent} is not a run either (exports copied elsewhere, or the run "
        "moved?); pass --run with the run folder"
    )


def _spec_problems(manifest: dict[str, Any], exports_dir: Path, spec: ModelSpec, run: Path) -> list[str]:
    """Which of the manifest's spec, the exports' ``spec.json`` and the run's ``spec.json`` disagree, with
    the odd one out named: an edited manifest is blamed, not the run."""
    recorded = _normal(manifest["spec"])
    from_run = _normal(spec.to_dict())
    spec_path = exports_dir / "spec.json"
    exported: Any = None
    problems: list[str] = []
    if not spec_path.is_file():
        problems.append(f"{spec_path} is missing; copy it again from the original exports or export again")
    else:
        try:
            exported = _normal(ModelSpec.load(spec_path).to_dict())
        except VisionCascadeError as exc:
            problems.append(f"{spec_path} is not a valid spec ({exc}); export the run again")
    if exported is not None and exported == from_run != recorded:
        problems.append(
            f"the spec in {exports_dir / 'manifest.json'} differs from the exports' spec.json and the run's "
            f"spec.json at {run}, which agree: manifest.json was edited after export; copy it again from "
            "the original exports, or export the run again"
        )
        return problems
    if exported is not None and exported != recorded:
        problems.append(
            f"{spec_path} differs from the spec in manifest.json (edited after export?); export the run again"
        )
    if from_run != recorded:
        problems.append(f"the run's spec.json at {run} differs from the spec the exports were made from")
    return problems


def _manifest_problems(manifest: dict[str, Any], exports_dir: Path) -> list[str]:
    """What in ``exports_dir`` disagrees with ``manifest["spec"]``: the manifest's labels, an artifact
    entry's labels (or spec), and files the manifest does not name — each of which a runtime could take an
    artifact's labels from."""
    problems: list[str] = []
    recorded = _normal(manifest["spec"])
    labels = recorded.get("labels")
    if manifest.get("labels") != labels:
        problems.append(
            f"manifest.json's labels {manifest.get('labels')} differ from its spec's {labels}; "
            "export the run again"
        )
    for entry in manifest["artifacts"]:
        if entry.get("labels") != labels:
            problems.append(
                f"{entry['file']}'s labels in manifest.json {entry.get('labels')} differ from its spec's "
                f"{labels}; export the run again"
            )
        if "spec" in entry and _normal(entry["spec"]) != recorded:
            problems.append(f"{entry['file']}'s spec in manifest.json differs from the manifest's spec")
    named = {str(entry["file"]) for entry in manifest["artifacts"]} | set(_EXPORT_FILES)
    strays = sorted(p.name for p in exports_dir.iterdir() if p.name not in named)
    if strays:
        problems.append(
            f"{exports_dir} holds {', '.join(strays)}, which manifest.json does not name (a runtime would "
            "give them this manifest's labels and spec); move them out, or export into a folder of their own"
        )
    return problems


def validate_exports(
    exports_dir: str | Path, *, run_dir: str | Path | None = None, data: str | Path | None = None
) -> dict[str, Any]:
    """Re-run the parity proof for every artifact in ``exports_dir`` from its ``manifest.json``.

    Checks that ``spec.json``, the manifest's labels and every artifact entry agree with the manifest's
    spec and that the folder holds no file the manifest does not name; each artifact's sha256 against the
    manifest, the Core ML structure, and parity against the run's Keras model on the same held-out frames
    (their fingerprint must match the manifest's). An artifact whose sha256 differs (a truncated copy, say)
    is reported and not run; one that its runtime cannot load is reported by name.

    Returns:
        A report: per artifact the fresh parity figures and ``passed``; ``passed`` overall;
        ``structure_only``, the artifacts that could only be checked for structure (not run).

    Raises:
        ExportError: No manifest, a damaged one (or not a visioncascade manifest), no run to validate
            against (the manifest's ``run_dir`` gone and ``run_dir`` not given), a missing or modified
            artifact, a stray file, a spec or labels that disagree, or a failed proof (all failures listed).
        RunNotFoundError: ``run_dir`` was given but is not a run folder (nothing else is tried).
    """
    exports_dir = Path(exports_dir)
    manifest_path = exports_dir / "manifest.json"
    if not manifest_path.is_file():
        raise ExportError(
            f"{exports_dir} has no manifest.json; pass the exports folder written by `visioncascade export`"
        )
    manifest = _read_manifest(manifest_path)
    run, model, spec = _load_run(_manifest_run(manifest, exports_dir, run_dir))
    problems = _spec_problems(manifest, exports_dir, spec, run) + _manifest_problems(manifest, exports_dir)
    calibration = _calibration_problem(model, spec, run)
    if calibration is not None:
        problems.append(f"{calibration}: the artifacts' metadata claims a calibration they do not apply")
    if artifact_sha256(run / "model.keras") != manifest.get("model_sha256"):
        problems.append(f"{run / 'model.keras'} changed since the export; re-export the run")
    dataset, seed, notes = parity_dataset(run, spec, data)
    described = manifest["parity_frames"]
    source_images = described.get("source_images", 200)
    frames = parity_frames(dataset, spec, limit=source_images, seed=seed)
    if frames.fingerprint != described.get("fingerprint"):
        problems.append("the held-out parity frames differ from those used at export time (data changed?)")
    reference = _keras_probabilities(model, frames.prepared)
    report: dict[str, Any] = {
        "exports_dir": str(exports_dir),
        "run_dir": str(run),
        "notes": notes,
        "artifacts": [],
    }
    for entry in manifest["artifacts"]:
        path = exports_dir / entry["file"]
        item: dict[str, Any] = {
            "file": entry["file"],
            "format": entry["format"],
            "precision": entry["precision"],
        }
        if not path.exists():
            problems.append(f"{entry['file']} is listed in the manifest but missing")
            item["passed"] = False
            report["artifacts"].append(item)
            continue
        if artifact_sha256(path) != entry["sha256"]:
            # Not what was proven at export time (possibly a truncated copy): nothing to prove it against.
            problems.append(
                f"{entry['file']} was modified after export (sha256 differs from the manifest); copy it "
                "again from the original exports or export the run again"
            )
            item["passed"] = False
            report["artifacts"].append(item)
            continue
        try:
            record = _prove(
                path, entry["format"], entry["precision"], spec, frames, reference, entry.get("ios_target")
            )
        except ExportError as exc:
            problems.append(str(exc) if str(exc).startswith(entry["file"]) else f"{entry['file']}: {exc}")
            item["passed"] = False
            report["artifacts"].append(item)
            continue
        item.update(record)
        item["passed"] = record["parity"]["passed"]
        if not item["passed"]:
            problems.append(failure_message(entry["file"], record["parity"], entry["precision"]))
        report["artifacts"].append(item)
    report["problems"] = problems
    report["structure_only"] = structure_only(report["artifacts"])
    report["passed"] = not problems
    if problems:
        raise ExportError(f"validation of {exports_dir} failed: " + "; ".join(problems))
    return report


def export_sizes(
    run_dir: Path,
    workdir: Path,
    formats: Sequence[str] = FORMATS,
    *,
    prove: bool = False,
    parity_images: int = 200,
) -> dict[str, Any]:
    """Bytes of the run's Core ML fp16 ``.mlpackage``, TFLite int8 (dynamic-range) and ONNX fp32 files.

    Exports into ``workdir`` (created if needed; files are left there) — for size comparisons such as
    ``compare``'s transfer/scratch ratio. Returns ``{"coreml_fp16_bytes", "tflite_int8_bytes",
    "onnx_fp32_bytes"}``, or the keys of ``formats`` only (a subset of ``("coreml", "tflite", "onnx")``:
    ``compare`` measures Core ML in one worker task and the other two in another).

    With ``prove``, each artifact also gets the parity proof that :func:`export_run` would give it (the
    same held-out frames of the run's data, the same limits), under ``"<format>_<precision>_proof"``:
    ``{"passed", "max_abs_diff", "limit", "top1_agreement", "images"}``. A failed proof is reported, not
    raised: a size is only worth comparing with the knowledge of whether that artifact can be shipped.
    Without ``prove`` nothing is checked (and the run's data is not needed).
    """
    if prove:
        _check_parity_images(parity_images)
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown:
        raise ExportError(
            f"unknown export format(s) {', '.join(map(repr, unknown))}; choose from {', '.join(FORMATS)}"
        )
    run_dir, model, spec = _load_run(run_dir)
    frames = reference = None
    if prove:
        dataset, seed = run_dataset(run_dir)
        frames = parity_frames(dataset, spec, limit=parity_images, seed=seed)
        reference = _keras_probabilities(model, frames.prepared)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    representative = None
    name = _safe_name(spec.name)
    sizes: dict[str, Any] = {}
    for fmt, precision in (("coreml", "fp16"), ("tflite", "int8"), ("onnx", "fp32")):
        if fmt not in formats:
            continue
        path = workdir / _file_name(name, fmt, precision, "mlprogram")
        if path.is_dir():
            shutil.rmtree(path)
        _export_one(
            model, spec, fmt, precision, path, coreml_format="mlprogram", ios_target=None,
            representative=representative,
        )  # fmt: skip
        sizes[f"{fmt}_{precision}_bytes"] = artifact_bytes(path)
        if frames is not None and reference is not None:
            parity = _prove(path, fmt, precision, spec, frames, reference)["parity"]
            sizes[f"{fmt}_{precision}_proof"] = {
                "passed": bool(parity["passed"]),
                "max_abs_diff": parity["max_abs_diff"],
                "limit": parity["limit_max_abs_diff"],
                "top1_agreement": parity["top1_agreement_decisive"],
                "images": parity["images"],
            }
    # No keras.backend.clear_session() here: in a worker process (compare's) it would also drop
    # TensorFlow's kernel cache, and the fits that worker runs next would build their kernels again.
    return sizes
