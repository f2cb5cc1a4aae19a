"""The real ``visioncascade`` command line, run as a subprocess the way a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from visioncascade.models import get_architecture
from visioncascade.train.config import DEFAULT_WEIGHT_DECAY

from synthetic import write_shape_folder


def run_cli(
    *args: str, cwd: Path | None = None, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "visioncascade.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env={**os.environ, **(env_extra or {})} if env_extra else None,
    )


@pytest.fixture(scope="module")
def without_tensorflow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for :func:`run_cli` under which importing ``tensorflow`` or ``keras`` raises."""
    root = tmp_path_factory.mktemp("without_tensorflow")
    for name in ("tensorflow", "keras"):
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(
            f"raise ImportError('{name} imported before the command checked its input')\n"
        )
    return {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("train", "evaluate", "compare"):
        assert command in result.stdout


def test_train_help_shows_the_defaults_written_in_help_texts():
    """Rich reads "[default: 5]" as markup and drops it unless escaped."""
    result = run_cli("train", "--help", env_extra={"COLUMNS": "200"})
    assert result.returncode == 0
    for text in (
        "[default: 5]",
        "[default: 300]",
        "[default: 10]",
        f"[default: {DEFAULT_WEIGHT_DECAY}]",  # the help's literal must follow the constant
        # the help's literal must follow the architectures' defaults
        f"[default: {get_architecture('scratch').default_average_epochs} for scratch, "
        f"{get_architecture('mobilenet_v2').default_average_epochs} for mobilenet_v2; --quick: 3]",
        "[default: on, off with --quick]",
        "[default: one per core, at most folds + 1]",
    ):
        assert text in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "no/such/folder", "--out", "x"], "no dataset at 'no/such/folder'"),
        (["train", "breastmnist", "--arch", "vgg", "--out", "x"], "unknown architecture 'vgg'"),
        (["train", "breastmnist", "--folds", "1", "--out", "x"], "--folds must be 0"),
        (["train", "breastmnist", "--jobs", "0", "--out", "x"], "--jobs must be at least 1"),
        (
            ["train", "breastmnist", "--weight-decay", "-0.1", "--out", "x"],
            "--weight-decay must be in [0, 1)",
        ),
        (["train", "breastmnist", "--freeze", "3", "--out", "x"], "--freeze applies to mobilenet_v2 only"),
        (
            ["train", "breastmnist", "--average-epochs", "-1", "--out", "x"],
            "--average-epochs must be 0 (no weight averaging) or more, got -1",
        ),
        (["evaluate", "not-a-run"], "not-a-run is not a run folder"),
        (
            ["compare", "breastmnist", "--weight-decay", "1.5", "--out", "x"],
            "--weight-decay must be in [0, 1)",
        ),
        (
            ["compare", "breastmnist", "--class-weight", "balanced", "--out", "x"],
            "--class-weight must be auto",
        ),
        (["compare", "breastmnist", "--batch-size", "0", "--out", "x"], "--batch-size must be at least 1"),
        (
            ["train", "breastmnist", "--arch", "mobilenet_v2", "--weights", "no/such.h5", "--out", "x"],
            "weights file 'no/such.h5' does not exist",
        ),
        (["compare", "breastmnist", "--freeze", "-2", "--out", "x"], "--freeze must be 0 or more"),
        (["compare", "no/such.npz", "--out", "x"], "no dataset at 'no/such.npz'"),
        # Square brackets in a message are printed as they are, not taken for Rich markup.
        (["train", "photos[old]/x.npz", "--out", "x"], "no dataset at 'photos[old]/x.npz'"),
        (
            ["compare", "breastmnist", "--no-export-sizes", "--prove-exports", "--out", "x"],
            "--prove-exports proves the artifacts that --export-sizes measures; drop --no-export-sizes",
        ),
        (["evaluate", "not-a-run", "--data", "breastmnist"], "not-a-run is not a run folder"),
        # --no-export-sizes alone turns the proofs' default off: the command goes on to check DATA.
        (["compare", "no/such.npz", "--no-export-sizes", "--out", "x"], "no dataset at 'no/such.npz'"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    tmp_path: Path, args: list[str], message: str, without_tensorflow: dict[str, str]
):
    """Each is refused before TensorFlow loads (a typo costs a second, not the import's several):
    the command runs with a ``tensorflow`` and a ``keras`` that fail on import."""
    result = run_cli(*args, cwd=tmp_path, env_extra=without_tensorflow)
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("command", ["train", "compare", "demo"])
def test_overwrite_never_replaces_a_folder_that_holds_no_earlier_output(
    tmp_path: Path, command: str, without_tensorflow: dict[str, str]
):
    """--overwrite replaces the output folder whole: a dataset, or a folder of runs, given as --out by
    mistake is refused (before TensorFlow loads) and left as it was."""
    write_shape_folder(tmp_path / "photos", {"circle": 2, "square": 2}, mixed=False)
    (tmp_path / "runs" / "old-run").mkdir(parents=True)
    (tmp_path / "runs" / "old-run" / "spec.json").write_text("{}")
    for out, holds in (("photos", "a dataset (circle, square)"), ("runs", "old-run")):
        before = sorted(p.relative_to(tmp_path) for p in (tmp_path / out).rglob("*"))
        data = [] if command == "demo" else ["breastmnist"]
        result = run_cli(
            command, *data, "--out", out, "--overwrite", cwd=tmp_path, env_extra=without_tensorflow
        )
        said = " ".join(result.stderr.split())
        assert result.returncode == 2, result.stderr
        assert f"output folder {out} holds {holds}, not an earlier visioncascade output" in said, said
        assert "choose a new or empty --out" in said and "Traceback" not in result.stderr
        assert sorted(p.relative_to(tmp_path) for p in (tmp_path / out).rglob("*")) == before


