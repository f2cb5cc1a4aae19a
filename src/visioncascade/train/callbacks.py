"""Keras callbacks: best-validation-log-loss tracking with checkpoints, and a Rich progress display."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np

from visioncascade.models.io import save_model

__all__ = ["BestValLoss", "RichEpochProgress"]


class BestValLoss(keras.callbacks.Callback):
    """Early stopping on ``val_loss`` (the validation log loss) that always keeps the best weights.

    Saves a checkpoint of the best model at ``checkpoint`` (if given) whenever validation log loss improves,
    stops after ``patience`` epochs without improvement, and :meth:`restore` puts the best weights back —
    also after Ctrl-C, when Keras skips ``on_train_end``.
    """

    def __init__(self, patience: int, checkpoint: Path | None = None, min_delta: float = 1e-4):
        super().__init__()
        self.patience = patience
        self.checkpoint = checkpoint
        self.min_delta = min_delta
        self.best = math.inf
        self.best_epoch = -1
        self.best_weights: list[np.ndarray] | None = None
        self.wait = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = float((logs or {}).get("val_loss", math.nan))
        if math.isfinite(value) and value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self.best_weights = self.model.get_weights()
            if self.checkpoint is not None:
                save_model(self.model, self.checkpoint)
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True

    def restore(self) -> None:
        """Load the best weights seen into the model (no-op before the first finished epoch)."""
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class RichEpochProgress(keras.callbacks.Callback):
    """Advances a Rich progress task once per epoch and shows the latest losses."""

    def __init__(self, progress, task_id, epochs: int):
        super().__init__()
        self.progress = progress
        self.task_id = task_id
        self.epochs = epochs

    def on_train_begin(self, logs=None):
        self.done = 0
        self.progress.reset(self.task_id, total=self.epochs)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.done += 1
        self.progress.update(
            self.task_id,
            advance=1,
            info=f"loss {logs.get('loss', float('nan')):.3f} val {logs.get('val_loss', float('nan')):.3f}",
        )

    def on_train_end(self, logs=None):
        self.progress.update(self.task_id, total=self.done, completed=self.done)
