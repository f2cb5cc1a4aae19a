"""Fixtures of the export tests: one export of the shared BreastMNIST scratch run, reused by every test."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

PARITY_IMAGES = 40  # held-out source images -> 120 app frames (gray, RGB camera, BGR OpenCV)


@pytest.fixture(scope="session")
def exported(scratch_run, tmp_path_factory: pytest.TempPathFactory):
    """The scratch run exported with every format at its default precision (Core ML fp16, TFLite/ONNX fp32)."""
    from visioncascade.export import export_run

    out = tmp_path_factory.mktemp("exports") / "exports"
    return export_run(scratch_run.run_dir, "coreml,tflite,onnx", out=out, parity_images=PARITY_IMAGES)


@pytest.fixture(scope="session")
def exported_int8(scratch_run, tmp_path_factory: pytest.TempPathFactory):
    """The scratch run exported as Core ML and TFLite int8."""
    from visioncascade.export import export_run

    out = tmp_path_factory.mktemp("exports-int8") / "exports"
    return export_run(scratch_run.run_dir, "coreml,tflite", "int8", out=out, parity_images=PARITY_IMAGES)


@pytest.fixture(scope="session")
def keras_model(scratch_run):
    """The scratch run's Keras model."""
    from visioncascade.models import load_model

    return load_model(scratch_run.run_dir)


@pytest.fixture(scope="session")
def parity_set(scratch_run, keras_model):
    """The held-out frames of the scratch run, prepared, with the Keras probabilities for them."""
    from visioncascade.export import parity_frames
    from visioncascade.export._parity import run_dataset

    dataset, seed = run_dataset(scratch_run.run_dir)
    frames = parity_frames(dataset, scratch_run.spec, limit=PARITY_IMAGES, seed=seed)
    reference = keras_model.predict(frames.prepared.astype(np.float32), verbose=0)
    return frames, np.asarray(reference, dtype=np.float64)


def write_rgb_folder(root: Path, per_class: int = 12, seed: int = 0) -> Path:
    """A tiny RGB folder dataset of coloured bars at mixed sizes (two classes)."""
    rng = np.random.default_rng(seed)
    for label in ("horizontal", "vertical"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            side = int(rng.integers(30, 44))
            img = rng.normal(70, 25, (side, side, 3))
            lo, hi = side // 3, 2 * side // 3
            colour = rng.uniform(80, 170, 3)
            if label == "horizontal":
                img[lo:hi, 2:-2] += colour
            else:
                img[2:-2, lo:hi] += colour
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / label / f"{i}.png")
    return root


def make_run_folder(
    root: Path, data: Path | str, arch: str, size: int, color_mode: str, edges: bool, seed: int = 0, **params
) -> Path:
    """A run folder (model.keras, spec.json, config.yaml) around an untrained registry model.

    Parity does not care whether a model is trained, only that artifacts compute what it computes; an
    untrained model with a low temperature still gives spread-out probabilities.
    """
    import keras

    from visioncascade.data import load_dataset
    from visioncascade.models import create_model, save_model
    from visioncascade.spec import ModelSpec

    dataset = load_dataset(data)
    keras.utils.set_random_seed(seed)
    channels = 1 if color_mode == "grayscale" else 3
    model = create_model(arch, input_shape=(size, size, channels), num_classes=dataset.num_classes, edges=edges, **params)
    model.get_layer("probabilities").set_temperature(0.05)
    root.mkdir(parents=True, exist_ok=True)
    save_model(model, root / "model.keras")
    spec = ModelSpec(
        name=f"{dataset.name}-{arch}",
        labels=dataset.labels,
        input_size=(size, size),
        color_mode=color_mode,  # type: ignore[arg-type]
        architecture=arch,
        edges=edges,
        temperature=0.05,
    )
    spec.save(root / "spec.json")
    (root / "config.yaml").write_text(yaml.safe_dump({"data": str(data), "train": {"seed": seed}}), encoding="utf-8")
    return root
