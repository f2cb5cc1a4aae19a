"""Training runs, evaluations and comparisons: the glue between data, models, training and reports.

This module sits above ``train`` and ``evaluate`` (it imports both) and below ``export``. The CLI's
``train``, ``evaluate`` and ``compare`` commands are thin shells around :func:`train_run`,
:func:`evaluate_run` and :func:`compare`.

How the final model is produced
-------------------------------
1. Splits: the dataset's own ``train``/``val``/``test`` splits are used as they are; a missing test split
   is a stratified 20 % hold-out of train, a missing val split a stratified 10 % hold-out of the rest.
2. First fit: trained on ``train`` with early stopping on ``val`` log loss (patience, at most ``epochs``),
   the best-validation-log-loss weights restored (and checkpointed while training). Then, with
   ``average_epochs`` (the architecture's default: 20 for scratch, 5 for mobilenet_v2), stochastic
   weight averaging: that many epochs more at the initial learning rate, the model's weights the average
   of theirs, BatchNorm statistics recomputed (the checkpoint keeps the best weights before averaging).
   Every fit below ends the same way.
3. Calibration: a temperature and, for a class-weighted model, a prior correction (how much of the
   class weights' shift of the prior to take back) fitted on ``val`` by log loss and applied inside the
   model's softmax (:mod:`visioncascade.train.calibration`).
4. Refit (``refit``, the default except with ``--quick``): a new model of the same seed is trained on
   ``train`` + ``val`` for the best epoch count of step 2 (no early stopping: val is now training data),
   and step 3's calibration is applied to it; it becomes the final model (without the refit, the first
   fit is). On BreastMNIST the 14 % more images gave +0.015 test ROC-AUC on average over five seeds
   (BENCHMARKS.md). The ``val`` metrics and the calibration figures in ``metrics.json`` are those of the
   first fit (the refit model has seen val); Ctrl-C during the refit keeps the first fit.
5. Test: the calibrated final model is evaluated once on the untouched ``test`` split.
6. Cross-validation: stratified K folds of ``train``, each fold trained exactly like the first fit with
   the held-out fold as its validation data; per-fold metrics and mean ± std estimate how much the recipe
   varies. The CV models are not kept.

Steps 2 + 4 and each fold of step 6 are independent fits: with ``config.jobs`` > 1 they run side by side
in worker processes (:mod:`visioncascade.train.workers`), the final model's two fits first; models come
back as files, and the run is the same as a sequential one with the workers' thread count. ``compare``
puts both arms' fits (and their exports for the sizes) into one queue of the workers (:class:`_SideBySide`).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import functools
import io
import json
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import yaml

from visioncascade import __version__
from visioncascade._fs import RUN_FILES, atomic_dir, check_output_dir, check_run_dir
from visioncascade.data import (
    Dataset,
    Split,
    check_copies,
    check_evaluated_copies,
    data_reference,
    load_cap,
    load_dataset,
    locate_run_data,
    resolve_splits,
    stratified_folds,
)
from visioncascade.data.pipeline import Augmentation
from visioncascade.errors import ConfigError, DataError, VisionCascadeError
from visioncascade.evaluate import plots
from visioncascade.evaluate.metrics import (
    BOOTSTRAP_RESAMPLES,
    SUMMARY_KEYS,
    bootstrap_intervals,
    compute_metrics,
    minority_index,
    paired_bootstrap_differences,
    summarize_folds,
)
from visioncascade.evaluate.report import (
    render_comparison_report,
    render_evaluation_report,
    render_run_report,
)
from visioncascade.evaluate.timing import measure_latency
from visioncascade.models import create_model, get_architecture, load_model, resolve_params, save_model
from visioncascade.spec import ModelSpec
from visioncascade.train.calibration import MIN_CALIBRATION_IMAGES, Calibration, fit_calibration
from visioncascade.train.config import TrainConfig, arm_configs
from visioncascade.train.fit import FitResult, class_weights, clear_trainers, fit_model, seed_everything
from visioncascade.train.progress import TrainingProgress
from visioncascade.train.workers import FitWorkers, Task

__all__ = [
    "CompareResult",
    "EvalResult",
    "RunResult",
    "compare",
    "evaluate_run",
    "resolve_image_size",
    "train_run",
]


@dataclass
class RunResult:
    """A finished training run."""

    run_dir: Path
    metrics: dict[str, Any]
    spec: ModelSpec


@dataclass
class EvalResult:
    """An evaluation of a saved run on some data."""

    metrics: dict[str, Any]
    data_name: str
    json_path: Path
    html_path: Path


@dataclass
class CompareResult:
    """A finished scratch-vs-transfer comparison."""

    out_dir: Path
    comparison: dict[str, Any]


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def resolve_image_size(config: TrainConfig, dataset: Dataset) -> int:
    """The square input size: ``config.image_size``, else the architecture's rule.

    ``scratch`` uses the data's own size (shorter side) clamped to 28..64 px; ``mobilenet_v2`` uses 96 px.
    """
    if config.image_size is not None:
        return int(config.image_size)
    arch = get_architecture(config.arch)
    if config.arch == "scratch":
        return int(min(max(min(dataset.native_size), 28), arch.default_image_size))
    return arch.default_image_size


def _load(data: str | Path, max_short_side: int, progress: bool | TrainingProgress) -> Dataset:
    """:func:`load_dataset`, with a bar for a folder's files (a thousand photos take a while): on
    ``progress`` itself where it is a display the caller runs, else on one of its own."""
    if isinstance(progress, TrainingProgress):
        return load_dataset(data, max_short_side=max_short_side, progress=progress.reading)
    with TrainingProgress(enabled=progress) as display:
        return load_dataset(data, max_short_side=max_short_side, progress=display.reading)


def _predict(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probabilities for a whole split (direct calls: no per-model ``predict`` function to trace)."""
    out = [
        keras.ops.convert_to_numpy(model(x[i : i + batch_size].astype(np.float32), training=False))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out).astype(np.float64)


@dataclass(frozen=True)
class _Recipe:
    """How to build the run's model: plain data, so that worker processes can build it too."""

    arch: str
    input_shape: tuple[int, int, int]
    num_classes: int
    edges: bool
    params: dict[str, Any]

    def build(self) -> keras.Model:
        return create_model(
            self.arch,
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            edges=self.edges,
            **self.params,
        )


StageCallbacks = Callable[[str], list[keras.callbacks.Callback]]
#: ``compare``'s ``artifact_sizes``: ``(run_dir, workdir) -> {"<format>_<precision>_bytes": bytes}``, and
#: optionally ``"<format>_<precision>_proof": {"passed": bool, "max_abs_diff": float, "limit": float}``.
SizeFunction = Callable[[Path, Path], dict[str, Any]]


