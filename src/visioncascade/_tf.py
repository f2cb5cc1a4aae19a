"""Importing TensorFlow without its start-up chatter (C++ log lines written to fd 2 before logging is set up)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["quiet_tensorflow", "silenced_stderr"]


@contextlib.contextmanager
def silenced_stderr() -> Iterator[None]:
    """File descriptor 2 goes to the null device inside the block: C++ log lines (TensorFlow, LiteRT's
    "Created TensorFlow Lite XNNPACK delegate") that Python's own logging settings cannot reach.
    Python exceptions raised inside still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_tensorflow() -> None:
    """Import TensorFlow with its start-up log lines silenced (no-op once it is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    with silenced_stderr():
        import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
