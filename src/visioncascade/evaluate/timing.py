"""Single-image CPU latency of a Keras model (a compiled ``tf.function``, batch 1)."""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

__all__ = ["measure_latency"]


def measure_latency(model: keras.Model, runs: int = 50, warmup: int = 5) -> dict[str, float]:
    """p50/p99 milliseconds of one forward pass on one random image, through a traced ``tf.function``."""
    shape = (1, *model.input_shape[1:])
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32))
    forward = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
    for _ in range(warmup):
        forward(x).numpy()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        forward(x).numpy()
        times.append((time.perf_counter() - start) * 1000.0)
    return {
        "latency_ms_p50": float(np.percentile(times, 50)),
        "latency_ms_p99": float(np.percentile(times, 99)),
    }
