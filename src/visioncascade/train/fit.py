"""Fitting one model: compile, tf.data pipelines, early stopping on validation log loss, Ctrl-C."""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from visioncascade.data.pipeline import Augmentation, augment_batch, make_tf_dataset
from visioncascade.train.callbacks import BestValLoss

__all__ = [
    "FitResult",
    "class_weights",
    "clear_trainers",
    "compile_model",
    "fit_model",
    "recompute_batch_norm",
    "seed_everything",
]

# Compiled twins of the models this process has trained, by architecture (see ``_trainer_for``). A twin
# that is training is out of this cache until it is done, so another thread never gets the same one.
_TRAINERS: OrderedDict[str, keras.Model] = OrderedDict()
_LOCK = threading.Lock()
_MAX_TRAINERS = 2


@dataclass
class FitResult:
    """What one fit produced: per-epoch history, the best epoch (0-based) and whether Ctrl-C stopped it."""

    history: dict[str, list[float]]
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    seconds: float
    interrupted: bool = False
    images_per_second: float = 0.0
    #: Epochs whose weights were averaged after the fit (0: none, see ``fit_model``'s ``average_epochs``).
    averaged_epochs: int = 0
    #: Per-epoch ``loss``, ``accuracy`` and ``learning_rate`` of those epochs (no validation).
    averaging_history: dict[str, list[float]] = field(default_factory=dict)


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Balanced class weights ``n / (k * count_c)`` (each class contributes equally to the loss)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    counts[counts == 0] = np.inf
    weights = len(labels) / (num_classes * counts)
    return {i: float(w) for i, w in enumerate(weights)}


