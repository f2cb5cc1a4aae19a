"""Real (small) training runs: run folders, metrics, calibration, CV, Ctrl-C, reproducibility, errors."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import yaml
from PIL import Image

from visioncascade import ModelSpec
from visioncascade.data import load_dataset, resolve_splits
from visioncascade.errors import ConfigError, DataError, RunExistsError
from visioncascade.evaluate.metrics import compute_metrics
from visioncascade.experiment import evaluate_run, train_run
from visioncascade.models import load_model
from visioncascade.train import TrainConfig

from synthetic import write_shape_folder

RUN_FILES = {"model.keras", "spec.json", "metrics.json", "history.csv", "config.yaml", "report.html"}
METRIC_KEYS = {
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "log_loss",
    "brier",
    "ece",
    "minority_f1",
    "minority_label",
    "per_class",
    "confusion_matrix",
    "parameters",
    "model_bytes",
    "training_seconds",
    "latency_ms",
}


def test_run_folder_is_complete(scratch_run):
    run = scratch_run.run_dir
    assert {p.name for p in run.iterdir()} >= RUN_FILES
    assert (run / "checkpoints" / "best_val_loss.keras").is_file()
    assert not list(run.parent.glob(f".{run.name}.tmp-*"))  # no temporary left behind
    # The copy across BreastMNIST's official splits is named in the run's notes, and in its report, and
    # so are its near copies.
    notes = json.loads((run / "metrics.json").read_text())["dataset"]["notes"]
    assert [n for n in notes if "(test[76] = train[115])" in n] and len(notes) == 5
    assert notes[3].startswith("59 test images look nearly the same as training or val images (test[2] ≈ ")
    report = (run / "report.html").read_text(encoding="utf-8")
    assert "(test[76] = train[115])" in report and "59 test images look nearly the same" in report
    # And the test figures without those 60 look-alikes, in metrics.json and the report.
    unseen = json.loads((run / "metrics.json").read_text())["test"]["without_look_alikes"]
    assert unseen["n"] == 96 and unseen["left_out"] == 60 and 0 <= unseen["accuracy"] <= 1
    assert "Without the 60 test images that have a look-alike" in report


def test_metrics_have_the_documented_shape(scratch_run):
    metrics = json.loads((scratch_run.run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) >= METRIC_KEYS
    assert set(metrics["cv"]) >= METRIC_KEYS
    test = metrics["test"]
    assert test["minority_label"] == "malignant"  # 147 of 546 training images
    assert test["n"] == 156 and sum(map(sum, test["confusion_matrix"])) == 156
    assert test["per_class"]["malignant"]["support"] == 42
    assert 0.0 <= test["minority_f1"] <= 1.0 and 0.0 <= test["roc_auc"] <= 1.0
    cv = metrics["cv"]
    assert cv["k"] == 2 and cv["completed"] == 2 and len(cv["folds"]) == 2
    assert cv["mean"]["minority_f1"] == pytest.approx(np.mean([f["minority_f1"] for f in cv["folds"]]))
    assert cv["std"]["roc_auc"] is not None
    assert metrics["model"]["parameters"] < 100_000
    assert metrics["model"]["file_bytes"] == (scratch_run.run_dir / "model.keras").stat().st_size
    assert metrics["model"]["latency_ms_p50"] > 0 and metrics["training_seconds"] > 0
    assert metrics["interrupted"] is False
    # A better-than-chance model after a few epochs on real data.
    assert test["roc_auc"] > 0.6
    # Bootstrap intervals of the test figures: 156 images leave them wide.
    assert set(test["ci95"]) == {"accuracy", "balanced_accuracy", "roc_auc", "minority_f1"}
    for key, (low, high) in test["ci95"].items():
        assert 0.0 <= low <= test[key] <= high <= 1.0, key
    assert test["ci95"]["roc_auc"][1] - test["ci95"]["roc_auc"][0] > 0.03


def test_spec_travels_with_the_model_and_calibration_is_inside(scratch_run):
    run = scratch_run.run_dir
    spec = ModelSpec.load(run)
    assert spec.labels == ("malignant", "normal_benign")
    assert spec.input_size == (28, 28) and spec.color_mode == "grayscale" and spec.edges
    assert spec.architecture == "scratch" and spec.data_fingerprint
    metrics = json.loads((run / "metrics.json").read_text())
    temperature = metrics["calibration"]["temperature"]
    assert spec.temperature == pytest.approx(temperature)
    model = load_model(run)
    layer = model.get_layer("probabilities")
    assert float(layer.temperature.numpy()) == pytest.approx(temperature, rel=1e-6)
    assert (
        metrics["calibration"]["val_log_loss_after"] <= metrics["calibration"]["val_log_loss_before"] + 1e-9
    )
    # Class-weighted training: the prior correction, its offsets in the spec and inside the softmax.
    alpha, offsets = metrics["calibration"]["prior_correction"], metrics["calibration"]["logit_offsets"]
    assert 0.0 <= alpha <= 1.0
    assert spec.logit_offsets == pytest.approx(tuple(offsets))
    np.testing.assert_allclose(layer.offsets.numpy(), offsets or [0.0, 0.0], rtol=1e-6, atol=1e-7)
    # It takes back the share alpha of the log class-weight ratio: the up-weighted minority goes down
    # (alpha 0, no offsets, is a valid outcome: then the difference is 0 on both sides).
    weights = yaml.safe_load((run / "config.yaml").read_text())["resolved"]["class_weight"]
    assert weights[0] > weights[1]  # malignant, the minority
    shift = (offsets or [0.0, 0.0])[1] - (offsets or [0.0, 0.0])[0]
    assert shift == pytest.approx(alpha * np.log(weights[0] / weights[1]), rel=1e-6, abs=1e-9)


def test_each_fit_ends_with_weight_averaging(scratch_run):
    run = scratch_run.run_dir
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["final"]["averaged_epochs"] == 3
    assert metrics["final"]["refit"]["averaged_epochs"] == 3
    rows = list(csv.DictReader((run / "history.csv").open()))
    for stage in ("final", "refit", "fold1", "fold2"):
        averaging = [r for r in rows if r["stage"] == f"{stage}-averaging"]
        assert [int(r["epoch"]) for r in averaging] == [1, 2, 3], stage
        assert all(float(r["loss"]) > 0 and r["val_loss"] == "" for r in averaging)
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["average_epochs"] == 3


def test_weight_averaging_epochs_default_to_the_architectures_own():
    assert TrainConfig.build().average_epochs == 20
    assert TrainConfig.build(arch="mobilenet_v2").average_epochs == 5
    assert TrainConfig.build(arch="mobilenet_v2", quick=True).average_epochs == 3
    assert TrainConfig.build(arch="mobilenet_v2", average_epochs=20).average_epochs == 20
    assert TrainConfig.build(arch="scratch", average_epochs=0).average_epochs == 0


def test_evaluate_reproduces_the_test_metrics(scratch_run, tmp_path: Path):
    result = evaluate_run(scratch_run.run_dir, out=tmp_path)
    stored = json.loads((scratch_run.run_dir / "metrics.json").read_text())["test"]
    for key in ("accuracy", "roc_auc", "log_loss", "minority_f1"):
        assert result.metrics[key] == pytest.approx(stored[key], abs=1e-6)
    for key, interval in stored["ci95"].items():
        assert result.metrics["ci95"][key] == pytest.approx(interval, abs=1e-6)
    assert result.metrics["without_look_alikes"] == pytest.approx(stored["without_look_alikes"], abs=1e-6)
    html = result.html_path.read_text()
    assert result.json_path.is_file() and "<img" in html and "95% CI" in html
    # BreastMNIST's test[76] is train[115]'s copy: the evaluation says so, as the training did.
    assert [n for n in result.metrics["data"]["notes"] if "(test[76] = train[115])" in n]
    # The same data passed as "other data": its test[76] is found among the run's training images.
    other = evaluate_run(scratch_run.run_dir, data="breastmnist", out=tmp_path / "other").metrics
    assert other["data"]["notes"][1] == (
        "1 of the 156 images evaluated is an exact copy of an image the run was trained or validated on "
        "(test[76] = train[115]): these figures count it as unseen"
    )
    assert other["data"]["notes"][2].startswith(
        "59 of the 156 images evaluated look nearly the same as images the run was trained or validated on "
        "(test[2] ≈ train[146]; test[7] ≈ train[481]; test[8] ≈ train[42]; and 56 more; "
    )
    assert len(other["data"]["notes"]) == 3


def test_evaluate_other_data_needs_the_same_labels(scratch_run, tmp_path: Path):
    other = tmp_path / "other.npz"
    rng = np.random.default_rng(0)
    np.savez(
        other,
        train_images=rng.integers(0, 255, (10, 28, 28), dtype=np.uint8),
        train_labels=np.array([0, 1] * 5),
        label_names=np.array(["normal_benign", "malignant"]),  # same names, other order
    )
    result = evaluate_run(scratch_run.run_dir, data=other, out=tmp_path / "ev")
    assert result.metrics["n"] == 10 and result.metrics["per_class"]["malignant"]["support"] == 5
    np.savez(other, train_images=np.zeros((4, 28, 28), np.uint8), train_labels=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"classes \['0', '1'\] differ from the model's labels"):
        evaluate_run(scratch_run.run_dir, data=other)


def test_history_config_and_report(scratch_run):
    run = scratch_run.run_dir
    rows = list(csv.DictReader((run / "history.csv").open()))
    stages = {"final", "refit", "fold1", "fold2"}
    assert {r["stage"] for r in rows} == stages | {f"{stage}-averaging" for stage in stages}
    assert all(float(r["val_loss"]) > 0 for r in rows if r["stage"] in stages - {"refit"})
    assert all(r["val_loss"] == "" and float(r["loss"]) > 0 for r in rows if r["stage"] == "refit")
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"] == "breastmnist" and config["resolved"]["image_size"] == 28
    assert TrainConfig.from_dict(config["train"]).folds == 2
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4
    assert not re.search(r"(src|href)=[\"']https?://", html)  # self-contained
    for words in ("Cross-validation", "Calibration", "malignant", "ROC", "95% CI"):
        assert words in html


def test_existing_run_is_refused_then_replaced_with_overwrite(scratch_run, tmp_path: Path):
    config = TrainConfig.build(folds=0, epochs=1, patience=1, image_size=16, average_epochs=2)
    with pytest.raises(RunExistsError, match="already holds a run; pass --overwrite"):
        train_run("breastmnist", scratch_run.run_dir, config, progress=False)
    out = tmp_path / "run"
    train_run("breastmnist", out, config, progress=False)
    first = (out / "metrics.json").read_text()
    train_run("breastmnist", out, config.replace(seed=5), progress=False, overwrite=True)
    assert (out / "metrics.json").read_text() != first
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary or old folder left


class _StopAt(keras.callbacks.Callback):
    """Simulates Ctrl-C: raises KeyboardInterrupt at the end of an epoch."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_ctrl_c_keeps_the_best_model_so_far(tmp_path: Path):
    config = TrainConfig.build(folds=3, epochs=50, patience=50, image_size=16, jobs=1, average_epochs=2)
    result = train_run("breastmnist", tmp_path / "run", config, progress=False, callbacks=[_StopAt(2)])
    metrics = result.metrics
    assert metrics["interrupted"] is True
    assert metrics["final"]["epochs_run"] == 3 and 0 <= metrics["final"]["best_epoch"] <= 2
    assert metrics["cv"]["completed"] == 0
    assert {p.name for p in (tmp_path / "run").iterdir()} >= RUN_FILES
    assert "interrupted" in (tmp_path / "run" / "report.html").read_text()


