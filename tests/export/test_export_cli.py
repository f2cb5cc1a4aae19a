"""The ``export`` and ``validate`` commands."""

from __future__ import annotations

import json
import shutil

import pytest
from export_helpers import make_run_folder, write_rgb_folder
from typer.testing import CliRunner

from visioncascade.cli import app
from visioncascade.errors import ExportError, RunNotFoundError
from visioncascade.export.cli import _fmt_parity

runner = CliRunner()


def test_commands_are_registered():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "export" in result.output and "validate" in result.output


def test_export_bad_format_and_missing_model_exit_nonzero(tmp_path):
    result = runner.invoke(app, ["export", str(tmp_path), "--to", "coreml,jpeg"])
    assert result.exit_code != 0 and isinstance(result.exception, ExportError)
    assert "unknown format 'jpeg'" in str(result.exception)
    result = runner.invoke(app, ["export", str(tmp_path), "--to", "onnx"])
    assert result.exit_code != 0 and isinstance(result.exception, RunNotFoundError)


def _files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["run", "parent"])
def test_export_refuses_an_out_that_would_replace_the_run(tmp_path, where):
    """``--out RUN --overwrite`` (or a folder above RUN) would swap the exports in over the run: refused
    before anything is written, and the run folder is left intact."""
    data = write_rgb_folder(tmp_path / "bars")
    run = make_run_folder(tmp_path / "runs" / "run", data, "scratch", 24, "rgb", edges=False)
    before = _files(tmp_path)
    out = run if where == "run" else run.parent
    result = runner.invoke(
        app, ["export", str(run), "--to", "onnx", "--out", str(out), "--overwrite", "--parity-images", "8"]
    )
    assert result.exit_code != 0 and isinstance(result.exception, ExportError), result.output
    message = str(result.exception)
    assert f"--out {out} " in message and f"the run folder {run}" in message
    assert f"would delete the run; choose a folder of its own, e.g. --out {run / 'exports'}" in message
    assert _files(tmp_path) == before
    assert sorted(p.name for p in tmp_path.rglob("*") if p.name.startswith(".")) == []


def test_export_refuses_data_of_other_classes_and_notes_other_data(tmp_path):
    """--data must be data of the model's classes; data of those classes that is not what the run was
    trained on is used, with a note (manifest and output) that it may overlap the training images."""
    from visioncascade.data import load_dataset
    from visioncascade.spec import ModelSpec

    data = write_rgb_folder(tmp_path / "bars")
    run = make_run_folder(tmp_path / "run", data, "scratch", 24, "rgb", edges=False)
    spec = ModelSpec.load(run / "spec.json")
    spec.replace(data_fingerprint=load_dataset(data).fingerprint()).save(run / "spec.json")
    other = write_rgb_folder(tmp_path / "animals", per_class=6, seed=3)
    (other / "horizontal").rename(other / "cat")
    args = ["export", str(run), "--to", "onnx", "--parity-images", "8"]
    result = runner.invoke(app, [*args, "--data", str(other), "--out", str(tmp_path / "ex1")])
    assert result.exit_code != 0 and isinstance(result.exception, ExportError), result.output
    assert str(result.exception) == (
        f"the data {other} has classes ['cat', 'vertical'], the model's labels are ['horizontal', "
        "'vertical'] (it lacks 'horizontal'; it has 'cat' the model does not): it is not this run's data; "
        "pass --data with the run's dataset"
    )
    assert not (tmp_path / "ex1").exists()

    (other / "cat").rename(other / "horizontal")
    result = runner.invoke(app, [*args, "--data", str(other), "--out", str(tmp_path / "ex2")])
    assert result.exit_code == 0, result.output
    (note,) = json.loads((tmp_path / "ex2" / "manifest.json").read_text())["notes"]
    assert note.startswith(f"the parity images come from {other}, whose fingerprint ")
    assert "its held-out images may overlap the training images" in note
    assert "note: the parity images come from" in " ".join(result.output.split())

    result = runner.invoke(app, [*args, "--out", str(tmp_path / "ex3")])  # the run's own data: no note
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ex3" / "manifest.json").read_text())["notes"] == []