def compile_model(
    model: keras.Model, learning_rate: float, *, weight_decay: float = 0.0, build_optimizer: bool = True
) -> None:
    """Compile with Adam, sparse categorical cross-entropy (= log loss) and accuracy.

    ``weight_decay`` > 0 makes it AdamW: every step shrinks each weight by ``learning_rate *
    weight_decay`` of itself, decoupled from the gradient (Loshchilov & Hutter).

    XLA is off on purpose: on CPU it made MobileNetV2 training 5x slower and the scratch CNN no faster
    (see BENCHMARKS.md), and it costs seconds of compilation per model. ``build_optimizer`` creates
    Adam's slot variables (twice the trainable weights) now; leave it on for a model that will train.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, weight_decay=weight_decay or None),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=False,
        steps_per_execution=4,
    )
    if build_optimizer:
        # Keras creates Adam's slots inside the first trace of the training step, and TensorFlow then
        # traces the whole step a second time without them (seconds per model on a CPU): create them now.
        model.optimizer.build(model.trainable_variables)


def seed_everything(seed: int) -> None:
    """What ``keras.utils.set_random_seed(seed)`` does, without clearing TensorFlow's kernel cache.

    Seeds Python's ``random``, NumPy, Keras (its global seed and seed generator) and TensorFlow's global
    seed, which tf.data's seeded shuffles and random streams build on. ``tf.random.set_seed`` also clears
    the eager kernel cache, so that stateful random kernels start over; the next call of every traced
    function then instantiates it again — for a reused twin (see :func:`fit_model`) 0.5 s of the scratch
    CNN's training step and 0.15 s of its validation step, on every fit after a process's first
    (measured on 2 cores). The fits here draw random numbers only through stateless ops (Keras's seed
    generators, the pipeline's seeded streams), whose state the cache does not hold, so the results are
    the same to the last digit (``tests/test_fit.py``). Falls back to Keras's function where the
    private Keras modules or TensorFlow's eager-context fields it uses are gone.
    """
    try:  # private modules and fields of Keras and TensorFlow (pinned versions): else Keras's way
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator
        from keras.src.utils import rng_utils
        from tensorflow.python.eager import context

        eager = context.context()
        if not (hasattr(eager, "_seed") and hasattr(eager, "_rng")):
            raise AttributeError("TensorFlow's eager context has no _seed/_rng")
    except (ImportError, AttributeError):
        keras.utils.set_random_seed(seed)
        return
    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
    eager._seed = seed  # what tf.random.set_seed sets, less the cache clear
    eager._rng = random.Random(seed)


def clear_trainers() -> None:
    """Forget the compiled twins :func:`fit_model` keeps (their traced functions and memory)."""
    with _LOCK:
        _TRAINERS.clear()


class _WeightSum(keras.callbacks.Callback):
    """Adds up the trainable weights at the end of every epoch (for their average)."""

    def __init__(self) -> None:
        super().__init__()
        self.sums: list[np.ndarray] | None = None
        self.count = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        weights = [
            np.asarray(keras.ops.convert_to_numpy(w), np.float64) for w in self.model.trainable_weights
        ]
        self.sums = weights if self.sums is None else [s + w for s, w in zip(self.sums, weights, strict=True)]
        self.count += 1


def _batch_norms(layer: keras.layers.Layer) -> list[keras.layers.BatchNormalization]:
    """The trainable BatchNormalization layers in ``layer``, nested models included."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [layer] if layer.trainable else []
    found = []
    for child in getattr(layer, "layers", []):
        found.extend(_batch_norms(child))
    return found


def recompute_batch_norm(model: keras.Model, images: np.ndarray, batch_size: int = 256) -> None:
    """Set every trainable BatchNormalization layer's moving mean and variance to ``images``' statistics.

    Weights averaged over epochs were never run with BatchNorm statistics of their own, so they get
    them here: one pass over ``images`` (un-augmented, as at inference) in training mode, each layer's
    moving statistics the mean of the batches' statistics. Frozen BatchNorm layers (``trainable=False``,
    e.g. the frozen part of a transfer model) run in inference mode and keep theirs.
    """
    layers = _batch_norms(model)
    if not layers or not len(images):
        return
    momenta = [layer.momentum for layer in layers]
    try:
        for layer in layers:
            layer.moving_mean.assign(keras.ops.zeros(layer.moving_mean.shape))
            layer.moving_variance.assign(keras.ops.ones(layer.moving_variance.shape))
        for i, start in enumerate(range(0, len(images), batch_size)):
            for layer in layers:
                layer.momentum = i / (i + 1)  # the running mean of the batches' statistics
            model(images[start : start + batch_size].astype(np.float32), training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum


def _copy_variables(source: keras.Model, target: keras.Model) -> None:
    """All state, seed generators included (``variables``, not ``weights``)."""
    for src, dst in zip(source.variables, target.variables, strict=True):
        dst.assign(src)


def _layout(model: keras.Model) -> tuple[list[str], list[tuple]]:
    """Weight names in order (seed generators are named per process) and every variable's shape."""
    return [weight.path for weight in model.weights], [tuple(v.shape) for v in model.variables]


def _augmenting_step(model: keras.Model, augmentation: Augmentation) -> Callable[[Any], Any]:
    """``model``'s own training step for ``((images, seeds), labels)`` batches: augments, then steps.

    The batches come from ``make_tf_dataset(..., augment_in_step=True)``, so the images are augmented as
    the pipeline would have done, inside the compiled step (a sixth of an epoch cheaper on a CPU).
    """
    step = type(model).train_step.__get__(model)

    def train_step(data: Any) -> Any:
        (images, seeds), *rest = data  # (x, y) or, with class weights, (x, y, sample_weight)
        return step((augment_batch(images, augmentation, seeds), *rest))

    return train_step


def _trainer_for(
    model: keras.Model,
    learning_rate: float,
    weight_decay: float = 0.0,
    augmentation: Augmentation | None = None,
) -> tuple[keras.Model, str | None]:
    """A compiled twin of ``model`` holding ``model``'s state and a fresh optimizer, and its cache key.

    Tracing a model's training and validation steps costs seconds per fit on a CPU, often more than
    the epochs of a small model (5 s of a 17 s fold, one thread). A cross-validated run trains the same
    architecture several times, so this process keeps one compiled twin per architecture (the
    model's config: layers, shapes, frozen layers; and the weight decay and augmentation settings,
    which the traced step holds as constants) and later fits of that architecture copy their initial
    state into it, reset its optimizer and reuse its traced functions. The result is the same to the
    last digit as compiling ``model`` itself; ``model`` gets the trained state back.

    The key is ``None`` when ``model`` trains itself: Keras cannot rebuild it from its config (e.g. an
    unregistered custom layer), or the rebuilt twin's weights do not line up with it.
    Hand the twin back with :func:`_release`.
    """
    config = model.get_config()
    augment = augmentation.to_dict() if augmentation is not None else None
    key = json.dumps([config, float(weight_decay), augment], sort_keys=True, default=repr)
    with _LOCK:
        trainer = _TRAINERS.pop(key, None)  # ours until released
    if trainer is not None:  # a fresh optimizer state
        for variable in trainer.optimizer.variables:
            variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
        trainer.optimizer.learning_rate = learning_rate
    else:  # the first fit of this architecture here, or its twin is training in another thread
        try:
            trainer = keras.Model.from_config(config)
        except Exception:
            return model, None
        if _layout(trainer) != _layout(model):  # state that the config does not describe
            return model, None
        compile_model(trainer, learning_rate, weight_decay=weight_decay)
        if augmentation is not None:  # part of the traced step, like the weight decay: in the key
            trainer.train_step = _augmenting_step(trainer, augmentation)
    try:
        _copy_variables(model, trainer)
    except BaseException:
        _release(trainer, key)
        raise
    return trainer, key


def _release(trainer: keras.Model, key: str | None) -> None:
    """The twin may serve the next fit of its architecture (the most recent ones are kept)."""
    if key is None:
        return
    with _LOCK:
        _TRAINERS[key] = trainer
        _TRAINERS.move_to_end(key)
        while len(_TRAINERS) > _MAX_TRAINERS:
            _TRAINERS.popitem(last=False)


def fit_model(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    patience: int,
    batch_size: int,
    learning_rate: float,
    augmentation: Augmentation | None,
    class_weight: dict[int, float] | None,
    seed: int,
    checkpoint: Path | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    learning_rates: Sequence[float] | None = None,
    weight_decay: float = 0.0,
    average_epochs: int = 0,
    restore_best: bool = True,
) -> FitResult:
    """Train ``model`` on ``train`` with early stopping on ``val`` log loss; the best weights end up in it.

    With ``restore_best=False`` the weights of the last epoch stay instead (for a fit whose ``val`` is part
    of ``train``, such as the refit on train + val: its lowest ``val`` loss would pick an epoch by
    training loss); ``best_epoch`` still says which epoch scored best on ``val``. Should the last epoch's
    training loss not be finite, the best weights are restored after all.

    With ``average_epochs`` > 0 the best weights are then trained ``average_epochs`` epochs more at the
    constant rate ``learning_rate`` (a fresh optimizer state, no early stopping) and ``model`` gets the
    average of the weights at the end of each of those epochs, with BatchNorm statistics recomputed on
    ``train`` (:func:`recompute_batch_norm`): stochastic weight averaging (Izmailov et al., 2018), one
    model with part of an ensemble's gain (BENCHMARKS.md). The checkpoint keeps the best weights before
    averaging. Ctrl-C while averaging keeps those best weights (``interrupted=True``). ``callbacks`` see
    both phases: the fit, then the averaging epochs (a second ``on_train_begin`` ... ``on_train_end``,
    without validation logs).

    Ctrl-C (``KeyboardInterrupt``) stops training cleanly: the best weights so far are restored and the
    result says ``interrupted=True``.

    The learning rate starts at ``learning_rate`` and is halved whenever validation log loss stalls for
    ``max(2, patience // 3)`` epochs (down to 1/64 of it). With ``learning_rates`` (one per epoch, e.g.
    another fit's ``history["learning_rate"]``; epochs past its end keep its last value) the fit follows
    that schedule instead. ``weight_decay`` > 0 trains with AdamW (see :func:`compile_model`).
    ``augmentation`` is applied to each training batch inside the compiled training step (the
    pipeline draws its random seeds: the same batches as augmenting in the pipeline, a sixth of an
    epoch cheaper), never by a layer of ``model``.

    The training itself runs on a compiled twin of ``model`` that this process keeps for later fits of
    the same architecture (its traced functions are reused; the numbers are the same as training
    ``model`` itself), so ``callbacks`` see the twin as ``self.model``: same layers and state, another
    object. :func:`clear_trainers` frees the twins.
    """
    trainer, key = _trainer_for(model, learning_rate, weight_decay, augmentation)
    # As before, the model comes back compiled; it needs Adam's slots only when it trains itself.
    compile_model(model, learning_rate, weight_decay=weight_decay, build_optimizer=trainer is model)
    own_step = trainer is model and augmentation is not None
    if own_step:  # for this fit only: the model must not keep a step that expects seeds
        model.train_step = _augmenting_step(model, augmentation)
    try:
        train_ds = make_tf_dataset(
            *train,
            batch_size=batch_size,
            training=True,
            augmentation=augmentation,
            seed=seed,
            augment_in_step=augmentation is not None,
        )
        val_ds = make_tf_dataset(*val, batch_size=max(batch_size, 128), training=False)
        best = BestValLoss(patience=patience, checkpoint=checkpoint)
        if learning_rates is None:
            # Halve the learning rate when validation log loss stalls, well before early stopping gives up.
            schedule: keras.callbacks.Callback = keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=0.5,
                patience=max(2, patience // 3),
                min_lr=learning_rate / 64,
                verbose=0,
            )
        else:
            rates = [float(rate) for rate in learning_rates] or [learning_rate]
            schedule = keras.callbacks.LearningRateScheduler(
                lambda epoch, _: rates[min(epoch, len(rates) - 1)]
            )
        history = keras.callbacks.History()
        interrupted = False
        start = time.perf_counter()
        try:
            trainer.fit(
                train_ds,
                validation_data=val_ds,
                epochs=epochs,
                class_weight=class_weight,
                shuffle=False,  # the tf.data pipeline reshuffles every epoch itself
                callbacks=[best, schedule, history, *(callbacks or [])],
                verbose=0,
            )
        except KeyboardInterrupt:
            interrupted = True
        last_loss = history.history.get("loss", [math.nan])[-1]
        if restore_best or interrupted or not math.isfinite(float(last_loss)):
            best.restore()
        averaging: dict[str, list[float]] = {}
        averaged = 0
        if average_epochs > 0 and not interrupted and best.best_epoch >= 0:  # from the weights kept above
            averaged, averaging, interrupted = _average_weights(
                trainer,
                train,
                batch_size,
                learning_rate,
                augmentation,
                class_weight,
                seed,
                average_epochs,
                callbacks or [],
            )
        seconds = time.perf_counter() - start
        _copy_variables(trainer, model)
        if averaged:
            recompute_batch_norm(model, train[0])
    finally:
        if own_step:
            del model.train_step
            model.train_function = None  # traced with the augmenting step
        _release(trainer, key)
    hist = {key: [float(v) for v in values] for key, values in history.history.items()}
    epochs_run = len(hist.get("loss", []))
    return FitResult(
        history=hist,
        best_epoch=best.best_epoch,
        best_val_loss=float(best.best),
        epochs_run=epochs_run,
        seconds=seconds,
        interrupted=interrupted,
        images_per_second=((epochs_run + averaged) * len(train[0]) / seconds) if seconds > 0 else 0.0,
        averaged_epochs=averaged,
        averaging_history=averaging,
    )


def _average_weights(
    trainer: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    batch_size: int,
    learning_rate: float,
    augmentation: Augmentation | None,
    class_weight: dict[int, float] | None,
    seed: int,
    epochs: int,
    callbacks: list[keras.callbacks.Callback],
) -> tuple[int, dict[str, list[float]], bool]:
    """``epochs`` more epochs of ``trainer`` at a constant rate; its trainable weights become their
    average over those epochs' ends. Returns (epochs averaged, their history, interrupted); after Ctrl-C
    the trainer gets back the weights it started with (BatchNorm statistics included) and nothing is
    averaged."""
    for variable in trainer.optimizer.variables:  # a fresh optimizer state, as for a new fit
        variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
    start_weights = trainer.get_weights()  # BatchNorm statistics too: training steps move them
    # Another seed than the fit's: not the fit's first epochs' shuffles and augmentations again.
    data = make_tf_dataset(
        *train,
        batch_size=batch_size,
        training=True,
        augmentation=augmentation,
        seed=seed + 104_729,
        augment_in_step=augmentation is not None,
    )
    total = _WeightSum()
    history = keras.callbacks.History()
    constant = keras.callbacks.LearningRateScheduler(lambda epoch, _: learning_rate)
    try:
        trainer.fit(
            data,
            epochs=epochs,
            class_weight=class_weight,
            shuffle=False,
            callbacks=[total, constant, history, *callbacks],
            verbose=0,
        )
    except KeyboardInterrupt:
        trainer.set_weights(start_weights)
        return 0, {}, True
    if total.sums is None:  # no epoch ran (nothing to average)
        return 0, {}, False
    for variable, summed in zip(trainer.trainable_weights, total.sums, strict=True):
        variable.assign((summed / total.count).astype(variable.dtype))
    return total.count, {k: [float(v) for v in values] for k, values in history.history.items()}, False