def _refit(
    recipe: _Recipe,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    epochs: int,
    config: TrainConfig,
    fit_kwargs: dict[str, Any],
    callbacks: list[keras.callbacks.Callback],
    learning_rates: list[float] | None = None,
) -> tuple[FitResult, keras.Model]:
    """A new model (same seed) trained on train + val for ``epochs`` epochs, without early stopping,
    following the first fit's learning rates epoch by epoch (``learning_rates``); the model keeps the
    weights of its last epoch (then averaged where the recipe averages).

    Class weights are recomputed for the union; val is still evaluated each epoch, but with patience past
    the last epoch it cannot stop the fit, and it does not choose the epoch kept. The first fit's schedule
    is replayed because val is now training data: its loss no longer says when to halve the rate, nor
    which epoch generalises best.
    """
    x = np.concatenate([train[0], val[0]])
    y = np.concatenate([train[1], val[1]])
    kwargs = {
        **fit_kwargs,
        "epochs": epochs,
        "patience": epochs + 1,
        "class_weight": class_weights(y, recipe.num_classes) if config.class_weight == "auto" else None,
    }
    seed_everything(config.seed)
    model = recipe.build()
    result = fit_model(
        model, (x, y), val, callbacks=callbacks, learning_rates=learning_rates, restore_best=False, **kwargs
    )
    return result, model


def _fit_final(
    recipe: _Recipe,
    config: TrainConfig,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    fit_kwargs: dict[str, Any],
    checkpoint: Path,
    refit_to: Path | None,
    first_to: Path | None = None,
    *,
    stage: StageCallbacks,
) -> tuple[FitResult, FitResult | None]:
    """Steps 2 and 4 of the recipe: the first fit, whose best weights end up in ``checkpoint`` (and
    its model, weight-averaged where the recipe averages, in ``first_to`` if given), and (with
    ``refit_to``) the refit, whose model is written to ``refit_to`` unless it was interrupted.

    Runs in this process or in a worker (:mod:`visioncascade.train.workers`): models travel as files.
    """
    seed_everything(config.seed)
    model = recipe.build()
    final = fit_model(
        model, train, val, checkpoint=checkpoint, callbacks=stage("final model (train → val)"), **fit_kwargs
    )
    if first_to is not None and final.best_epoch >= 0:
        save_model(model, first_to)
    if refit_to is None or final.interrupted or final.best_epoch < 0 or not len(val[1]):
        return final, None
    del model
    epochs = final.best_epoch + 1
    rates = final.history.get("learning_rate")
    refit, refit_model = _refit(
        recipe,
        train,
        val,
        epochs,
        config,
        fit_kwargs,
        stage(f"refit on train + val ({epochs} epochs)"),
        learning_rates=rates[:epochs] if rates else None,
    )
    if not refit.interrupted:
        save_model(refit_model, refit_to)
    return final, refit


def _fit_fold(
    recipe: _Recipe,
    seed: int,
    x: np.ndarray,
    y: np.ndarray,
    train_index: np.ndarray,
    val_index: np.ndarray,
    fit_kwargs: dict[str, Any],
    label: str,
    *,
    stage: StageCallbacks,
) -> tuple[FitResult, np.ndarray | None]:
    """Step 6 of the recipe for one fold: the fit and its out-of-fold probabilities (``None`` when the
    fit did not finish)."""
    seed_everything(seed)
    model = recipe.build()
    result = fit_model(
        model,
        (x[train_index], y[train_index]),
        (x[val_index], y[val_index]),
        callbacks=stage(label),
        **fit_kwargs,
    )
    finished = result.best_epoch >= 0 and not result.interrupted
    return result, _predict(model, x[val_index]) if finished else None


@dataclass
class _Finished:
    """The final model after steps 3 and 4 (calibrated on val; the refit's model where there is one)."""

    model: keras.Model
    calibration: Calibration
    p_val_raw: np.ndarray
    p_val: np.ndarray
    p_test_raw: np.ndarray
    p_test: np.ndarray
    histories: dict[str, dict[str, list[float]]]
    averaging: dict[str, dict[str, list[float]]]
    refit: dict[str, Any] | None
    notes: list[str]
    refit_interrupted: bool


def _finish_final(
    outcome: tuple[FitResult, FitResult | None],
    *,
    checkpoint: Path,
    first_to: Path | None,
    refit_to: Path | None,
    val: tuple[np.ndarray, np.ndarray],
    x_test: np.ndarray,
    weights: dict[int, float] | None,
    refit_images: int,
    save_to: Path,
) -> _Finished:
    """Calibrate the final task's model on val (step 3), put the calibration into the refit's model
    (step 4), write the result to ``save_to`` and return it with its probabilities on val and test.

    Reads the models that :func:`_fit_final` wrote and leaves the files (the caller removes them): it
    may run again after a Ctrl-C stopped it half-way.
    """
    final, refit_result = outcome
    x_val, y_val = val
    notes: list[str] = []
    # The weight-averaged model where the recipe averages (the checkpoint holds the best weights before).
    model = load_model(first_to if first_to is not None and first_to.exists() else checkpoint)
    p_val_raw = _predict(model, x_val)
    p_test_raw = _predict(model, x_test)
    calibration = fit_calibration(p_val_raw, y_val, weights)
    if len(y_val) < MIN_CALIBRATION_IMAGES:
        notes.append(
            f"the val split has {len(y_val)} images, fewer than {MIN_CALIBRATION_IMAGES}: "
            "the model was not calibrated (T = 1, no prior correction)"
        )
    _calibrate(model, calibration)
    p_val = _predict(model, x_val)
    p_test = _predict(model, x_test)
    histories = {"final": final.history}
    averaging = {"final-averaging": final.averaging_history}  # history.csv only, not the plot
    refit: dict[str, Any] | None = None
    refit_interrupted = refit_result is not None and refit_result.interrupted
    if refit_interrupted:
        notes.append("the refit on train + val was interrupted: the model trained on train is kept")
    elif refit_result is not None and refit_to is not None:
        model = load_model(refit_to)
        p_test_raw = _predict(model, x_test)
        _calibrate(model, calibration)
        p_test = _predict(model, x_test)
        # Without its val curves: val was training data of the refit.
        histories["refit"] = {k: v for k, v in refit_result.history.items() if not k.startswith("val_")}
        averaging["refit-averaging"] = refit_result.averaging_history
        refit = {
            "epochs": refit_result.epochs_run,
            "averaged_epochs": refit_result.averaged_epochs,
            "images": refit_images,
            "seconds": refit_result.seconds,
        }
    save_model(model, save_to)
    return _Finished(
        model=model,
        calibration=calibration,
        p_val_raw=p_val_raw,
        p_val=p_val,
        p_test_raw=p_test_raw,
        p_test=p_test,
        histories=histories,
        averaging=averaging,
        refit=refit,
        notes=notes,
        refit_interrupted=refit_interrupted,
    )


def _calibrate(model: keras.Model, calibration: Calibration) -> None:
    """Put ``calibration`` into the model's softmax."""
    layer = model.get_layer("probabilities")
    layer.set_temperature(calibration.temperature)
    layer.set_offsets(calibration.offsets_for(layer.offsets.shape[0]))


def _history_csv(histories: dict[str, dict[str, list[float]]]) -> str:
    keys = {
        "loss": ".6f",
        "accuracy": ".6f",
        "val_loss": ".6f",
        "val_accuracy": ".6f",
        "learning_rate": ".6g",
    }
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["stage", "epoch", *keys])
    for stage, hist in histories.items():
        for epoch in range(len(hist.get("loss", []))):
            cells = (format(hist[k][epoch], fmt) if k in hist else "" for k, fmt in keys.items())
            writer.writerow([stage, epoch + 1, *cells])
    return buffer.getvalue()