@pytest.mark.parametrize("command", ["train", "compare"])
def test_an_out_folder_holding_a_run_is_refused_before_tensorflow_loads(
    tmp_path: Path, command: str, without_tensorflow: dict[str, str]
):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "spec.json").write_text("{}")
    result = run_cli(command, "breastmnist", "--out", "x", cwd=tmp_path, env_extra=without_tensorflow)
    assert result.returncode == 2, result.stderr
    assert "output folder x already holds a run; pass --overwrite" in " ".join(result.stderr.split())
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["spec.json"]


def test_the_poisoned_tensorflow_of_these_tests_does_fail_a_command_that_needs_it(
    tmp_path: Path, without_tensorflow: dict[str, str]
):
    """The check above is only worth something if importing TensorFlow does fail under it."""
    args = ["train", "breastmnist", "--out", "x", "--folds", "0", "--epochs", "1", "--jobs", "1", "--quiet"]
    result = run_cli(*args, cwd=tmp_path, env_extra=without_tensorflow)
    assert result.returncode != 0
    assert "imported before the command checked its input" in result.stderr
    assert not (tmp_path / "x").exists()


def test_train_evaluate_and_export_from_the_command_line(tmp_path: Path):
    out = tmp_path / "run"
    args = ["train", "breastmnist", "--out", str(out), "--epochs", "2", "--folds", "0", "--image-size", "16"]
    args += ["--average-epochs", "2"]  # the default (20 for scratch) is another test's
    result = run_cli(*args, "--quiet", "--no-refit")
    assert result.returncode == 0, result.stderr
    assert "I0000" not in result.stderr and "Traceback" not in result.stderr
    assert (out / "model.keras").is_file()
    assert json.loads((out / "metrics.json").read_text())["final"]["refit"] is None
    train = yaml.safe_load((out / "config.yaml").read_text())["train"]
    assert train["refit"] is False and train["weight_decay"] == DEFAULT_WEIGHT_DECAY > 0
    again = run_cli(*args)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    evaluated = run_cli("evaluate", str(out), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads(evaluated.stdout)
    assert metrics["n"] == 156 and metrics["minority_label"] == "malignant"
    shown = run_cli("evaluate", str(out))  # its notes are shown as train shows them, and the figures
    said = " ".join(shown.stderr.split())  # without the look-alikes
    assert shown.returncode == 0 and "note: 1 test image is an exact copy of a training or val image" in said
    assert "Without the 60 images evaluated that have a look-alike" in said
    exported = run_cli("export", str(out), "--to", "coreml", "--parity-images", "8")
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((out / "exports" / "manifest.json").read_text())
    assert "passes/s" not in exported.stderr + exported.stdout  # coremltools' progress bars are silenced
    # Its table names each artifact whole, though a pipe gives it 80 columns.
    assert [a["file"] for a in manifest["artifacts"]] == ["breastmnist-scratch.mlpackage"]
    assert "breastmnist-scratch.mlpackage" in exported.stderr


@pytest.mark.slow
def test_compare_writes_both_arms_and_ratios_with_the_shared_settings(tmp_path: Path):
    """The whole command, once: both arms trained with the shared settings given, sized, proven, compared."""
    out = tmp_path / "cmp"
    args = ["--quick", "--epochs", "2", "--prove-exports"]  # proofs are off by default with --quick
    shared = ["--no-augment", "--class-weight", "none", "--batch-size", "16", "--weight-decay", "0"]
    shared += ["--average-epochs", "2"]
    result = run_cli("compare", "breastmnist", *args, *shared, "--out", str(out))  # with its progress display
    assert result.returncode == 0, result.stderr
    assert "scratch vs transfer on breastmnist" in result.stderr and "Core ML fp16 bytes" in result.stderr
    assert "passes/s" not in result.stdout + result.stderr  # coremltools' progress bars are silenced
    # Notes on the data both arms share are said once, not once per arm.
    said = " ".join(result.stderr.split())
    assert (
        said.count("(test[76] = train[115])") == 1 and said.count("59 test images look nearly the same") == 1
    )
    assert "Warning" not in result.stderr, result.stderr  # and the converters' warnings, in any worker
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["dataset"]["name"] == "breastmnist"
    assert set(comparison["arms"]) == {"scratch", "transfer"}
    for arm in comparison["arms"].values():
        for key in (
            "minority_f1",
            "roc_auc",
            "accuracy",
            "parameters",
            "model_bytes",
            "training_seconds",
            "latency_ms",
        ):
            assert arm[key] is not None
        assert arm["cv"]["folds"] == 2 and "minority_f1_std" in arm["cv"]
    scratch, transfer = comparison["arms"]["scratch"], comparison["arms"]["transfer"]
    assert comparison["ratios"]["parameters"] == pytest.approx(transfer["parameters"] / scratch["parameters"])
    assert transfer["parameters"] > 5 * scratch["parameters"]
    for key in ("coreml_fp16_bytes", "tflite_int8_bytes", "onnx_fp32_bytes"):
        assert scratch["exported"][key] > 10_000 and transfer["exported"][key] > scratch["exported"][key]
        assert comparison["ratios"][f"exported.{key}"] == pytest.approx(
            transfer["exported"][key] / scratch["exported"][key]
        )
    # Each artifact it sizes is proven too, as `export` would (its verdict recorded, not raised).
    for arm in (scratch, transfer):
        for key, limit in (("coreml_fp16", 0.01), ("tflite_int8", 0.05), ("onnx_fp32", 1e-4)):
            proof = arm["exported"][f"{key}_proof"]
            # 156 grayscale test images, each as it is and as a tinted colour frame: 312 distinct inputs (the
            # tinted frame's OpenCV BGR copy gives the same input, checked, and is not run twice).
            assert proof["limit"] == limit and proof["images"] == 312 and proof["max_abs_diff"] >= 0
        assert arm["exported"]["onnx_fp32_proof"]["passed"]
    # BreastMNIST's test split has look-alikes among the training images: the figures without them, per arm.
    keys = [row["key"] for row in comparison["rows"]]
    at = keys.index("test.log_loss") + 1
    assert keys[at : at + 3] == [
        f"test.without_look_alikes.{k}" for k in ("minority_f1", "roc_auc", "accuracy")
    ]
    assert comparison["rows"][at + 1]["values"] == [
        arm["test"]["without_look_alikes"]["roc_auc"] for arm in (scratch, transfer)
    ]
    proof_rows = [row for row in comparison["rows"] if "passed" in row]
    assert [row["key"] for row in proof_rows] == [
        f"exported.{key}_proof.max_abs_diff" for key in ("coreml_fp16", "tflite_int8", "onnx_fp32")
    ]
    assert all(row["ratio"] is None for row in proof_rows)
    assert "XNNPACK" not in result.stderr  # LiteRT's log line, from the TFLite proofs in the workers
    assert not list(out.glob(".sizes-*"))
    assert (out / "scratch" / "model.keras").is_file() and (out / "transfer" / "model.keras").is_file()
    # What the test split can tell apart: paired differences, transfer minus scratch.
    differences = comparison["differences"]
    assert differences["of"] == "transfer - scratch" and differences["images"] == 156
    for key, d in differences["metrics"].items():
        assert d["difference"] == pytest.approx(transfer["test"][key] - scratch["test"][key], abs=1e-9), key
        low, high = d["ci95"]
        assert low <= d["difference"] <= high
        for arm in (scratch, transfer):
            assert arm["test"]["ci95"][key][0] <= arm["test"][key] <= arm["test"]["ci95"][key][1]
    html = (out / "comparison.html").read_text()
    assert "scratch vs transfer" in html and "data:image/png;base64," in html
    assert "Can the test split tell them apart?" in html
    assert "“No look-alikes”: on the 96 test images left after the 60 that have an exact or near copy" in html
    # The shared settings reached both arms; each arm's weight-averaging epochs are its own, here both set.
    expected = {"augment": False, "class_weight": "none", "batch_size": 16, "weight_decay": 0.0}
    settings = comparison["settings"]
    assert {key: settings[key] for key in expected} == expected
    assert settings["average_epochs"] == {"scratch": 2, "transfer": 2}
    for arm in ("scratch", "transfer"):
        config = yaml.safe_load((out / arm / "config.yaml").read_text())
        assert {key: config["train"][key] for key in expected} == expected, arm
        assert config["train"]["average_epochs"] == 2, arm
        assert config["resolved"]["class_weight"] is None and config["resolved"]["augmentation"] is None
        metrics = json.loads((out / arm / "metrics.json").read_text())
        assert metrics["final"]["averaged_epochs"] == 2, arm
        assert metrics["calibration"]["prior_correction"] == 0.0, arm  # no class weights: nothing to undo


def test_imagenet_weights_on_an_offline_machine_are_one_clear_error(tmp_path: Path):
    """Keras's downloader fails with a bare ``Exception``; the user gets one line, not three tracebacks.
    An empty Keras home and an unreachable proxy make the download fail on a connected machine too."""
    data = write_shape_folder(tmp_path / "data", {"circle": 12, "square": 12}, mixed=False, size=32)
    offline = {"KERAS_HOME": str(tmp_path / "keras-home"), "HTTPS_PROXY": "http://127.0.0.1:9"}
    offline |= {"https_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": ""}
    result = run_cli(
        "train", str(data), "--arch", "mobilenet_v2", "--weights", "imagenet", "--image-size", "32",
        "--folds", "0", "--epochs", "1", "--out", "x", "--quiet",
        cwd=tmp_path, env_extra=offline,
    )  # fmt: skip
    said = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr
    assert "could not get the ImageNet weights for mobilenet_v2 (alpha=0.35)" in said
    assert "pass --weights PATH to a local no-top .h5" in said and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()
