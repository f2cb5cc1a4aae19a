"""Importing TensorFlow without its start-up chatter (C++ log lines written to fd 2 before logging is set up)."""

from __future__ import annotations

import os
import sys

__all__ = ["quiet_tensorflow"]


def quiet_tensorflow() -> None:
    """Import TensorFlow with its start-up log lines silenced (no-op once it is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    tf.get_logger().setLevel("ERROR")