def train_run(
    data: str | Path | Dataset,
    out: str | Path,
    config: TrainConfig | None = None,
    *,
    name: str | None = None,
    overwrite: bool = False,
    progress: bool | TrainingProgress = True,
    callbacks: list[keras.callbacks.Callback] | None = None,
    workers: FitWorkers | None = None,
) -> RunResult:
    """Train, calibrate, cross-validate and report; write a complete run folder to ``out`` atomically.

    The folder holds ``model.keras``, ``spec.json``, ``metrics.json``, ``history.csv``, ``config.yaml`` and
    ``report.html`` (and ``checkpoints/best_val_loss.keras``). Nothing is written if training fails; Ctrl-C
    during training keeps the best model so far and writes the run marked ``"interrupted": true``.
    ``callbacks`` are extra Keras callbacks for every fit (e.g. to watch or stop training); they run in
    this process, so they need ``config.jobs == 1``. With ``config.jobs`` > 1 the fits run side by side in
    worker processes: ``workers`` (a started :class:`FitWorkers`, e.g. shared by both arms of a
    comparison), else a pool of ``config.jobs`` started for this run.
    """
    config = config or TrainConfig.build()
    if callbacks and config.jobs > 1:
        raise ConfigError(
            f"callbacks run in this process but jobs={config.jobs} trains in worker processes; "
            "use a config with jobs=1 to pass callbacks"
        )
    out = Path(out)
    check_output_dir(out, overwrite)  # fail before any slow work
    with contextlib.ExitStack() as stack:
        stack.callback(clear_trainers)  # the compiled twins of this run's fits in this process
        if workers is None and config.jobs > 1:
            # Started before the data is read: the workers import TensorFlow meanwhile.
            workers = stack.enter_context(FitWorkers(config.jobs))
        return _train_run(data, out, config, name, overwrite, progress, callbacks, workers)


@dataclass
class _Arm:
    """One run in the making: its data, spec and fits (the tasks), then what the fits gave.

    :func:`_plan_run` makes it, :func:`_record` takes each task's outcome (and calibrates and saves the
    final model as soon as its task is done) and :func:`_write_run` writes the rest of the run folder.
    """

    out: Path  # where the run folder will be
    tmp: Path  # the run folder being written (made atomic by the caller)
    config: TrainConfig
    dataset: Dataset
    spec: ModelSpec
    run_name: str
    notes: list[str]
    config_yaml: str  # the resolved settings, as config.yaml holds them
    minority: int
    y_train: np.ndarray
    y_val: np.ndarray
    y_test: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    tasks: list[Task]
    finish_args: dict[str, Any]
    leftovers: tuple[Path, ...]
    test_look_alikes: np.ndarray  # test images with an exact or near copy among the train and val images
    outcomes: dict[str, Any] = field(default_factory=dict)
    finished: _Finished | None = None

    @property
    def stage_count(self) -> int:
        """The fits the progress display counts: the first fit, the refit, the folds."""
        return 1 + int(self.config.refit) + len(self.folds)

    @property
    def has_model(self) -> bool:
        """Whether the first fit finished an epoch, so that there is a model to keep."""
        final, _ = self.outcomes.get("final", (None, None))
        return final is not None and final.best_epoch >= 0

    @property
    def diverged(self) -> bool:
        """Whether the first fit ran its epochs to the end without one finite validation log loss."""
        final, _ = self.outcomes.get("final", (None, None))
        return final is not None and final.best_epoch < 0 and final.epochs_run > 0 and not final.interrupted

    def no_model_error(self) -> VisionCascadeError:
        """Why there is no model to keep: a fit that diverged, or Ctrl-C before the first epoch ended."""
        if not self.diverged:
            return DataError(
                "training stopped before the first fit finished an epoch, so there is no model to keep"
            )
        final, _ = self.outcomes["final"]
        rate = self.config.learning_rate or get_architecture(self.config.arch).default_learning_rate
        return ConfigError(
            f"training of {self.run_name!r} diverged: the validation log loss was not finite in any of its "
            f"{final.epochs_run} epoch(s) at learning rate {rate:g}, so there is no model to keep; "
            f"lower --learning-rate (e.g. {rate / 10:g})"
        )


def _plan_run(
    data: str | Path | Dataset, dataset: Dataset, out: Path, tmp: Path, config: TrainConfig, name: str | None
) -> _Arm:
    """Make the splits, folds and spec, and lay out the fits of a run for ``out``, written to ``tmp``."""
    fingerprint = dataset.fingerprint()  # of the data as given, before any hold-out is made
    dataset, split_notes = resolve_splits(dataset, seed=config.seed)
    copy_notes, test_look_alikes = check_copies(dataset.splits, dataset.labels)
    split_notes += copy_notes
    arch = get_architecture(config.arch)
    params = resolve_params(config.arch, config.arch_params)
    color_mode = dataset.native_color_mode if config.color_mode == "auto" else config.color_mode
    size = resolve_image_size(config, dataset)
    learning_rate = config.learning_rate or arch.default_learning_rate
    x_train, y_train = dataset.arrays("train", (size, size), color_mode)
    x_val, y_val = dataset.arrays("val", (size, size), color_mode)
    x_test, y_test = dataset.arrays("test", (size, size), color_mode)
    folds = stratified_folds(y_train, config.folds, config.seed, dataset.labels) if config.folds else []
    weights = class_weights(y_train, dataset.num_classes) if config.class_weight == "auto" else None
    augmentation = Augmentation(**config.augmentation) if config.augment else None
    minority = minority_index(y_train, dataset.num_classes)
    run_name = name or f"{dataset.name}-{config.arch}"
    spec = ModelSpec(
        name=run_name,
        labels=dataset.labels,
        input_size=(size, size),
        color_mode=color_mode,  # type: ignore[arg-type]
        architecture=config.arch,
        architecture_params=params,
        edges=config.edges,
        data_fingerprint=fingerprint,
        visioncascade_version=__version__,
        extra={
            "dataset": dataset.name,
            "minority_label": dataset.labels[minority],
            **({"attribution": dataset.attribution} if dataset.attribution else {}),
        },
    )
    recipe = _Recipe(config.arch, spec.input_shape, spec.num_classes, config.edges, params)
    fit_kwargs = dict(
        epochs=config.epochs,
        patience=config.patience,
        batch_size=config.batch_size,
        learning_rate=learning_rate,
        weight_decay=config.weight_decay,
        augmentation=augmentation,
        class_weight=weights,
        seed=config.seed,
        average_epochs=config.average_epochs,
    )
    checkpoint = tmp / "checkpoints" / "best_val_loss.keras"
    refit_to = tmp / ".refit.keras" if config.refit else None
    # The checkpoint holds the best weights before averaging; the averaged model travels apart.
    first_to = tmp / ".first.keras" if config.average_epochs else None
    final_task = (
        "final",
        _fit_final,
        (recipe, config, (x_train, y_train), (x_val, y_val), fit_kwargs, checkpoint, refit_to, first_to),
        {},
    )
    fold_tasks = [
        (
            f"fold{k + 1}",
            _fit_fold,
            (recipe, config.seed + 1 + k, x_train, y_train, tr, va, fit_kwargs, f"fold {k + 1}/{len(folds)}"),
            {},
        )
        for k, (tr, va) in enumerate(folds)
    ]
    finish_args = dict(
        checkpoint=checkpoint,
        first_to=first_to,
        refit_to=refit_to,
        val=(x_val, y_val),
        x_test=x_test,
        weights=weights,
        refit_images=int(len(y_train) + len(y_val)),
        save_to=tmp / "model.keras",
    )
    return _Arm(
        out=out,
        tmp=tmp,
        config=config,
        dataset=dataset,
        spec=spec,
        run_name=run_name,
        notes=split_notes + dataset.warnings,
        config_yaml=_config_yaml(
            data, out, run_name, config, size, color_mode, learning_rate, params, weights, augmentation
        ),
        minority=minority,
        y_train=y_train,
        y_val=y_val,
        y_test=y_test,
        test_look_alikes=test_look_alikes,
        folds=folds,
        tasks=[final_task, *fold_tasks],
        finish_args=finish_args,
        leftovers=tuple(p for p in (first_to, refit_to) if p is not None),
    )


