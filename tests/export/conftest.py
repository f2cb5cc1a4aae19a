"""Fixtures of the export tests: one export of the shared BreastMNIST scratch run, reused by every test."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from export_helpers import PARITY_IMAGES


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
