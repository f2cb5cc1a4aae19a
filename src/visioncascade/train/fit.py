"""Fitting one model: compile, tf.data pipelines, early stopping on validation log loss, Ctrl-C."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from visioncascade.data.pipeline import Augmentation, make_tf_dataset
from visioncascade.train.callbacks import BestValLoss

__all__ = ["FitResult", "class_weights", "compile_model", "fit_model"]


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


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Balanced class weights ``n / (k * count_c)`` (each class contributes equally to the loss)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    counts[counts == 0] = np.inf
    weights = len(labels) / (num_classes * counts)
    return {i: float(w) for i, w in enumerate(weights)}


def compile_model(model: keras.Model, learning_rate: float) -> None:
    """Compile with Adam, sparse categorical cross-entropy (= log loss) and accuracy.

    XLA is off on purpose: on CPU it made MobileNetV2 training 5x slower and the scratch CNN no faster
    (see BENCHMARKS.md), and it costs seconds of compilation per model.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=False,
        steps_per_execution=4,
    )


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
) -> FitResult:
    """Train ``model`` on ``train`` with early stopping on ``val`` log loss; the best weights end up in it.

    Ctrl-C (``KeyboardInterrupt``) stops training cleanly: the best weights so far are restored and the
    result says ``interrupted=True``.
    """
    compile_model(model, learning_rate)
    train_ds = make_tf_dataset(
        *train, batch_size=batch_size, training=True, augmentation=augmentation, seed=seed
    )
    val_ds = make_tf_dataset(*val, batch_size=max(batch_size, 128), training=False)
    best = BestValLoss(patience=patience, checkpoint=checkpoint)
    # Halve the learning rate when validation log loss stalls, well before early stopping gives up.
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.5, patience=max(2, patience // 3), min_lr=learning_rate / 64, verbose=0
    )
    history = keras.callbacks.History()
    interrupted = False
    start = time.perf_counter()
    try:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            class_weight=class_weight,
            shuffle=False,  # the tf.data pipeline reshuffles every epoch itself
            callbacks=[best, plateau, history, *(callbacks or [])],
            verbose=0,
        )
    except KeyboardInterrupt:
        interrupted = True
    seconds = time.perf_counter() - start
    best.restore()
    hist = {key: [float(v) for v in values] for key, values in history.history.items()}
    epochs_run = len(hist.get("loss", []))
    return FitResult(
        history=hist,
        best_epoch=best.best_epoch,
        best_val_loss=float(best.best),
        epochs_run=epochs_run,
        seconds=seconds,
        interrupted=interrupted,
        images_per_second=(epochs_run * len(train[0]) / seconds) if seconds > 0 else 0.0,
    )