def _record(arm: _Arm, task: str, outcome: Any) -> None:
    """Keep a task's outcome; the final task's model is calibrated, saved and described at once.

    With workers this runs here while the other fits go on in the workers (a worker would otherwise idle,
    and this process too). Afterwards the run folder holds ``model.keras``, ``spec.json`` and
    ``config.yaml``: enough to export the model while the folds still train.
    """
    arm.outcomes[task] = outcome
    if task == "final" and arm.has_model:
        _finish(arm)


def _finish(arm: _Arm) -> None:
    """Steps 3 and 4 for the arm's final model, and the run's ``spec.json`` and ``config.yaml``. The arm
    counts as finished only at the end: Ctrl-C half-way makes it all again (after the pool stopped)."""
    finished = _finish_final(arm.outcomes["final"], **arm.finish_args)
    calibration = finished.calibration
    spec = arm.spec.replace(temperature=calibration.temperature, logit_offsets=calibration.offsets)
    spec.save(arm.tmp / "spec.json")
    (arm.tmp / "config.yaml").write_text(arm.config_yaml, encoding="utf-8")
    arm.spec, arm.finished = spec, finished


def _config_yaml(
    data: str | Path | Dataset,
    out: Path,
    run_name: str,
    config: TrainConfig,
    size: int,
    color_mode: str,
    learning_rate: float,
    params: dict[str, Any],
    weights: dict[int, float] | None,
    augmentation: Augmentation | None,
) -> str:
    reference, beside_run = data_reference(data.source if isinstance(data, Dataset) else data, out)
    config_doc = {
        "data": reference,
        "data_beside_run": beside_run,
        "name": run_name,
        "train": config.to_dict(),
        "resolved": {
            "image_size": size,
            "color_mode": color_mode,
            "learning_rate": learning_rate,
            "arch_params": params,
            "class_weight": weights,
            "augmentation": augmentation.to_dict() if augmentation else None,
        },
    }
    return yaml.safe_dump(config_doc, sort_keys=False)


def _train_run(
    data: str | Path | Dataset,
    out: Path,
    config: TrainConfig,
    name: str | None,
    overwrite: bool,
    progress: bool | TrainingProgress,
    callbacks: list[keras.callbacks.Callback] | None,
    workers: FitWorkers | None,
) -> RunResult:
    dataset = data if isinstance(data, Dataset) else _load(data, load_cap(config.image_size), progress)
    display = progress if isinstance(progress, TrainingProgress) else TrainingProgress(enabled=bool(progress))
    own_display = not isinstance(progress, TrainingProgress)
    with atomic_dir(out, overwrite) as tmp, contextlib.ExitStack() as stack:
        arm = _plan_run(data, dataset, out, tmp, config, name)
        started = time.perf_counter()
        if own_display:
            stack.enter_context(display)
        display.stages(f"{arm.run_name}", total=arm.stage_count)
        for note in arm.notes:
            display.note(note)
        stopped = False
        if workers is None:  # one fit after the other, in this process

            def stage(label: str) -> list[keras.callbacks.Callback]:
                return display.fit_callbacks(label, config.epochs, callbacks)

            for task, fn, args, kwargs in arm.tasks:
                try:
                    arm.outcomes[task] = fn(*args, stage=stage, **kwargs)
                except KeyboardInterrupt:  # between two fits
                    stopped = True
                    break
                if any(isinstance(r, FitResult) and r.interrupted for r in arm.outcomes[task]):
                    break  # Ctrl-C in a fit: keep what is done, train nothing more
        else:  # side by side in worker processes; the final model first, it is two fits long
            results, stopped = workers.run(arm.tasks, display.worker_message, functools.partial(_record, arm))
            for task, outcome in results.items():  # any that Ctrl-C kept from on_result
                arm.outcomes.setdefault(task, outcome)
        if not arm.has_model:
            raise arm.no_model_error()
        if arm.finished is None:  # made while the last folds trained, unless Ctrl-C stopped that
            _finish(arm)
        result = _write_run(arm, stopped, time.perf_counter() - started, display)
    keras.backend.clear_session()
    return result