class _Diverge(keras.callbacks.Callback):
    """Makes every weight NaN before each validation batch: a fit without one finite validation loss."""

    def on_test_batch_begin(self, batch, logs=None):
        for weight in self.model.trainable_weights:
            weight.assign(np.full(weight.shape, np.nan, weight.dtype))


def test_a_fit_that_diverged_is_named_and_leaves_nothing(tmp_path: Path):
    config = TrainConfig.build(folds=0, epochs=3, patience=10, image_size=16, jobs=1, learning_rate=0.05)
    with pytest.raises(
        ConfigError, match=r"diverged: the validation log loss was not finite in any of its 3 ep"
    ) as info:
        train_run("breastmnist", tmp_path / "run", config, progress=False, callbacks=[_Diverge()])
    assert "at learning rate 0.05" in str(info.value) and "lower --learning-rate (e.g. 0.005)" in str(
        info.value
    )
    assert list(tmp_path.iterdir()) == []  # no run, no temporary folder


class _StopInFit(keras.callbacks.Callback):
    """Simulates Ctrl-C at the end of the first epoch of the ``fit``-th fit.

    Weight averaging counts as a fit of its own: 1 = final, 2 = its averaging, 3 = refit, 4 = its averaging.
    """

    def __init__(self, fit: int):
        super().__init__()
        self.fit, self.fits = fit, 0

    def on_train_begin(self, logs=None):
        self.fits += 1

    def on_epoch_end(self, epoch, logs=None):
        if self.fits == self.fit:
            raise KeyboardInterrupt


