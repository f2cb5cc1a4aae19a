"""Keras callbacks: best-validation-log-loss tracking with checkpoints, and a Rich progress display."""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import numpy as np

from visioncascade.models.io import save_model

__all__ = ["BestValLoss", "RichEpochProgress", "epoch_info"]


class BestValLoss(keras.callbacks.Callback):
    """Early stopping on ``val_loss`` (the validation log loss) that always keeps the best weights.

    Keeps the best weights in memory and writes them as a checkpoint of the best model at ``checkpoint``
    (if given) — at most every ``checkpoint_every_s`` seconds while training (saving costs more than a small
    model's epoch) and always when training ends or is interrupted. Stops after ``patience`` epochs without
    improvement; :meth:`restore` puts the best weights back — also after Ctrl-C, when Keras skips
    ``on_train_end``.
    """

    def __init__(
        self,
        patience: int,
        checkpoint: Path | None = None,
        min_delta: float = 1e-4,
        checkpoint_every_s: float = 10.0,
    ):
        super().__init__()
        self.patience = patience
        self.checkpoint = checkpoint
        self.min_delta = min_delta
        self.checkpoint_every_s = checkpoint_every_s
        self.best = math.inf
        self.best_epoch = -1
        self.best_weights: list[np.ndarray] | None = None
        self.wait = 0
        self._dirty = False
        self._saved_at = -math.inf

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = float((logs or {}).get("val_loss", math.nan))
        if math.isfinite(value) and value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self.best_weights = self.model.get_weights()
            self._dirty = True
            if time.monotonic() - self._saved_at >= self.checkpoint_every_s:
                self.save_checkpoint()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True

    def save_checkpoint(self) -> None:
        """Write the best weights so far to ``checkpoint`` (when there is something new to write)."""
        if self.checkpoint is None or not self._dirty or self.best_weights is None:
            return
        current = self.model.get_weights()
        self.model.set_weights(self.best_weights)
        save_model(self.model, self.checkpoint)
        self.model.set_weights(current)
        self._dirty = False
        self._saved_at = time.monotonic()

    def restore(self) -> None:
        """Load the best weights seen into the model and write the final checkpoint."""
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            self.save_checkpoint()


def epoch_info(logs: dict) -> str:
    """``"loss 0.412 val 0.388"``; ``"loss 0.412 (weight averaging)"`` for an epoch without validation."""
    loss = float(logs.get("loss", math.nan))
    if "val_loss" not in logs:
        return f"loss {loss:.3f} (weight averaging)"
    return f"loss {loss:.3f} val {float(logs['val_loss']):.3f}"


class RichEpochProgress(keras.callbacks.Callback):
    """Advances a Rich progress task once per epoch and shows the latest losses."""

    def __init__(self, progress, task_id, epochs: int):
        super().__init__()
        self.progress = progress
        self.task_id = task_id
        self.epochs = epochs

    def on_train_begin(self, logs=None):
        self.done = 0
        self.progress.reset(self.task_id, total=(self.params or {}).get("epochs") or self.epochs)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.done += 1
        self.progress.update(self.task_id, advance=1, info=epoch_info(logs))

    def on_train_end(self, logs=None):
        self.progress.update(self.task_id, total=self.done, completed=self.done)