def _write_run(arm: _Arm, stopped: bool, training_seconds: float, display: TrainingProgress) -> RunResult:
    """Measure the final model's latency (nothing else may run meanwhile) and write the rest of the run:
    ``metrics.json``, ``history.csv`` and ``report.html`` (``model.keras``, ``spec.json`` and
    ``config.yaml`` are there since the final model was finished)."""
    if arm.finished is None:
        raise RuntimeError("_write_run before the final model was finished")
    tmp, dataset, config, minority, spec = arm.tmp, arm.dataset, arm.config, arm.minority, arm.spec
    y_test = arm.y_test
    final, _ = arm.outcomes["final"]
    done = arm.finished
    interrupted = stopped or final.interrupted or done.refit_interrupted
    for leftover in arm.leftovers:
        leftover.unlink(missing_ok=True)
    model, calibration, p_val_raw, p_val, p_test_raw, p_test = (
        done.model,
        done.calibration,
        done.p_val_raw,
        done.p_val,
        done.p_test_raw,
        done.p_test,
    )
    notes = arm.notes + done.notes
    histories, averaging, refit = dict(done.histories), dict(done.averaging), done.refit
    fold_metrics: list[dict[str, Any]] = []
    oof_index: list[np.ndarray] = []
    oof_probs: list[np.ndarray] = []
    y_train = arm.y_train
    for k, (_, va) in enumerate(arm.folds):
        task = f"fold{k + 1}"
        result, p_fold = arm.outcomes.get(task, (None, None))
        if result is None or p_fold is None:  # not started, or stopped before its end
            interrupted = interrupted or result is not None
            continue
        oof_index.append(va)
        oof_probs.append(p_fold)
        fold_metrics.append(
            {
                **compute_metrics(y_train[va], p_fold, dataset.labels, minority),
                "fold": k + 1,
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "training_seconds": result.seconds,
            }
        )
        histories[task] = result.history
        averaging[f"{task}-averaging"] = result.averaging_history
    display.stage("writing run")
    latency = measure_latency(model)
    model_info = {
        "parameters": int(model.count_params()),
        "trainable_parameters": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "file_bytes": (tmp / "model.keras").stat().st_size,
        **latency,
    }
    test = compute_metrics(y_test, p_test, dataset.labels, minority)
    test["ci95"] = bootstrap_intervals(y_test, p_test, minority)
    unseen = _without_look_alikes(y_test, p_test, dataset.labels, minority, arm.test_look_alikes)
    if unseen is not None:
        test["without_look_alikes"] = unseen
    test.update(
        parameters=model_info["parameters"],
        model_bytes=model_info["file_bytes"],
        training_seconds=training_seconds,
        latency_ms=latency["latency_ms_p50"],
    )
    y_val = arm.y_val
    val_raw = compute_metrics(y_val, p_val_raw, dataset.labels, minority)
    val = compute_metrics(y_val, p_val, dataset.labels, minority)
    cv: dict[str, Any] = {"k": config.folds, "completed": len(fold_metrics), "folds": fold_metrics}
    if fold_metrics:
        cv.update(summarize_folds(fold_metrics))
        for key in SUMMARY_KEYS:
            cv[key] = cv["mean"][key]
        cv["minority_label"] = dataset.labels[minority]
        # Out-of-fold predictions pooled over the completed folds: per-class table and confusion.
        idx = np.concatenate(oof_index)
        pooled = compute_metrics(y_train[idx], np.concatenate(oof_probs), dataset.labels, minority)
        cv["per_class"] = pooled["per_class"]
        cv["confusion_matrix"] = pooled["confusion_matrix"]
        cv["pooled"] = {k: pooled[k] for k in SUMMARY_KEYS}
        cv["training_seconds"] = float(np.mean([f["training_seconds"] for f in fold_metrics]))
        cv["parameters"] = model_info["parameters"]
        cv["model_bytes"] = model_info["file_bytes"]
        cv["latency_ms"] = latency["latency_ms_p50"]
    metrics: dict[str, Any] = {
        "test": test,
        "test_uncalibrated": compute_metrics(y_test, p_test_raw, dataset.labels, minority),
        "val": val,
        "cv": cv,
        "calibration": {
            "temperature": calibration.temperature,
            "prior_correction": calibration.prior_correction,
            "logit_offsets": list(calibration.offsets),
            "fitted_on": "val",
            "val_log_loss_before": val_raw["log_loss"],
            "val_log_loss_after": val["log_loss"],
            "val_ece_before": val_raw["ece"],
            "val_ece_after": val["ece"],
        },
        "final": {
            "best_epoch": final.best_epoch,
            "epochs_run": final.epochs_run,
            "best_val_loss": final.best_val_loss,
            "seconds": final.seconds,
            "images_per_second": final.images_per_second,
            "averaged_epochs": final.averaged_epochs,
            "refit": refit,
        },
        "model": model_info,
        "training_seconds": training_seconds,
        "interrupted": interrupted,
        "dataset": {
            "name": dataset.name,
            "source": dataset.source,
            "fingerprint": spec.data_fingerprint,
            "labels": list(dataset.labels),
            "class_counts": {s: dataset.class_counts(s) for s in ("train", "val", "test")},
            "notes": notes,
        },
        "created_at": _now(),
        "visioncascade_version": __version__,
    }
    (tmp / "history.csv").write_text(_history_csv({**histories, **averaging}), encoding="utf-8")
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    report_plots = {
        "training": plots.training_curves_png(histories, final.best_epoch),
        "confusion_matrix": plots.confusion_matrix_png(test["confusion_matrix"], dataset.labels),
        "roc_pr": plots.roc_pr_png(y_test, p_test, dataset.labels),
        "reliability": plots.reliability_png(y_test, {"uncalibrated": p_test_raw, "calibrated": p_test}),
    }
    html = render_run_report(
        {
            "metrics": metrics,
            "spec": spec.to_dict(),
            "plots": report_plots,
            "dataset": {**metrics["dataset"], "attribution": dataset.attribution},
            "notes": notes,
            "config_yaml": arm.config_yaml,
        }
    )
    (tmp / "report.html").write_text(html, encoding="utf-8")
    display.stage("done")
    return RunResult(run_dir=arm.out, metrics=metrics, spec=spec)


def _load_run(run: str | Path) -> tuple[Path, ModelSpec, dict[str, Any]]:
    run = check_run_dir(run, RUN_FILES)
    spec = ModelSpec.load(run / "spec.json")
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    return run, spec, config


def _align_labels(dataset: Dataset, spec: ModelSpec) -> np.ndarray:
    """Map the dataset's class indices onto the spec's label order (same names required)."""
    if set(dataset.labels) != set(spec.labels):
        raise DataError(
            f"the data's classes {list(dataset.labels)} differ from the model's labels {list(spec.labels)}; "
            "evaluate on data with the same class names"
        )
    return np.array([spec.labels.index(label) for label in dataset.labels], dtype=np.int64)


def _trained_on(dataset: Dataset) -> dict[str, Split]:
    """The splits a run is trained and validated on (early stopping, calibration): ``train`` and ``val``."""
    return {name: dataset.splits[name] for name in ("train", "val") if name in dataset.splits}


def _without_look_alikes(
    y: np.ndarray, probabilities: np.ndarray, labels: tuple[str, ...], minority: int, look_alike: np.ndarray
) -> dict[str, Any] | None:
    """Headline metrics on the images that have no exact or near copy among those trained on (``look_alike``
    False), with ``n`` and ``left_out``; ``None`` when there is nothing to leave out, or nothing left."""
    keep = ~look_alike
    if not look_alike.any() or not keep.any():
        return None
    scored = compute_metrics(y[keep], probabilities[keep], labels, minority)
    return {
        "n": int(keep.sum()),
        "left_out": int(look_alike.sum()),
        **{
            key: scored[key]
            for key in ("accuracy", "balanced_accuracy", "roc_auc", "minority_f1", "log_loss")
        },
    }


def _training_copies(
    run: Path, config: dict[str, Any], spec: ModelSpec, seed: int, dataset: Dataset, split_names: list[str]
) -> tuple[list[str], np.ndarray | None]:
    """Notes on images of ``dataset`` (other data a run is evaluated on) that are exact or near copies of
    images the run was trained or validated on, or on why that could not be looked at; and a mask of those
    copies over the images evaluated (``None`` when the training data could not be found)."""
    if not config.get("data"):
        return [
            "did not look for copies of the training images in it: the run's config.yaml names no data"
        ], None
    try:
        source, _ = locate_run_data(config["data"], run, config.get("data_beside_run"))
    except DataError:  # its advice ("pass --data with where that data is now") is for a plain evaluate
        return [
            "did not look for copies of the training images in it: the run's training data is no longer "
            f"at {config['data']}"
        ], None
    try:
        trained_on = load_dataset(source, max_short_side=load_cap(spec.input_size))
        trained_on, _ = resolve_splits(trained_on, seed=seed)
    except VisionCascadeError as exc:
        return [f"did not look for copies of the training images in it: {exc}"], None
    return check_evaluated_copies(dataset.splits, split_names, _trained_on(trained_on))