class _CutInFirstFit(keras.callbacks.Callback):
    """Halves the learning rate after every epoch of the first fit only (a schedule for the refit to follow)."""

    def __init__(self):
        super().__init__()
        self.fits = 0

    def on_train_begin(self, logs=None):
        self.fits += 1

    def on_epoch_end(self, epoch, logs=None):
        if self.fits == 1:
            self.model.optimizer.learning_rate = float(self.model.optimizer.learning_rate) / 2


class _WorseAtTheEnd(keras.callbacks.Callback):
    """In the refit (the second fit without weight averaging), scrambles the weights before the last
    epoch's validation, so that epoch scores worst on val, and keeps a copy of the weights it ends with."""

    def __init__(self):
        super().__init__()
        self.fits, self.epoch, self.last_weights = 0, -1, None

    def on_train_begin(self, logs=None):
        self.fits += 1

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_test_batch_begin(self, batch, logs=None):
        if self.fits == 2 and self.epoch == self.params["epochs"] - 1 and batch == 0:
            rng = np.random.default_rng(0)
            for weight in self.model.trainable_weights:
                value = np.asarray(weight)
                weight.assign(value + rng.normal(0, 0.5, value.shape).astype(value.dtype))

    def on_epoch_end(self, epoch, logs=None):
        if self.fits == 2:
            self.last_weights = [np.array(w) for w in self.model.trainable_weights]


