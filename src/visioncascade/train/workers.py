"""Independent fits side by side in worker processes (``--jobs``): the folds and the final model.

A small CNN cannot keep two CPU cores busy with one fit: its operations are too small to split well
between threads. Two fits in two processes with one thread each trained 1.7x (scratch, 28 px) and 1.4x
(MobileNetV2, 96 px) the images per second of one fit using both cores (BENCHMARKS.md). Cross-validation
is made of such independent fits, so :class:`FitWorkers` runs them in a pool of ``jobs`` processes
(started with ``spawn``: TensorFlow does not survive ``fork``), each with ``cores // jobs`` threads.

Task functions run in a worker are called with an extra ``stage`` keyword: ``stage(label)`` names the
fit about to start and returns the Keras callbacks to give that fit. The callbacks report every epoch to
the parent (which draws the progress display) and turn the parent's Ctrl-C into a ``KeyboardInterrupt``
inside the fit, so a worker stops exactly as an in-process fit does: best weights kept, result marked
``interrupted``. Workers ignore SIGINT themselves; a second Ctrl-C, or an error in any task, ends them.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import contextlib
import ctypes
import multiprocessing as mp
import os
import queue
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from visioncascade.errors import ConfigError, VisionCascadeError

__all__ = ["FitWorkers", "Task", "WorkerMessage", "auto_jobs", "usable_cores"]

#: ``(task id, function, args, kwargs)``: :meth:`FitWorkers.run` calls ``function(*args, stage=..., **kwargs)``.
Task = tuple[str, Callable[..., Any], tuple, dict[str, Any]]

#: ``(task id, kind, payload)``: kind ``"stage"`` (payload: label), ``"begin"`` (epochs),
#: ``"epoch"`` (the epoch's logs), ``"end"`` (None, the fit ended) or ``"done"`` (None, the task ended).
WorkerMessage = tuple[str, str, Any]

# Set in each worker process by _init_worker.
_MESSAGES: Any = None
_STOP: Any = None
_TASK: str | None = None
_PARENT: int | None = None


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def auto_jobs(tasks: int) -> int:
    """The default ``--jobs``: one worker per usable core, no more than there are independent fits."""
    return max(1, min(usable_cores(), tasks))


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` set in ``os.environ`` inside the block (for the processes it starts), then undone:
    each key gets back the value it had, or is removed if it had none."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _init_worker(messages: Any, stop: Any, threads: int, parent: int) -> None:
    global _MESSAGES, _STOP, _PARENT
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    _MESSAGES, _STOP, _PARENT = messages, stop, parent
    _die_with_parent()
    from visioncascade._tf import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    # Registered after TensorFlow's own exit handlers, so it runs before them (last in, first out).
    atexit.register(_leave_now)


def _leave_now() -> None:
    """End the worker without the interpreter's teardown: with TensorFlow loaded that takes a second
    (measured: 1.0 s of the CV job's end, waiting in the parent's pool shutdown), and a worker has
    nothing left to save: the pool ends it only after its last task, whose files and messages are
    written by then: multiprocessing has joined the message queue's feeder thread and flushed stdout
    and stderr before exit handlers run. Its exit status is 0."""
    os._exit(0)


def _die_with_parent() -> None:
    """A worker must not outlive a parent killed without cleanup (SIGTERM, SIGKILL): it would train on."""
    if sys.platform.startswith("linux"):
        # PR_SET_PDEATHSIG = 1: the kernel sends SIGTERM when the parent goes.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    _check_parent()


def _check_parent() -> None:
    if os.getppid() != _PARENT:  # re-parented: the parent is gone (also where prctl does not exist)
        os._exit(1)


def _send(kind: str, payload: Any = None) -> None:
    _MESSAGES.put((_TASK, kind, payload))


def _stage(label: str) -> list[Any]:
    """The ``stage`` function given to a task in a worker."""
    _send("stage", label)
    return [_worker_callback()]


def _worker_callback() -> Any:
    import keras

    class _Report(keras.callbacks.Callback):
        """Reports epochs to the parent; raises ``KeyboardInterrupt`` when the parent asks to stop.

        ``async_safe``: Keras may run the batch hook in its callback thread, as it does without one (a
        synchronous batch hook would wait for every step's logs); the ``KeyboardInterrupt`` then surfaces
        in the fit one batch later.
        """

        async_safe = True

        def on_train_begin(self, logs: dict | None = None) -> None:
            _send("begin", int((self.params or {}).get("epochs") or 0))

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if _STOP.is_set():
                raise KeyboardInterrupt

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            _check_parent()
            _send("epoch", {k: float(v) for k, v in (logs or {}).items()})
            if _STOP.is_set():
                raise KeyboardInterrupt

        def on_train_end(self, logs: dict | None = None) -> None:
            if not getattr(self, "ended", False):  # once: the fit's weight averaging ends it again
                self.ended = True
                _send("end")

    return _Report()


def _ready() -> None:
    """A no-op task that makes the pool start a worker."""


def _call(task: str, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    """Run one task in a worker; ``None`` without running it when the parent has already stopped."""
    global _TASK
    if _STOP.is_set():
        return None
    _TASK = task
    try:
        return fn(*args, stage=_stage, **kwargs)
    finally:
        _send("done")
        _TASK = None


class FitWorkers:
    """A pool of ``jobs`` worker processes for independent fits; use as a context manager.

    One pool can serve several runs (``compare`` trains both arms with one), so TensorFlow is imported
    once per worker.
    """

    def __init__(self, jobs: int):
        if jobs < 2:
            raise ConfigError(
                f"worker processes are for jobs >= 2, got jobs={jobs}; jobs=1 trains in-process"
            )
        self.jobs = jobs
        self.threads = max(1, usable_cores() // jobs)
        self._pool: cf.ProcessPoolExecutor | None = None

    def __enter__(self) -> FitWorkers:
        context = mp.get_context("spawn")
        self._messages = context.Queue()
        self._stop = context.Event()
        self._pool = cf.ProcessPoolExecutor(
            self.jobs,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self._messages, self._stop, self.threads, os.getpid()),
        )
        # The pool starts a process per submitted task while none is idle: start them all now, so that
        # they import TensorFlow while the caller prepares its data. NumPy's OpenBLAS starts a thread
        # per core in every process, read from the environment when NumPy loads (before the initializer
        # runs): each worker gets its share, as TensorFlow does. Two workers with two spinning BLAS
        # threads each slowed compare's exported-size proofs by 20–40 % (BENCHMARKS.md).
        blas = {} if "OPENBLAS_NUM_THREADS" in os.environ else {"OPENBLAS_NUM_THREADS": str(self.threads)}
        with _environment(blas):
            for _ in range(self.jobs):
                self._pool.submit(_ready)
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self._pool is None:
            return
        if exc_type is None:
            self._pool.shutdown(wait=True)
        else:  # an error or a second Ctrl-C: do not wait for fits nobody will read
            self._stop.set()
            processes = list((getattr(self._pool, "_processes", None) or {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            for process in processes:
                process.join(timeout=5)
        self._messages.close()
        self._pool = None

    def run(
        self,
        tasks: list[Task],
        on_message: Callable[[str, str, Any], None] | None = None,
        on_result: Callable[[str, Any], list[Task] | None] | None = None,
        priority: Callable[[str], Any] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Run ``(task id, function, args, kwargs)`` tasks, in list order as workers free up.

        Returns each task's result by id and whether Ctrl-C stopped the run: then running fits end as
        interrupted ones (best weights kept) and tasks not started are left out of the results. An
        exception in a task stops the others and is raised here. ``on_result(task id, result)`` is called
        here as each task's result arrives, while the other tasks go on in the workers (their messages
        wait until it returns); its exceptions are raised here too, and Ctrl-C inside it stops the run
        as anywhere else. ``on_result`` may return further tasks to run (e.g. exports of a model that a
        task trained): they join the tasks waiting for a worker. With ``priority``, waiting tasks start in
        the order of ``priority(task id)``, lowest first (ties in the order they came); without, in the
        order they came. The pool is handed at most one task more than it has workers, so that a worker
        that finishes while ``on_result`` runs finds its next task; the order of the others can still
        change until then.
        """
        pool = self._pool
        if pool is None:
            raise RuntimeError("FitWorkers.run outside its with-block")
        self._stop.clear()
        waiting: list[Task] = []

        def wait_for_workers(more: list[Task]) -> None:
            waiting.extend(more)
            if priority is not None:
                waiting.sort(key=lambda task: priority(task[0]))  # stable: ties keep their order

        wait_for_workers(tasks)
        futures: dict[cf.Future, str] = {}
        pending: set[cf.Future] = set()

        def top_up() -> None:
            while waiting and len(pending) <= self.jobs:
                task, fn, args, kwargs = waiting.pop(0)
                future = pool.submit(_call, task, fn, args, kwargs)
                futures[future] = task
                pending.add(future)

        top_up()
        interrupted = False
        while pending:
            try:
                done, _ = cf.wait(pending, timeout=0.1, return_when=cf.FIRST_COMPLETED)
                pending.difference_update(done)
                if not interrupted:
                    top_up()  # before on_result below, which may take seconds
                self._drain(on_message)
                for future in done:
                    if future.cancelled():
                        continue
                    if future.exception() is not None:
                        self._stop.set()
                        self._raise(future)
                    if on_result is not None and future.result() is not None:
                        more = on_result(futures[future], future.result())
                        if more and not interrupted:
                            wait_for_workers(more)
                            top_up()
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                self._stop.set()
                waiting.clear()
                for future in pending:
                    future.cancel()
                pending.difference_update({f for f in pending if f.cancelled()})
        self._drain(on_message)
        results = {
            task: future.result()
            for future, task in futures.items()
            if not future.cancelled() and future.result() is not None
        }
        return results, interrupted

    def _raise(self, future: cf.Future) -> None:
        error = future.exception()
        if not isinstance(error, BrokenProcessPool):
            raise error  # type: ignore[misc]  # the task's own error, e.g. a ModelError
        codes = [p.exitcode for p in (getattr(self._pool, "_processes", None) or {}).values()]
        if -signal.SIGKILL in codes:
            cause = "was killed (out of memory?)"
        else:  # the pool may have forgotten its processes by now: name both likely causes
            cause = (
                "ended unexpectedly: it was killed (out of memory?) or failed while starting. Worker "
                "processes import the main module of the program: a script that trains must do so "
                'under `if __name__ == "__main__":`'
            )
        raise VisionCascadeError(
            f"a training worker process {cause}; or train in this process with --jobs 1 (jobs=1)"
        ) from error

    def _drain(self, on_message: Callable[[str, str, Any], None] | None) -> None:
        while True:
            try:
                task, kind, payload = self._messages.get_nowait()
            except queue.Empty:
                return
            if on_message is not None:
                on_message(task, kind, payload)