def evaluate_run(
    run: str | Path, data: str | Path | None = None, out: str | Path | None = None
) -> EvalResult:
    """Evaluate a saved run's model on its own test split, or on ``data`` (its test split, else all of it).

    Writes ``<out>/<data name>.json`` and ``.html`` (default ``<run>/evaluations/``).
    """
    run, spec, config = _load_run(run)
    seed = int(config.get("train", {}).get("seed", 0))
    notes: list[str] = []
    if data is None:
        source, notes = locate_run_data(config["data"], run, config.get("data_beside_run"))
        dataset = load_dataset(source, max_short_side=load_cap(spec.input_size))
        if dataset.fingerprint() != spec.data_fingerprint:
            notes.append(
                f"the data at {source} changed since training (fingerprint {dataset.fingerprint()} != "
                f"{spec.data_fingerprint}); its test split may overlap the training data"
            )
        dataset, _ = resolve_splits(dataset, seed=seed)
        copy_notes, look_alike = check_copies(dataset.splits, dataset.labels)
        notes += copy_notes
        split_names = ["test"]
    else:
        dataset = load_dataset(data, max_short_side=load_cap(spec.input_size))
        split_names = ["test"] if "test" in dataset.splits else sorted(dataset.splits)
        notes.append(f"evaluated on split(s) {split_names} of {dataset.source}")
        copy_notes, look_alike = _training_copies(run, config, spec, seed, dataset, split_names)
        notes += copy_notes
    mapping = _align_labels(dataset, spec)
    xs, ys = zip(*(dataset.arrays(s, spec.input_size, spec.color_mode) for s in split_names), strict=True)
    x, y = np.concatenate(xs), mapping[np.concatenate(ys)]
    model = load_model(run)
    probabilities = _predict(model, x)
    minority_label = (
        spec.extra.get("minority_label")
        or spec.labels[int(np.argmin(np.bincount(y, minlength=spec.num_classes)))]
    )
    metrics = compute_metrics(y, probabilities, spec.labels, spec.labels.index(minority_label))
    metrics["ci95"] = bootstrap_intervals(y, probabilities, spec.labels.index(minority_label))
    if look_alike is not None:
        unseen = _without_look_alikes(
            y, probabilities, spec.labels, spec.labels.index(minority_label), look_alike
        )
        if unseen is not None:
            metrics["without_look_alikes"] = unseen
    metrics["data"] = {"name": dataset.name, "source": dataset.source, "splits": split_names, "notes": notes}
    metrics["created_at"] = _now()
    out_dir = Path(out) if out is not None else run / "evaluations"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "test" if data is None else dataset.name
    json_path, html_path = out_dir / f"{stem}.json", out_dir / f"{stem}.html"
    json_path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    html_path.write_text(
        render_evaluation_report(
            spec.to_dict(),
            metrics,
            {
                "confusion_matrix": plots.confusion_matrix_png(metrics["confusion_matrix"], spec.labels),
                "roc_pr": plots.roc_pr_png(y, probabilities, spec.labels),
                "reliability": plots.reliability_png(y, {"model": probabilities}),
            },
        ),
        encoding="utf-8",
    )
    return EvalResult(metrics=metrics, data_name=dataset.name, json_path=json_path, html_path=html_path)


#: Rows of the comparison table: (label, where in an arm's summary).
_COMPARE_ROWS = (
    ("test minority F1", "test.minority_f1"),
    ("CV minority F1 (mean)", "cv.minority_f1"),
    ("CV minority F1 (std)", "cv.minority_f1_std"),
    ("test ROC-AUC", "test.roc_auc"),
    ("CV ROC-AUC (mean)", "cv.roc_auc"),
    ("CV ROC-AUC (std)", "cv.roc_auc_std"),
    ("test accuracy", "test.accuracy"),
    ("CV accuracy (mean)", "cv.accuracy"),
    ("test balanced accuracy", "test.balanced_accuracy"),
    ("test log loss", "test.log_loss"),
    ("parameters", "parameters"),
    ("model bytes (.keras)", "model_bytes"),
    ("training seconds", "training_seconds"),
    ("latency ms (1 image)", "latency_ms"),
    ("Core ML fp16 bytes", "exported.coreml_fp16_bytes"),
    ("TFLite int8 bytes", "exported.tflite_int8_bytes"),
    ("ONNX fp32 bytes", "exported.onnx_fp32_bytes"),
)
#: Rows on the test images without a look-alike among the images trained on, when the data has some.
_LOOK_ALIKE_ROWS = (
    ("test minority F1, no look-alikes", "test.without_look_alikes.minority_f1"),
    ("test ROC-AUC, no look-alikes", "test.without_look_alikes.roc_auc"),
    ("test accuracy, no look-alikes", "test.without_look_alikes.accuracy"),
)
#: The exported artifacts whose parity proofs get a row, when the size parts gave them: (name, key).
_PROOF_ROWS = (("Core ML fp16", "coreml_fp16"), ("TFLite int8", "tflite_int8"), ("ONNX fp32", "onnx_fp32"))


def _arm_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    test = {
        k: metrics["test"][k]
        for k in (*SUMMARY_KEYS, "minority_label", "per_class", "confusion_matrix", "ci95")
    }
    if "without_look_alikes" in metrics["test"]:
        test["without_look_alikes"] = metrics["test"]["without_look_alikes"]
    cv_src = metrics.get("cv") or {}
    cv: dict[str, Any] = {"folds": cv_src.get("completed", 0)}
    if cv_src.get("mean"):
        for key in SUMMARY_KEYS:
            cv[key] = cv_src["mean"][key]
            cv[f"{key}_std"] = cv_src["std"][key]
    return {
        "test": test,
        "cv": cv,
        "minority_f1": test["minority_f1"],
        "roc_auc": test["roc_auc"],
        "accuracy": test["accuracy"],
        "parameters": metrics["model"]["parameters"],
        "model_bytes": metrics["model"]["file_bytes"],
        "training_seconds": metrics["training_seconds"],
        "latency_ms": metrics["model"]["latency_ms_p50"],
        "temperature": metrics["calibration"]["temperature"],
        "interrupted": metrics["interrupted"],
    }


