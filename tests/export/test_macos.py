"""The parity proof through real Core ML (``MLModel.predict``): macOS only (see .github/workflows/macos.yml)."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from visioncascade.export import export_run

pytestmark = [
    pytest.mark.macos,
    pytest.mark.skipif(platform.system() != "Darwin", reason="Core ML runs on macOS only"),
]


@pytest.mark.parametrize("coreml_format", ["mlprogram", "mlmodel"])
def test_real_core_ml_matches_keras(scratch_run, parity_set, tmp_path, coreml_format):
    import coremltools as ct
    from PIL import Image

    result = export_run(
        scratch_run.run_dir,
        "coreml",
        "fp16",
        out=tmp_path / "ex",
        coreml_format=coreml_format,
        parity_images=20,
    )
    (entry,) = result.artifacts
    assert entry["parity"]["backend"].startswith("coreml")
    assert entry["parity"]["passed"]
    model = ct.models.MLModel(str(result.out_dir / entry["file"]))
    frames, reference = parity_set
    labels = list(scratch_run.spec.labels)
    got = []
    for image in frames.prepared:
        out = model.predict({"image": Image.fromarray(image[..., 0], "L")})
        got.append([out["classLabel_probs"][label] for label in labels])
    got = np.asarray(got)
    assert np.abs(got - reference).max() <= 1e-2
    assert np.mean(got.argmax(1) == reference.argmax(1)) >= 0.99