def test_the_refit_keeps_its_last_epoch_not_its_best_on_val(tmp_path: Path):
    """Val is training data in the refit: its loss must not pick the epoch kept (it would pick by
    training loss). The last epoch is kept even when it scores worst on val."""
    config = TrainConfig.build(folds=0, epochs=3, patience=3, image_size=16, seed=3, average_epochs=0, jobs=1)
    spy = _WorseAtTheEnd()
    result = train_run("breastmnist", tmp_path / "run", config, progress=False, callbacks=[spy])
    assert result.metrics["final"]["refit"]["epochs"] == spy.params["epochs"] == 3
    saved = load_model(tmp_path / "run" / "model.keras")
    for kept, last in zip(saved.trainable_weights, spy.last_weights, strict=True):
        np.testing.assert_array_equal(np.asarray(kept), last)


def test_refit_on_train_and_val_makes_the_final_model_and_ctrl_c_keeps_the_first(tmp_path: Path):
    """The refit trains a new model on train + val for the best epoch count and it becomes the final
    model; calibration and val metrics stay those of the model trained on train alone; Ctrl-C during
    the refit keeps that model (the same run as --no-refit, to the last figure)."""
    config = TrainConfig.build(folds=0, epochs=4, patience=4, image_size=16, seed=3, average_epochs=2)
    plain = train_run(
        "breastmnist",
        tmp_path / "plain",
        config.replace(refit=False),
        progress=False,
        callbacks=[_CutInFirstFit()],
    )
    refit = train_run("breastmnist", tmp_path / "refit", config, progress=False, callbacks=[_CutInFirstFit()])
    stopped = train_run(
        "breastmnist",
        tmp_path / "stopped",
        config,
        progress=False,
        callbacks=[_CutInFirstFit(), _StopInFit(3)],
    )
    assert plain.metrics["final"]["refit"] is None
    info = refit.metrics["final"]["refit"]
    counts = refit.metrics["dataset"]["class_counts"]
    assert info["epochs"] == refit.metrics["final"]["best_epoch"] + 1
    assert info["images"] == sum(counts["train"].values()) + sum(counts["val"].values()) == 624
    for key in ("val", "calibration"):
        assert refit.metrics[key] == plain.metrics[key]
    assert refit.metrics["test"]["log_loss"] != plain.metrics["test"]["log_loss"]
    rows = list(csv.DictReader((tmp_path / "refit" / "history.csv").open()))
    refit_rows = [r for r in rows if r["stage"] == "refit"]
    assert len(refit_rows) == info["epochs"] and all(r["val_loss"] == "" for r in refit_rows)
    # The refit follows the first fit's learning rates epoch by epoch (val no longer tells it when to cut).
    first_rates = [float(r["learning_rate"]) for r in rows if r["stage"] == "final"][: info["epochs"]]
    assert first_rates == pytest.approx([1e-3 / 2**epoch for epoch in range(info["epochs"])], rel=1e-6)
    assert [float(r["learning_rate"]) for r in refit_rows] == first_rates
    assert "refit on train + validation (624 images)" in (tmp_path / "refit" / "report.html").read_text()
    assert "The first fit is the final model" in (tmp_path / "plain" / "report.html").read_text()
    # The saved model is the refit one, with the temperature inside.
    x_test, y_test = load_dataset("breastmnist").arrays("test", (16, 16), "grayscale")
    saved = load_model(tmp_path / "refit" / "model.keras")
    p = np.asarray(saved.predict(x_test, verbose=0))
    assert compute_metrics(y_test, p, refit.spec.labels, 1)["log_loss"] == pytest.approx(
        refit.metrics["test"]["log_loss"], rel=1e-5
    )
    assert stopped.metrics["interrupted"] is True and stopped.metrics["final"]["refit"] is None
    assert any("refit on train + val was interrupted" in n for n in stopped.metrics["dataset"]["notes"])
    for key in ("log_loss", "accuracy", "roc_auc", "confusion_matrix"):
        assert stopped.metrics["test"][key] == plain.metrics["test"][key]