def _lookup(summary: dict[str, Any], path: str) -> Any:
    value: Any = summary
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def compare(
    data: str | Path,
    out: str | Path,
    *,
    folds: int | None = None,
    epochs: int | None = None,
    patience: int | None = None,
    weights: str | None = None,
    freeze: int | None = None,
    edges: bool = True,
    augment: bool = True,
    class_weight: str = "auto",
    batch_size: int = 32,
    weight_decay: float | None = None,
    average_epochs: int | None = None,
    seed: int = 0,
    quick: bool = False,
    refit: bool | None = None,
    jobs: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    artifact_sizes: SizeFunction | Sequence[SizeFunction] | None = None,
    workers: FitWorkers | None = None,
) -> CompareResult:
    """Train a ``scratch`` and a ``mobilenet_v2`` (transfer) arm with identical rules; compare them.

    Both arms share the splits, folds, seed, augmentation, edge channel, class weighting, batch size, weight
    decay and early-stopping rules; each keeps its architecture's learning rate, input size and
    weight-averaging epochs (20 for scratch, 5 for transfer) unless ``average_epochs`` sets both. Writes
    ``out/scratch/``, ``out/transfer/`` (complete runs), ``comparison.json`` (with the paired
    transfer-minus-scratch differences on the test split) and ``comparison.html``.

    With ``jobs`` > 1 the fits of both arms run in one queue of a pool of worker processes
    (:class:`~visioncascade.train.workers.FitWorkers`; ``workers``, a started pool, e.g. one started
    before this process imported TensorFlow, else one started here): the transfer arm's first, as its
    fits are the longer ones; each arm's training seconds are then the wall time from its first fit's
    start to its last fit's end, and the two arms' spans overlap. With ``jobs=1`` the arms train one
    after the other in this process.

    ``artifact_sizes(run_dir, workdir)`` (e.g. :func:`visioncascade.export.export_sizes`) adds each arm's
    exported sizes (and, where a part gives ``"<artifact>_proof"`` records, e.g. ``export_sizes(...,
    prove=True)``, a row per artifact with its max |Δp| against Keras and whether its proof passed);
    this stage does not import the export stage itself. A sequence of such functions (the CLI passes
    two: Core ML, and TFLite with ONNX) has its results merged. With worker processes each is a task of
    the queue, started as soon as the arm's final model is saved, so they must be picklable
    (module-level functions or partials); Ctrl-C leaves out the sizes of an arm whose parts did not all
    run. Latencies are measured once the workers are done, never beside a fit or an export.
    """
    out = Path(out)
    check_output_dir(out, overwrite)
    common = dict(
        folds=folds,
        epochs=epochs,
        patience=patience,
        edges=edges,
        augment=augment,
        class_weight=class_weight,
        batch_size=batch_size,
        weight_decay=weight_decay,
        average_epochs=average_epochs,
        seed=seed,
        quick=quick,
        refit=refit,
        jobs=jobs,
    )
    configs = arm_configs(weights=weights, freeze=freeze, **common)
    pool_jobs = max(config.jobs for config in configs.values())
    with contextlib.ExitStack() as stack:
        if workers is None and pool_jobs > 1:
            # Started before the data is read: the workers import TensorFlow meanwhile.
            workers = stack.enter_context(FitWorkers(pool_jobs))
        return _compare(data, out, configs, overwrite, progress, artifact_sizes, workers)


def _size_part(part: SizeFunction, run_dir: Path, workdir: Path, *, stage: StageCallbacks) -> dict[str, Any]:
    """A size part as a worker task (it trains nothing, so it has no stage to report)."""
    return part(run_dir, workdir)


class _SideBySide:
    """Both arms of a comparison, trained in one queue of the worker pool (``compare`` with workers).

    The tasks of the arm with the larger input (its fits are the longer ones) go first, then the other
    arm's: one arm after the other left a worker idle at the end of each arm, and the shorter fits now
    fill the workers' last gaps. Each arm's final model is calibrated and saved here as soon as its task
    is done, and its size parts (exports) join the queue then, ahead of the other arm's waiting fits when
    they are the first arm's. An arm's training seconds are the wall time from the start of its first
    fit to the end of its last (with the final model's calibration), so the two arms' spans overlap. The
    runs are written by :meth:`write_runs` once the workers are done: a latency is never measured beside
    a fit or an export.
    """

    def __init__(
        self,
        dataset: Dataset,
        tmp: Path,
        configs: dict[str, TrainConfig],
        display: TrainingProgress,
        size_parts: list[SizeFunction],
        workers: FitWorkers,
    ):
        self.tmp, self.display, self.size_parts = tmp, display, size_parts
        self.plans: dict[str, _Arm] = {}
        for arm, config in configs.items():
            run_dir = tmp / arm  # compare's own temporary folder makes the whole comparison atomic
            run_dir.mkdir()
            self.plans[arm] = _plan_run(dataset, dataset, run_dir, run_dir, config, f"{dataset.name}-{arm}")
        self.began: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.sizes: dict[str, dict[int, dict[str, Any]]] = {arm: {} for arm in self.plans}  # by part
        display.stages(
            f"{dataset.name}: {' and '.join(self.plans)}",
            total=sum(plan.stage_count for plan in self.plans.values()),
        )
        first = next(iter(self.plans.values()))
        shared = [note for note in first.notes if all(note in plan.notes for plan in self.plans.values())]
        for note in shared:  # on the data both arms share (held-out splits, copies): said once
            display.note(note)
        for arm, plan in self.plans.items():
            for note in plan.notes:
                if note not in shared:
                    display.note(f"{arm}: {note}")
        order = sorted(
            self.plans, key=lambda arm: -self.plans[arm].spec.input_size[0]
        )  # ties keep the arms' order
        rank = {arm: i for i, arm in enumerate(order)}
        tasks = [(f"{arm}/{task[0]}", *task[1:]) for arm in order for task in self.plans[arm].tasks]
        results, self.stopped = workers.run(
            tasks, self._message, self._result, priority=lambda task_id: rank[task_id.partition("/")[0]]
        )
        for task_id, outcome in results.items():  # any that Ctrl-C kept from _result
            arm, _, task = task_id.partition("/")
            if task.startswith("size"):
                self.sizes[arm].setdefault(int(task.removeprefix("size")), outcome)
            else:
                self.plans[arm].outcomes.setdefault(task, outcome)
        self.names: list[str] = []
        for arm, plan in self.plans.items():
            if plan.diverged:  # not a run to leave out without a word
                raise plan.no_model_error()
            if not plan.has_model:  # Ctrl-C before its first fit finished an epoch: no run to keep
                shutil.rmtree(plan.tmp, ignore_errors=True)
                continue
            if plan.finished is None:  # Ctrl-C stopped its calibration: made now, the same way
                _finish(plan)
            self.names.append(arm)
        if not self.names:
            raise DataError(
                "training stopped before the first fit finished an epoch, so there is no model to keep"
            )

    def _message(self, task_id: str, kind: str, payload: Any) -> None:
        arm = task_id.partition("/")[0]
        if kind == "stage":
            self.began.setdefault(arm, time.perf_counter())
            payload = f"{arm}: {payload}"
        self.display.worker_message(task_id, kind, payload)

    def _result(self, task_id: str, outcome: Any) -> list[Task] | None:
        arm, _, task = task_id.partition("/")
        if task.startswith("size"):
            self.sizes[arm][int(task.removeprefix("size"))] = outcome
            return None
        plan = self.plans[arm]
        _record(plan, task, outcome)
        self.ended[arm] = time.perf_counter()
        if task != "final" or plan.finished is None:
            return None
        workdir = self.tmp / f".sizes-{arm}"
        return [
            (f"{arm}/size{i}", _size_part, (part, plan.tmp, workdir), {})
            for i, part in enumerate(self.size_parts)
        ]

    def test_probabilities(self, arm: str) -> np.ndarray:
        """The calibrated final model's probabilities on the test split (the run's ``metrics.json``'s)."""
        finished = self.plans[arm].finished
        if finished is None:
            raise RuntimeError(f"the {arm} arm has no final model")
        return finished.p_test

    def write_runs(self) -> dict[str, dict[str, Any]]:
        """Write each arm's run; each arm's summary for the comparison (with its sizes, if all measured:
        Ctrl-C may have stopped them)."""
        summaries = {}
        for arm in self.names:
            shutil.rmtree(self.tmp / f".sizes-{arm}", ignore_errors=True)
            began = self.began.get(arm, self.ended.get(arm, 0.0))
            seconds = self.ended.get(arm, began) - began
            summaries[arm] = _arm_summary(
                _write_run(self.plans[arm], self.stopped, seconds, self.display).metrics
            )
            if self.size_parts and len(self.sizes[arm]) == len(self.size_parts):
                summaries[arm]["exported"] = _merged(part for _, part in sorted(self.sizes[arm].items()))
        return summaries