def _export_tflite(run_dir, out, precision: str) -> None:
    """``visioncascade export RUN --to tflite --precision P`` on 6 held-out images; it must succeed."""
    result = runner.invoke(
        app, ["export", str(run_dir), "--to", "tflite", "--precision", precision, "--out", str(out),
              "--parity-images", "8", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_export_and_validate_commands(scratch_run, exported, tmp_path):
    out = tmp_path / "ex"
    _export_tflite(scratch_run.run_dir, out, "fp16")
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(a["format"], a["precision"]) for a in manifest["artifacts"]] == [("tflite", "fp16")]
    copy = tmp_path / "copy"
    shutil.copytree(exported.out_dir, copy)
    result = runner.invoke(app, ["validate", str(copy), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and len(report["artifacts"]) == 3


@pytest.mark.slow
def test_tflite_int8_is_dynamic_range_unless_asked(scratch_run, tmp_path):
    """The command's default is the library's and the docs': dynamic-range (full-integer on request)."""
    out = tmp_path / "int8"
    _export_tflite(scratch_run.run_dir, out, "int8")
    (entry,) = json.loads((out / "manifest.json").read_text())["artifacts"]
    assert entry["precision_detail"].startswith("dynamic-range int8")


def test_the_parity_column_shows_flips_on_near_ties():
    parity = {
        "max_abs_diff": 0.0028,
        "mean_abs_diff": 0.0004,
        "top1_agreement": 0.98,
        "near_tie_flips": 2,
        "images": 100,
        "limit_max_abs_diff": 0.05,
    }
    assert "top-1 98.0% (2 on near ties)  (100 distinct inputs, limit 0.05)" in _fmt_parity(parity)
    assert "near ties" not in _fmt_parity({**parity, "top1_agreement": 1.0, "near_tie_flips": 0})


@pytest.mark.parametrize("count", ["0", "-3", "1", "7"])
def test_too_few_parity_images_are_refused(tmp_path, count):
    result = runner.invoke(app, ["export", str(tmp_path), "--to", "onnx", "--parity-images", count])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.replace("│", " ").split())
    assert "Invalid value for '--parity-images': Input should be greater than or equal to 8" in said
    from visioncascade.export import export_run

    with pytest.raises(
        ExportError, match=rf"--parity-images {count} is too few for a parity proof; pass at least 8"
    ):
        export_run(tmp_path, "onnx", parity_images=int(count))


def test_the_proof_counts_each_distinct_input_once(tmp_path):
    """An RGB image's OpenCV BGR frame gives the model exactly its RGB frame's input: run once, counted once."""
    data = write_rgb_folder(tmp_path / "bars")
    run = make_run_folder(tmp_path / "run", data, "scratch", 24, "rgb", edges=False)
    result = runner.invoke(app, ["export", str(run), "--to", "onnx", "--parity-images", "8"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "exports" / "manifest.json").read_text())
    frames = manifest["parity_frames"]
    assert (frames["frames"], frames["inputs"], frames["duplicate_frames"]) == (16, 8, 8)
    assert frames["bgr_frames_checked"] == 8
    (entry,) = manifest["artifacts"]
    assert entry["parity"]["images"] == 8 and "bgr-opencv-frame" not in entry["parity"]["worst_image"]


def test_overwrite_only_replaces_exports(tmp_path):
    """--overwrite replaces a previous exports folder; a run, a dataset or a folder of other files is refused
    naming what it holds (without suggesting --overwrite), as is a folder inside the run that is not an
    exports folder of it; nothing is deleted."""
    data = write_rgb_folder(tmp_path / "bars")
    run = make_run_folder(tmp_path / "runs" / "run", data, "scratch", 24, "rgb", edges=False)
    other_run = make_run_folder(tmp_path / "runs" / "other", data, "scratch", 24, "rgb", edges=False, seed=1)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    (run / "checkpoints").mkdir()
    before = _files(tmp_path)
    args = ["export", str(run), "--to", "onnx", "--parity-images", "8", "--overwrite"]
    for out, holds in [
        (other_run, "holds a trained run (model.keras, spec.json, config.yaml), not exports"),
        (data, "holds a dataset (horizontal, vertical), not exports"),
        (notes, "holds todo.txt, not exports"),
    ]:
        result = runner.invoke(app, [*args, "--data", str(data), "--out", str(out)])
        assert result.exit_code != 0, result.output
        message = str(result.exception)
        assert message.startswith(f"output folder {out} {holds}; exports replace their folder whole"), message
        assert "pass --overwrite" not in message
    for out in (run / "checkpoints", run / "checkpoints" / "x"):
        result = runner.invoke(app, [*args, "--out", str(out)])
        assert isinstance(result.exception, ExportError), result.output
        assert f"--out {out} is inside the run folder {run} but is not an exports folder of it" in str(
            result.exception
        )
    assert _files(tmp_path) == before
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []

    # An exports folder of the run's own (twice: the second time replacing the first) is fine.
    for _ in range(2):
        result = runner.invoke(app, [*args, "--out", str(run / "exports-int8")])
        assert result.exit_code == 0, result.output
    (run / "exports-int8" / "mine.txt").write_text("not an artifact")
    result = runner.invoke(app, [*args, "--out", str(run / "exports-int8")])
    assert "holds exports and also mine.txt, which its manifest.json does not name" in str(result.exception)
    assert (run / "exports-int8" / "mine.txt").is_file()


def test_temporaries_of_a_killed_export_are_removed_by_the_next(tmp_path):
    """A killed export leaves its .exports.tmp-* folder; the next export of that output removes it — but
    not one of a process still running, nor another output's — and Ctrl-C cleans up after itself."""
    import os
    import subprocess
    import sys

    from visioncascade._fs import atomic_dir

    data = write_rgb_folder(tmp_path / "bars")
    run = make_run_folder(tmp_path / "run", data, "scratch", 24, "rgb", edges=False)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead = int(gone.stdout)
    stale = [run / ".exports.tmp-k2j3h4g5", run / f".exports.tmp-{dead}-a1b2c3d4"]
    kept = [run / f".exports.tmp-{os.getpid()}-running", run / ".exports-int8.tmp-x9y8z7w6"]
    for folder in stale + kept:
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half written")
    result = runner.invoke(app, ["export", str(run), "--to", "onnx", "--parity-images", "8"])
    assert result.exit_code == 0, result.output
    assert not any(folder.exists() for folder in stale)
    assert all((folder / "model.onnx").is_file() for folder in kept)

    with pytest.raises(KeyboardInterrupt), atomic_dir(tmp_path / "interrupted") as tmp:
        (tmp / "part").write_text("x")
        raise KeyboardInterrupt
    assert not (tmp_path / "interrupted").exists() and not list(tmp_path.glob(".interrupted.*"))
