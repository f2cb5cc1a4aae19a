"""Bad input: no model, unknown format, impossible precision, unconvertible layer, existing exports."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import keras
import pytest

from visioncascade.errors import ExportError, RunExistsError, RunNotFoundError
from visioncascade.export import export_coreml, export_onnx, export_run, export_tflite
from visioncascade.spec import ModelSpec


def test_run_folder_without_model(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    ModelSpec(
        name="x", labels=("a", "b"), input_size=(16, 16), color_mode="grayscale", architecture="scratch"
    ).save(run / "spec.json")
    with pytest.raises(RunNotFoundError, match=r"lacks model\.keras, so it is not a complete run"):
        export_run(run, "onnx")
    with pytest.raises(RunNotFoundError, match="is not a run folder"):
        export_run(tmp_path / "missing", "onnx")


@pytest.mark.parametrize(
    ("formats", "message"),
    [
        ("coreml,pdf", r"unknown format 'pdf'; choose from coreml, tflite, onnx"),
        ("", r"no export format given"),
    ],
)
def test_unknown_format(formats, message, tmp_path):
    with pytest.raises(ExportError, match=message):
        export_run(tmp_path, formats)


@pytest.mark.parametrize(
    ("formats", "precision", "kwargs", "message"),
    [
        ("onnx", "int8", {}, r"format onnx cannot be exported at precision int8; it supports fp32"),
        ("tflite,onnx", "fp16", {}, r"format onnx cannot be exported at precision fp16"),
        (
            "coreml",
            "int8",
            {"coreml_format": "mlmodel"},
            r"coreml-mlmodel cannot be exported at precision int8",
        ),
        ("tflite", "int4", {}, r"unknown precision 'int4'; choose from fp32, fp16, int8"),
        (
            "coreml",
            "fp16",
            {"ios_target": "iOS14"},
            r"ML Program needs iOS 15 or later.*--coreml-format mlmodel",
        ),
        ("coreml", "fp16", {"ios_target": "iOS9"}, r"unknown iOS target 'iOS9'"),
        (
            "coreml",
            "fp16,int8",
            {"ios_target": "iOS15"},
            r"Core ML int8 weight compression needs iOS 16 or later, got --ios-target iOS15; pass "
            r"--ios-target iOS16",
        ),
        (
            "tflite",
            "int8",
            {"tflite_int8": "int4"},
            r"unknown TFLite int8 mode 'int4'; choose from full, dynamic",
        ),
        ("coreml", "fp16", {"coreml_format": "mlmodel", "ios_target": "iOS17"}, r"targets iOS 15 or earlier"),
    ],
)
def test_precision_or_target_a_format_cannot_do(formats, precision, kwargs, message, tmp_path):
    # refused before the run is even read: tmp_path is not a run folder
    with pytest.raises(ExportError, match=message):
        export_run(tmp_path, formats, precision, **kwargs)


class Erfinv(keras.layers.Layer):
    """A layer calling an op none of the converters has a rule for."""

    def call(self, x):
        return keras.ops.erfinv(keras.ops.clip(x / 300.0, -0.9, 0.9))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("exporter", "suffix"),
    [(export_coreml, ".mlpackage"), (export_tflite, ".tflite"), (export_onnx, ".onnx")],
)
def test_layer_a_converter_cannot_handle_is_named(exporter, suffix, tmp_path):
    inputs = keras.Input((16, 16, 1), name="image")
    x = Erfinv(name="inverse_error_fn")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    spec = ModelSpec(
        name="w", labels=("a", "b"), input_size=(16, 16), color_mode="grayscale", architecture="x"
    )
    with pytest.raises(
        ExportError, match=r"conversion failed at layer 'inverse_error_fn' \(Erfinv, TensorFlow op Erfinv\)"
    ):
        exporter(model, tmp_path / f"m{suffix}", spec)
    assert not (tmp_path / f"m{suffix}").exists()


@pytest.mark.slow
def test_existing_exports_refused_then_replaced_atomically(exported, scratch_run, tmp_path, monkeypatch):
    out = tmp_path / "exports"
    shutil.copytree(exported.out_dir, out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(RunExistsError, match=r"already holds exports \(manifest\.json\); pass --overwrite"):
        export_run(scratch_run.run_dir, "onnx", out=out, parity_images=8)

    # A failing proof (limits made impossible) with --overwrite leaves the old exports untouched.
    from visioncascade.export import _parity

    monkeypatch.setitem(_parity.LIMITS, "fp32", 0.0)
    with pytest.raises(
        ExportError, match=r"parity failed for .*\.onnx \(fp32\): max \|Δp\| .* on test\[\d+\]"
    ) as failed:
        export_run(scratch_run.run_dir, "onnx", out=out, overwrite=True, parity_images=8)
    assert "higher precision" not in str(failed.value)  # fp32 has none: a failure there is no rounding
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports"], "no half-written sibling left"
    monkeypatch.undo()

    # A passing export with --overwrite swaps in the complete new set.
    result = export_run(scratch_run.run_dir, "onnx", out=out, overwrite=True, parity_images=8)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([result.artifacts[0]["file"], "manifest.json", "spec.json"])
    assert json.loads((out / "manifest.json").read_text())["artifacts"][0]["format"] == "onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports"]


def test_validate_without_manifest(tmp_path):
    from visioncascade.export import validate_exports

    with pytest.raises(ExportError, match=r"has no manifest\.json"):
        validate_exports(tmp_path)


@pytest.mark.slow
def test_a_reduced_precision_failure_says_to_export_at_a_higher_one(scratch_run, tmp_path, monkeypatch):
    """fp16 / int8 compute more coarsely; a model too sensitive for them gets told what to do."""
    from visioncascade.export import _parity

    monkeypatch.setitem(_parity.LIMITS, "fp16", 0.0)  # as if this model were too sensitive for fp16
    with pytest.raises(ExportError) as failed:
        export_run(scratch_run.run_dir, "tflite", "fp16", out=tmp_path / "exports", parity_images=8)
    message = str(failed.value)
    assert message.startswith("parity failed for breastmnist-scratch-fp16.tflite (fp16)")
    assert "(fp16 computes more coarsely than fp32 and this model is sensitive to it: export at a higher " \
        "precision, e.g. --precision fp32); nothing was written" in message  # fmt: skip
    assert not (tmp_path / "exports").exists()
    monkeypatch.setitem(_parity.LIMITS, "int8", 0.0)
    with pytest.raises(ExportError, match=r"\(fp16 and int8 compute more coarsely than fp32 and"):
        export_run(scratch_run.run_dir, "tflite", "fp16,int8", out=tmp_path / "exports", parity_images=8)
    assert not (tmp_path / "exports").exists()


@pytest.mark.parametrize(
    ("change", "claim"),
    [
        ({"temperature": 0.5}, "temperature 0.5 and logit offsets [0.6, 0.0, -0.6]"),
        ({"logit_offsets": (0.3, -0.2, 0.5)}, "temperature 0.25 and logit offsets [0.3, -0.2, 0.5]"),
        ({"logit_offsets": ()}, "temperature 0.25 and logit offsets [0.0, 0.0, 0.0]"),
    ],
)
def test_spec_calibration_the_model_does_not_apply_is_refused(tmp_path, change, claim):
    """Core ML metadata states spec.json's temperature and offsets: they must be what the model applies."""
    from export_helpers import make_run_folder

    from synthetic import write_shape_folder

    data = write_shape_folder(tmp_path / "shapes", {"a": 6, "b": 6, "c": 6})
    run = make_run_folder(tmp_path / "run", data, "scratch", 16, "grayscale", edges=False)
    spec = ModelSpec.load(run / "spec.json")
    spec.replace(**change).save(run / "spec.json")
    with pytest.raises(ExportError) as failed:
        export_run(run, "coreml", out=tmp_path / "ex", parity_images=8)
    assert str(failed.value) == (
        f"{run / 'spec.json'} says {claim}, but the model's TemperatureSoftmax 'probabilities' applies "
        "temperature 0.25 and logit offsets [0.6, 0.0, -0.6]; the exports' metadata would claim a "
        "calibration the model does not apply. spec.json and model.keras must be the ones `visioncascade "
        "train` wrote together: restore them or train the run again"
    )
    assert not (tmp_path / "ex").exists()
    spec.save(run / "spec.json")  # the spec as written with the model: exported and proven
    assert export_run(run, "onnx", out=tmp_path / "ex", parity_images=8).artifacts[0]["parity"]["passed"]


def test_a_terminated_export_leaves_no_half_written_folder(scratch_run, tmp_path):
    """SIGTERM (``kill``, ``timeout``, ``docker stop``) mid-export ends it as Ctrl-C does: exit 130, and
    neither the output nor its temporary folder is left behind."""
    out = tmp_path / "exports"
    proc = subprocess.Popen(
        [sys.executable, "-m", "visioncascade.cli", "export", str(scratch_run.run_dir), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob(".exports.tmp-*")):  # the export is writing its temporary folder
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the export never started writing"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr  # main()'s exit for an interrupt
    assert list(tmp_path.iterdir()) == []