def _compare(
    data: str | Path,
    out: Path,
    configs: dict[str, TrainConfig],
    overwrite: bool,
    progress: bool,
    artifact_sizes: SizeFunction | Sequence[SizeFunction] | None,
    workers: FitWorkers | None,
) -> CompareResult:
    dataset = _load(data, load_cap([c.image_size for c in configs.values()]), progress)
    any_config = next(iter(configs.values()))
    arms: dict[str, dict[str, Any]] = {}
    arm_plots: dict[str, str] = {}
    if artifact_sizes is None:
        size_parts: list[SizeFunction] = []
    elif callable(artifact_sizes):
        size_parts = [artifact_sizes]
    else:
        size_parts = list(artifact_sizes)
    splits, _ = resolve_splits(dataset, seed=any_config.seed)
    with atomic_dir(out, overwrite) as tmp, TrainingProgress(enabled=progress) as display:
        if workers is None:  # one arm after the other, in this process
            for arm, config in configs.items():
                result = train_run(
                    dataset, tmp / arm, config, name=f"{dataset.name}-{arm}", progress=display, workers=None
                )
                arms[arm] = _arm_summary(result.metrics)
                if size_parts:
                    display.stage(f"{arm}: exported sizes")
                    workdir = tmp / f".sizes-{arm}"
                    arms[arm]["exported"] = _merged(part(tmp / arm, workdir) for part in size_parts)
                    shutil.rmtree(workdir, ignore_errors=True)
                if result.metrics["interrupted"]:
                    break
            names = list(arms)
        else:
            trained = _SideBySide(dataset, tmp, configs, display, size_parts, workers)
            names = trained.names
            arms.update(trained.write_runs())
        test_probabilities = {}
        for arm in names:
            run_dir = tmp / arm
            spec = ModelSpec.load(run_dir)
            arms[arm]["architecture"] = configs[arm].arch
            arms[arm]["image_size"] = spec.input_size[0]
            x, y = splits.arrays("test", spec.input_size, spec.color_mode)
            if workers is None:
                test_probabilities[arm] = _predict(load_model(run_dir), x)
            else:  # the saved model's, as its run computed them (the same splits)
                test_probabilities[arm] = trained.test_probabilities(arm)
            arm_plots[f"{arm}_roc_pr"] = plots.roc_pr_png(y, test_probabilities[arm], spec.labels)
            arm_plots[f"{arm}_training"] = plots.training_curves_png(_read_history(run_dir / "history.csv"))
        differences = None
        if len(names) == 2:  # both arms finished: what the test split can and cannot tell apart
            first, second = names
            minority = spec.labels.index(arms[first]["test"]["minority_label"])
            paired = paired_bootstrap_differences(
                y, test_probabilities[first], test_probabilities[second], minority
            )
            differences = {
                "of": f"{second} - {first}",
                "split": "test",
                "images": len(y),
                "method": (
                    "paired percentile bootstrap over the test images, stratified by class, "
                    f"{BOOTSTRAP_RESAMPLES} resamples"
                ),
                "metrics": {
                    key: {"difference": d["difference"], "ci95": d["interval"]} for key, d in paired.items()
                },
            }
        rows = []
        look_alike_rows = (
            _LOOK_ALIKE_ROWS if any(_lookup(arms[a], "test.without_look_alikes") for a in names) else ()
        )
        after = [path for _, path in _COMPARE_ROWS].index("test.log_loss") + 1  # with the other test rows
        for label, path in (*_COMPARE_ROWS[:after], *look_alike_rows, *_COMPARE_ROWS[after:]):
            values = [_lookup(arms[a], path) for a in names]
            ratio = None
            if len(values) == 2 and all(isinstance(v, int | float) for v in values) and values[0]:
                ratio = float(values[1]) / float(values[0])
            rows.append({"metric": label, "key": path, "values": values, "ratio": ratio})
        rows += _proof_rows(arms, names)
        ratios = {r["key"]: r["ratio"] for r in rows if r["ratio"] is not None}
        comparison = {
            "dataset": {
                "name": dataset.name,
                "source": dataset.source,
                "fingerprint": dataset.fingerprint(),
                "attribution": dataset.attribution,
            },
            "settings": {
                "folds": any_config.folds,
                "epochs": any_config.epochs,
                "patience": any_config.patience,
                "edges": any_config.edges,
                "seed": any_config.seed,
                "quick": any_config.quick,
                "augment": any_config.augment,
                "class_weight": any_config.class_weight,
                "batch_size": any_config.batch_size,
                "weight_decay": any_config.weight_decay,
                # Each arm's own: the architectures' defaults differ (20 scratch, 5 transfer).
                "average_epochs": {arm: config.average_epochs for arm, config in configs.items()},
                "refit": any_config.refit,
                "jobs": any_config.jobs,
            },
            "arms": arms,
            "ratios": ratios,
            "rows": rows,
            "created_at": _now(),
            "visioncascade_version": __version__,
        }
        if differences is not None:
            comparison["differences"] = differences
        (tmp / "comparison.json").write_text(json.dumps(comparison, indent=2) + "\n", encoding="utf-8")
        (tmp / "comparison.html").write_text(
            render_comparison_report(comparison, arm_plots), encoding="utf-8"
        )
    return CompareResult(out_dir=out, comparison=comparison)


def _proof_rows(arms: dict[str, dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """A row per proven artifact: each arm's max |Δp| against Keras, whether it passed, and the limit.

    No ratio: how far two artifacts are from their own Keras models is not a quantity to divide.
    """
    rows = []
    for artifact, key in _PROOF_ROWS:
        proofs = [_lookup(arms[a], f"exported.{key}_proof") for a in names]
        if not any(proofs):
            continue
        rows.append(
            {
                "metric": f"{artifact} max |Δp| vs Keras",
                "artifact": artifact,
                "key": f"exported.{key}_proof.max_abs_diff",
                "values": [p["max_abs_diff"] if p else None for p in proofs],
                "ratio": None,
                "passed": [p["passed"] if p else None for p in proofs],
                "limit": next(p["limit"] for p in proofs if p),
            }
        )
    return rows


def _merged(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


def _read_history(path: Path) -> dict[str, dict[str, list[float]]]:
    histories: dict[str, dict[str, list[float]]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            hist = histories.setdefault(row["stage"], {})
            for key, value in row.items():
                if key in ("stage", "epoch") or value in ("", None):
                    continue
                hist.setdefault(key, []).append(float(value))
    return histories