def test_ctrl_c_in_a_fold_keeps_the_finished_folds_only(tmp_path: Path):
    config = TrainConfig.build(
        folds=2, epochs=3, patience=3, image_size=16, refit=False, jobs=1, average_epochs=2
    )
    stopped = train_run(
        "breastmnist", tmp_path / "run", config, progress=False, callbacks=[_StopInFit(5)]
    )  # fits: 1 final, 2 its averaging, 3 fold 1, 4 its averaging, 5 fold 2
    metrics = stopped.metrics
    assert metrics["interrupted"] is True and metrics["final"]["epochs_run"] == 3
    assert metrics["cv"]["completed"] == 1 and [f["fold"] for f in metrics["cv"]["folds"]] == [1]
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    assert {r["stage"] for r in rows} == {"final", "final-averaging", "fold1", "fold1-averaging"}


def test_ctrl_c_while_averaging_keeps_the_best_weights_before_it(tmp_path: Path):
    config = TrainConfig.build(folds=0, epochs=3, patience=3, image_size=16, refit=False, average_epochs=4)
    stopped = train_run("breastmnist", tmp_path / "run", config, progress=False, callbacks=[_StopInFit(2)])
    metrics = stopped.metrics
    assert metrics["interrupted"] is True and metrics["final"]["averaged_epochs"] == 0
    assert metrics["final"]["epochs_run"] == 3
    # The model kept is the best of the fit: the checkpoint's weights (before calibration).
    x_test, y_test = load_dataset("breastmnist").arrays("test", (16, 16), "grayscale")
    best = load_model(tmp_path / "run" / "checkpoints" / "best_val_loss.keras")
    p = np.asarray(best.predict(x_test, verbose=0))
    assert compute_metrics(y_test, p, stopped.spec.labels, 0)["log_loss"] == pytest.approx(
        metrics["test_uncalibrated"]["log_loss"], rel=1e-6
    )
    assert not (tmp_path / "run" / ".first.keras").exists()


def test_a_failing_run_leaves_nothing_behind(tmp_path: Path):
    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("boom")

    config = TrainConfig.build(folds=0, epochs=3, image_size=16, average_epochs=2)
    with pytest.raises(RuntimeError, match="boom"):
        train_run("breastmnist", tmp_path / "run", config, progress=False, callbacks=[Boom()])
    assert list(tmp_path.iterdir()) == []


def test_same_seed_same_run(tmp_path: Path):
    # The refit's own reproducibility is test_workers' (the same run in workers and in one process).
    config = TrainConfig.build(
        folds=0, epochs=3, patience=3, image_size=16, seed=7, average_epochs=2, refit=False
    )
    a = train_run("breastmnist", tmp_path / "a", config, progress=False)
    b = train_run("breastmnist", tmp_path / "b", config, progress=False)
    np.testing.assert_allclose(a.metrics["val"]["log_loss"], b.metrics["val"]["log_loss"], rtol=1e-4)
    assert a.metrics["test"]["confusion_matrix"] == b.metrics["test"]["confusion_matrix"]


