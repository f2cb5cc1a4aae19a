"""SIGTERM handled as Ctrl-C by the commands that must end cleanly (``watch``, ``export``)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["sigterm_as_interrupt"]


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM (``kill``, ``timeout``, ``docker stop``, systemd) raises
    ``KeyboardInterrupt`` as Ctrl-C does, so the block's own clean-up runs: ``watch`` finishes its video and
    sends the queued events, ``export`` removes its half-written folder. A second SIGTERM meanwhile is
    ignored (the clean-up is let finish); the previous handler is back after the block. Off the main
    thread, where Python cannot set handlers, the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
