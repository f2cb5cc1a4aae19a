"""tf.data input pipelines with fused, vectorised augmentation.

Augmentation lives here, never in the model: exported models stay free of random layers. The pipeline
draws each batch's random seed and either augments the batch itself or hands the seed on for the
training step to augment (``augment_in_step``, what training uses: it is cheaper there). Geometric
augmentation (flip, rotation, shift, zoom) is composed into one projective transform per image and applied
in a single resampling pass over the batch; photometric augmentation (brightness, contrast) follows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import tensorflow as tf

from visioncascade.errors import ConfigError

__all__ = ["Augmentation", "augment_batch", "make_tf_dataset"]


@dataclass(frozen=True)
class Augmentation:
    """Random augmentation applied to training batches.

    Attributes:
        horizontal_flip: Flip left-right with probability 0.5.
        vertical_flip: Flip top-bottom with probability 0.5.
        rotation_degrees: Maximum absolute rotation.
        shift: Maximum shift as a fraction of width/height.
        zoom: Maximum zoom in/out as a fraction (0.1 = 0.9x..1.1x).
        brightness: Maximum brightness change as a fraction of 255.
        contrast: Maximum contrast change as a fraction (0.2 = 0.8x..1.2x around the image mean).
    """

    horizontal_flip: bool = True
    vertical_flip: bool = False
    rotation_degrees: float = 10.0
    shift: float = 0.08
    zoom: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.15

    def __post_init__(self) -> None:
        for name in ("rotation_degrees", "shift", "zoom", "brightness", "contrast"):
            value = getattr(self, name)
            if not 0 <= value < (180 if name == "rotation_degrees" else 1):
                raise ConfigError(
                    f"augmentation {name} must be in [0, {180 if name == 'rotation_degrees' else 1}), "
                    f"got {value}"
                )

    def to_dict(self) -> dict:
        """The settings as a plain dict."""
        return asdict(self)


def augment_batch(images: tf.Tensor, aug: Augmentation, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Augment a float32 batch ``(N, H, W, C)`` of 0..255 pixels; returns the same shape and range.

    ``seed`` (two integers) makes the result a pure function of the inputs (stateless random numbers);
    without it a random seed is drawn.
    """
    if seed is None:
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
    counter = iter(range(100))

    def _uniform(n: tf.Tensor, low: float, high: float) -> tf.Tensor:
        sub = tf.random.experimental.stateless_fold_in(seed, next(counter))
        return tf.random.stateless_uniform([n], sub, low, high, dtype=tf.float32)

    shape = tf.shape(images)
    n = shape[0]
    height = tf.cast(shape[1], tf.float32)
    width = tf.cast(shape[2], tf.float32)
    theta = _uniform(n, -1.0, 1.0) * (aug.rotation_degrees * math.pi / 180.0)
    scale = tf.exp(_uniform(n, math.log(1.0 - aug.zoom), math.log(1.0 + aug.zoom)))
    tx = _uniform(n, -aug.shift, aug.shift) * width
    ty = _uniform(n, -aug.shift, aug.shift) * height
    ones = tf.ones([n], tf.float32)
    fx = tf.where(_uniform(n, 0.0, 1.0) < 0.5, -ones, ones) if aug.horizontal_flip else ones
    fy = tf.where(_uniform(n, 0.0, 1.0) < 0.5, -ones, ones) if aug.vertical_flip else ones
    # Output -> input mapping about the image centre: p_in = c + R(theta) / scale * F * (p_out - c) + t.
    cos, sin = tf.cos(theta) / scale, tf.sin(theta) / scale
    m00, m01, m10, m11 = cos * fx, -sin * fy, sin * fx, cos * fy
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    a2 = cx - m00 * cx - m01 * cy + tx
    b2 = cy - m10 * cx - m11 * cy + ty
    zeros = tf.zeros([n], tf.float32)
    transforms = tf.stack([m00, m01, a2, m10, m11, b2, zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=shape[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    if aug.contrast > 0:
        factor = tf.reshape(_uniform(n, 1.0 - aug.contrast, 1.0 + aug.contrast), [-1, 1, 1, 1])
        mean = tf.reduce_mean(out, axis=[1, 2, 3], keepdims=True)
        out = (out - mean) * factor + mean
    if aug.brightness > 0:
        out = out + tf.reshape(_uniform(n, -aug.brightness, aug.brightness), [-1, 1, 1, 1]) * 255.0
    return tf.clip_by_value(out, 0.0, 255.0)


def make_tf_dataset(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    training: bool,
    augmentation: Augmentation | None = None,
    seed: int = 0,
    augment_in_step: bool = False,
) -> tf.data.Dataset:
    """A batched, prefetched ``tf.data.Dataset`` of ``(float32 images 0..255, int labels)``.

    Training datasets are reshuffled every epoch (seeded) and augmented when ``augmentation`` is given.

    With ``augment_in_step`` the batches come unaugmented as ``((images, seeds), labels)``, and whoever
    consumes them augments: ``augment_batch(images, augmentation, seeds)`` gives exactly the batches this
    dataset gives without it. :func:`~visioncascade.train.fit.fit_model` does so inside its compiled
    training step, where one epoch of the scratch CNN costs a sixth less than with the augmentation in
    this pipeline's ``map`` on a CPU (BENCHMARKS.md) — still never inside the model.
    """
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    if augment_in_step and (not training or augmentation is None):
        raise ConfigError(
            "augment_in_step needs a training dataset with an augmentation, got "
            f"training={training}, augmentation={augmentation!r}"
        )
    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32)))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training and augmentation is not None:
        # One stateless seed per batch, different every epoch, the same for the same ``seed``.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds))

        def augment(batch, batch_seed):
            images, labels = batch
            return augment_batch(tf.cast(images, tf.float32), augmentation, batch_seed), labels

        def pass_seed(batch, batch_seed):
            images, labels = batch
            return (tf.cast(images, tf.float32), batch_seed), labels

        if augment_in_step:
            ds = ds.map(pass_seed)
        else:
            ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(lambda images, labels: (tf.cast(images, tf.float32), labels))
    # tf.data's autotuner has nothing to tune in a pipeline of in-memory arrays whose one costly step (the
    # augmentation) runs in the training step, but it does run: a model of the pipeline, optimised on a
    # background thread for every iterator (each epoch makes two). In a worker process given one core
    # that thread takes turns with the training: `compare --quick` took 9 % longer with it on 2 cores
    # (BENCHMARKS.md). The batches and their order are the same without it.
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)