def test_folder_dataset_without_splits_trains_and_learns(tmp_path: Path):
    data = write_shape_folder(tmp_path / "shapes", {"horizontal": 40, "vertical": 80}, seed=3)
    config = TrainConfig.build(
        folds=2, epochs=25, patience=6, image_size=24, class_weight="none", average_epochs=2, refit=False
    )
    result = train_run(data, tmp_path / "run", config, progress=False)
    metrics = result.metrics
    assert any("held out" in note for note in metrics["dataset"]["notes"])
    assert metrics["dataset"]["class_counts"]["test"] == {"horizontal": 8, "vertical": 16}
    assert result.spec.color_mode == "rgb"  # some images are RGB
    assert metrics["test"]["minority_label"] == "horizontal"
    assert metrics["test"]["accuracy"] >= 0.8  # bars are easy: the pipeline really learns
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["resolved"]["class_weight"] is None


def test_fewer_images_than_folds_fails_before_training(tmp_path: Path):
    data = write_shape_folder(tmp_path / "d", {"horizontal": 6, "vertical": 30}, mixed=False)
    with pytest.raises(DataError, match=r"fewer than --folds 5"):
        train_run(data, tmp_path / "run", TrainConfig.build(), progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_transfer_run_with_frozen_layers(tmp_path: Path):
    config = TrainConfig.build(
        arch="mobilenet_v2",
        freeze=7,
        folds=0,
        epochs=2,
        patience=2,
        image_size=32,
        refit=False,
        average_epochs=2,
    )
    result = train_run("breastmnist", tmp_path / "tl", config, progress=False)
    assert result.spec.architecture == "mobilenet_v2"
    assert result.spec.architecture_params["freeze"] == 7
    assert result.metrics["model"]["parameters"] > 400_000
    assert result.metrics["model"]["trainable_parameters"] < result.metrics["model"]["parameters"]


def test_evaluate_finds_relative_folder_data_from_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_shape_folder(tmp_path / "shapes", {"horizontal": 20, "vertical": 40}, seed=4, mixed=False)
    monkeypatch.chdir(tmp_path)
    config = TrainConfig.build(folds=0, epochs=2, patience=2, image_size=16, average_epochs=2)
    train_run("shapes", "run", config, progress=False)  # relative paths, as a user types them
    assert yaml.safe_load(Path("run/config.yaml").read_text())["data"] == str(tmp_path / "shapes")
    monkeypatch.chdir(tmp_path.parent)
    result = evaluate_run(tmp_path / "run")
    assert result.metrics["n"] == 12 and not result.metrics["data"]["notes"]


def test_evaluate_on_other_data_names_copies_of_training_images(tmp_path: Path):
    shapes = write_shape_folder(tmp_path / "shapes", {"horizontal": 20, "vertical": 40}, seed=4, mixed=False)
    config = TrainConfig.build(folds=0, epochs=2, patience=2, image_size=16, average_epochs=2)
    train_run(shapes, tmp_path / "run", config, progress=False)
    trained, _ = resolve_splits(load_dataset(shapes), seed=config.seed)
    seen, unseen = trained.splits["train"].names[:2], trained.splits["test"].names[:1]
    other = write_shape_folder(tmp_path / "other", {"horizontal": 3, "vertical": 3}, seed=9, mixed=False)
    for name in [*seen, *unseen]:
        shutil.copy(shapes / name, other / name.replace("/", "/copy-"))
    retouched = trained.splits["val"].names[0]  # brightened: a near copy of an image the run validated on
    pixels = np.asarray(Image.open(shapes / retouched), np.int16) + 5
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(other / retouched.replace("/", "/bright-"))
    result = evaluate_run(tmp_path / "run", data=other, out=tmp_path / "ev")
    notes = result.metrics["data"]["notes"]
    assert result.metrics["n"] == 10 and len(notes) == 3
    assert notes[1].startswith("2 of the 10 images evaluated are exact copies of images the run was trained")
    apart = result.metrics["without_look_alikes"]
    assert apart["n"] == 7 and apart["left_out"] == 3  # the two copies and the brightened one
    assert notes[2].startswith(
        "1 of the 10 images evaluated looks nearly the same as images the run was trained or validated on "
        f"({retouched.replace('/', '/bright-')} ≈ {retouched}; "
    )
    for name in seen:
        assert f"{name.replace('/', '/copy-')} = {name}" in notes[1]
    assert f"{unseen[0].replace('/', '/copy-')} = " not in notes[1]  # a test image of the run is unseen by it
    # The training data gone: evaluating other data still works, and says what it skipped and why.
    shutil.rmtree(shapes)
    notes = evaluate_run(tmp_path / "run", data=other, out=tmp_path / "ev2").metrics["data"]["notes"]
    assert notes[1] == (
        "did not look for copies of the training images in it: the run's training data is no longer at "
        f"{shapes.resolve()}"
    )


def test_evaluate_finds_data_that_moved_with_the_run_and_says_when_it_is_gone(tmp_path: Path):
    project = tmp_path / "project"
    write_shape_folder(project / "shapes", {"horizontal": 20, "vertical": 40}, seed=4, mixed=False)
    config = TrainConfig.build(folds=0, epochs=2, patience=2, image_size=16, average_epochs=2)
    train_run(project / "shapes", project / "runs" / "a", config, progress=False)
    assert yaml.safe_load((project / "runs" / "a" / "config.yaml").read_text())["data_beside_run"] == (
        "../../shapes"
    )
    moved = tmp_path / "renamed"
    project.rename(moved)  # data and run move together
    result = evaluate_run(moved / "runs" / "a", out=tmp_path / "ev")
    assert result.metrics["n"] == 12
    assert result.metrics["data"]["notes"] == [
        f"the data is no longer at {project / 'shapes'}; found it beside the run at {moved / 'shapes'}"
    ]
    (moved / "shapes").rename(tmp_path / "elsewhere")
    with pytest.raises(DataError, match=r"which is no longer there \(nor at .*\); pass --data"):
        evaluate_run(moved / "runs" / "a")
    assert evaluate_run(moved / "runs" / "a", data=tmp_path / "elsewhere", out=tmp_path / "ev2").metrics["n"]


def _model_bytes(run_dir: Path, workdir: Path) -> dict[str, int]:
    """A size part as ``compare`` takes them (the CLI passes one per export format)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "scratch-file").write_bytes(b"x")  # compare removes its size folders
    return {"model_keras_bytes": (run_dir / "model.keras").stat().st_size}


def _spec_bytes(run_dir: Path, workdir: Path) -> dict[str, int]:
    return {"spec_json_bytes": (run_dir / "spec.json").stat().st_size}


def _proof(run_dir: Path, workdir: Path) -> dict[str, Any]:
    """A part that also proves its artifact (as ``export_sizes(prove=True)``): the transfer one fails."""
    passed = "scratch" in run_dir.name
    return {
        "coreml_fp16_proof": {"passed": passed, "max_abs_diff": 0.002 if passed else 0.026, "limit": 0.01}
    }


def test_compare_merges_the_size_parts_of_each_arm(tmp_path: Path):
    from visioncascade.experiment import compare

    out = tmp_path / "cmp"
    result = compare(
        "breastmnist", out, quick=True, folds=0, epochs=1, average_epochs=0, jobs=1, progress=False,
        artifact_sizes=[_model_bytes, _spec_bytes, _proof],
    )  # fmt: skip
    arms = result.comparison["arms"]
    assert list(arms) == ["scratch", "transfer"]
    for arm in arms:
        assert arms[arm]["exported"] == {
            "model_keras_bytes": (out / arm / "model.keras").stat().st_size,
            "spec_json_bytes": (out / arm / "spec.json").stat().st_size,
            **_proof(out / arm, out),
        }
    assert not list(out.glob(".sizes-*"))
    # A proof is a row of its own, without a ratio, and a failed one is said in words on the page.
    row = result.comparison["rows"][-1]
    assert row == {
        "metric": "Core ML fp16 max |Δp| vs Keras",
        "artifact": "Core ML fp16",
        "key": "exported.coreml_fp16_proof.max_abs_diff",
        "values": [0.002, 0.026],
        "ratio": None,
        "passed": [True, False],
        "limit": 0.01,
    }
    assert "exported.coreml_fp16_proof.max_abs_diff" not in result.comparison["ratios"]
    html = (out / "comparison.html").read_text()
    assert "0.002 (passed, limit 0.01)" in html and "0.026 (<b>failed</b>, limit 0.01)" in html
    assert "<b>Failed its proof:</b> transfer Core ML fp16 —" in html
