"""A Rich progress display for stages (final model, folds) and epochs; silent when disabled."""

from __future__ import annotations

from typing import Any

import keras
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from visioncascade.train.callbacks import RichEpochProgress, epoch_info

__all__ = ["TrainingProgress"]


class TrainingProgress:
    """Shows one bar for stages and one for the epochs of the current stage.

    Use as a context manager; ``enabled=False`` makes every method a no-op (``--quiet``).
    """

    def __init__(self, enabled: bool = True, console: Console | None = None):
        self.enabled = enabled
        self._progress: Progress | None = None
        self._console = console or Console(stderr=True)
        self._stage_task = None
        self._epoch_task = None
        self._worker_tasks: dict[str, Any] = {}
        self._read_task = None

    def __enter__(self) -> TrainingProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                console=self._console,
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def reading(self, done: int, total: int) -> None:
        """Show how many of a folder's ``total`` image files are read (``load_dataset``'s ``progress``)."""
        if self._progress is None:
            return
        if self._read_task is None:
            self._read_task = self._progress.add_task("reading images", total=total, info="")
        self._progress.update(self._read_task, completed=done)

    def stages(self, title: str, total: int) -> None:
        """Start (or restart) the stage bar."""
        if self._progress is None:
            return
        if self._stage_task is None:
            self._stage_task = self._progress.add_task(title, total=total, info="")
        else:
            self._progress.reset(self._stage_task, total=total, description=title, info="")

    def stage(self, description: str) -> None:
        """Name the stage now running."""
        if self._progress is not None and self._stage_task is not None:
            self._progress.update(self._stage_task, info=description)

    def stage_done(self) -> None:
        """Advance the stage bar."""
        if self._progress is not None and self._stage_task is not None:
            self._progress.advance(self._stage_task)

    def epoch_callback(self, epochs: int) -> list[keras.callbacks.Callback]:
        """Callbacks that drive the epoch bar for a fit of at most ``epochs`` epochs."""
        if self._progress is None:
            return []
        if self._epoch_task is None:
            self._epoch_task = self._progress.add_task("epochs", total=epochs, info="")
        return [RichEpochProgress(self._progress, self._epoch_task, epochs)]

    def fit_callbacks(
        self, label: str, epochs: int, extra: list | None = None
    ) -> list[keras.callbacks.Callback]:
        """For a fit in this process: name the stage, drive the epoch bar, advance the stage bar at its end."""
        self.stage(label)
        return [*self.epoch_callback(epochs), _StageDone(self), *(extra or [])]

    def worker_message(self, task: str, kind: str, payload: Any) -> None:
        """Show what a worker process reported (:data:`visioncascade.train.workers.WorkerMessage`).

        Each running worker task gets a bar of its own, named after its current stage.
        """
        progress = self._progress
        if progress is None:
            return
        bar = self._worker_tasks.get(task)
        if kind == "stage":
            if bar is None:
                self._worker_tasks[task] = progress.add_task(str(payload), total=None, info="")
            else:
                progress.update(bar, description=str(payload), info="")
        elif bar is None:
            return
        elif kind == "begin":
            progress.reset(bar, total=payload or None, info="")
        elif kind == "epoch":
            progress.update(bar, advance=1, info=epoch_info(payload))
        elif kind == "end":
            self.stage_done()
        elif kind == "done":
            progress.remove_task(self._worker_tasks.pop(task))

    def log(self, message: str) -> None:
        """Print a line (Rich markup) above the bars."""
        if self.enabled:
            self._console.print(message)

    def note(self, text: str) -> None:
        """Print ``note: text`` above the bars; ``text`` is shown as it is (``[...]`` in it is no markup)."""
        self.log(f"[yellow]note:[/] {escape(text)}")


class _StageDone(keras.callbacks.Callback):
    """Advances the stage bar when the stage's first fit ends (its weight averaging, if any, follows)."""

    def __init__(self, display: TrainingProgress):
        super().__init__()
        self.display = display
        self.done = False

    def on_train_end(self, logs: dict | None = None) -> None:
        if not self.done:
            self.done = True
            self.display.stage_done()
