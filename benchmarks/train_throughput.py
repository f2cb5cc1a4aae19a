"""Benchmark 2 of the training issue: visioncascade's fit vs a plain Keras baseline, same model, same run.

Baseline ("the straightforward way"): NumPy arrays + ``model.fit`` with Keras's default compile settings
(``jit_compile="auto"``) and the optimizer a run uses (AdamW, the default weight decay), augmentation as
Keras preprocessing layers in front of the model, class weights, validation data. visioncascade:
:func:`visioncascade.train.fit.fit_model` (tf.data pipeline that draws each batch's augmentation seed,
the fused augmentation applied inside the compiled training step, prefetch, XLA off,
steps_per_execution 4, best-val-loss checkpoint callback).
Both train the same architecture for the same number of epochs (no early stopping) on BreastMNIST.

Also measured, as an upper bound of *any* way of training the model: the "ceiling", the same model's
forward + backward + Adam update at batch 32 on one constant batch in a compiled ``tf.function`` loop — no
input pipeline, augmentation, validation, callbacks or per-step Python. A fit cannot run faster than that.

    python benchmarks/train_throughput.py [--repeats 3]

``--job cv`` measures the whole job of a training run instead of one fit: the final model and 5
stratified cross-validation folds (6 fits, fixed epochs, no refit, no weight averaging). Baseline: the
straightforward loop (NumPy arrays, one ``model.fit`` after the other with a best-val-loss
``ModelCheckpoint``, predictions of each held-out fold and of the test split). visioncascade:
``train_run`` end to end (calibration, metrics, report, latency included) with ``--jobs 1`` (one fit
after the other) and ``--jobs 2`` (worker processes).

    python benchmarks/train_throughput.py --job cv [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from visioncascade.data import load_dataset
from visioncascade.data.pipeline import Augmentation
from visioncascade.models import create_model
from visioncascade.train.config import DEFAULT_WEIGHT_DECAY
from visioncascade.train.fit import class_weights, fit_model

CASES = {"scratch": (28, 1e-3, 8), "mobilenet_v2": (96, 1e-4, 4)}  # image size, lr, epochs
CASES_CV = {"scratch": (28, 1e-3, 12), "mobilenet_v2": (96, 1e-4, 3)}


class _EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.times.append(now - self._t)
        self._t = now


def _baseline_model(arch, size, channels, lr):
    """The same model the straightforward way: augmentation as Keras layers in front, default compile."""
    aug = Augmentation()
    augment = keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal"),
            keras.layers.RandomRotation(aug.rotation_degrees / 360.0),
            keras.layers.RandomTranslation(aug.shift, aug.shift),
            keras.layers.RandomZoom(aug.zoom),
            keras.layers.RandomBrightness(aug.brightness, value_range=(0, 255)),
            keras.layers.RandomContrast(aug.contrast),
        ]
    )
    core = create_model(arch, input_shape=(size, size, channels), num_classes=2, edges=True)
    inputs = keras.Input(core.input_shape[1:])
    model = keras.Model(inputs, core(augment(inputs)))
    model.compile(  # the optimizer a run trains with by default: Adam with decoupled weight decay
        optimizer=keras.optimizers.AdamW(lr, weight_decay=DEFAULT_WEIGHT_DECAY),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _baseline(arch, size, lr, epochs, train, val, weights):
    model = _baseline_model(arch, size, train[0].shape[-1], lr)
    timer = _EpochTimer()
    start = time.perf_counter()
    model.fit(
        train[0].astype(np.float32),
        train[1],
        batch_size=32,
        epochs=epochs,
        validation_data=(val[0].astype(np.float32), val[1]),
        class_weight=weights,
        callbacks=[timer],
        verbose=0,
    )
    return time.perf_counter() - start, timer.times


def _ours(arch, size, lr, epochs, train, val, weights, tmp):
    model = create_model(arch, input_shape=(size, size, train[0].shape[-1]), num_classes=2, edges=True)
    timer = _EpochTimer()
    start = time.perf_counter()
    fit_model(
        model,
        train,
        val,
        epochs=epochs,
        patience=epochs + 1,
        batch_size=32,
        learning_rate=lr,
        weight_decay=DEFAULT_WEIGHT_DECAY,
        augmentation=Augmentation(),
        class_weight=weights,
        seed=0,
        checkpoint=tmp,
        callbacks=[timer],
    )
    return time.perf_counter() - start, timer.times


def _baseline_cv(arch, size, lr, epochs, ds, k, tmp):
    """The straightforward CV job: one ``model.fit`` per fold, then the final model on train."""
    from visioncascade.data import stratified_folds

    start = time.perf_counter()
    x, y = ds.arrays("train", (size, size), "grayscale")
    val = ds.arrays("val", (size, size), "grayscale")
    test = ds.arrays("test", (size, size), "grayscale")
    folds = stratified_folds(y, k, 0, ds.labels)
    jobs = [((x[tr], y[tr]), (x[va], y[va])) for tr, va in folds] + [((x, y), val)]
    for train, held_out in jobs:
        keras.backend.clear_session()
        model = _baseline_model(arch, size, 1, lr)
        model.fit(
            train[0].astype(np.float32),
            train[1],
            batch_size=32,
            epochs=epochs,
            validation_data=(held_out[0].astype(np.float32), held_out[1]),
            class_weight=class_weights(train[1], 2),
            callbacks=[keras.callbacks.ModelCheckpoint(tmp, monitor="val_loss", save_best_only=True)],
            verbose=0,
        )
        model = keras.saving.load_model(tmp)
        model.predict(held_out[0].astype(np.float32), verbose=0)
    model.predict(test[0].astype(np.float32), verbose=0)
    return time.perf_counter() - start


def _ours_cv(arch, size, lr, epochs, k, jobs, out):
    from visioncascade.experiment import train_run
    from visioncascade.train import TrainConfig

    config = TrainConfig.build(
        arch=arch,
        folds=k,
        epochs=epochs,
        patience=epochs + 1,
        image_size=size,
        color_mode="grayscale",
        learning_rate=lr,
        refit=False,
        average_epochs=0,  # the job both sides do: fixed epochs, no refit, no weight averaging
        jobs=jobs,
    )
    start = time.perf_counter()
    train_run("breastmnist", out, config, progress=False, overwrite=True)
    return time.perf_counter() - start


def _cv_job(arch, repeats):
    size, lr, epochs = CASES_CV[arch]
    ds = load_dataset("breastmnist")
    times = {"baseline": [], "jobs 1": [], "jobs 2": []}
    for repeat in range(repeats):
        times["baseline"].append(_baseline_cv(arch, size, lr, epochs, ds, 5, f"/tmp/bench-cv-{arch}.keras"))
        for jobs in (1, 2):
            times[f"jobs {jobs}"].append(_ours_cv(arch, size, lr, epochs, 5, jobs, f"/tmp/bench-cv-{arch}"))
            keras.backend.clear_session()
        row = {name: runs[-1] for name, runs in times.items()}
        print(  # the host's speed drifts between repeats: each repeat's ratios are a fair pair
            f"  repeat {repeat + 1}: "
            + ", ".join(f"{name} {t:.1f} s ({row['baseline'] / t:.2f}x)" for name, t in row.items()),
            flush=True,
        )
    print(f"\n{arch} {size}px, final model + 5 folds x {epochs} epochs, median of {repeats}:")
    base = statistics.median(times["baseline"])
    for name, runs in times.items():
        total = statistics.median(runs)
        rounded = [round(t, 1) for t in runs]
        print(f"  {name:<9} total {total:7.1f} s  {base / total:5.2f}x the baseline   runs {rounded}")


def _ceiling(arch, size, lr, channels, steps=100, rounds=3):
    import tensorflow as tf

    from visioncascade.train.fit import compile_model

    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 256, (32, size, size, channels)).astype(np.float32))
    y = tf.constant(rng.integers(0, 2, 32))
    model = create_model(arch, input_shape=(size, size, channels), num_classes=2, edges=True)
    compile_model(model, lr, weight_decay=DEFAULT_WEIGHT_DECAY)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def run(n):
        loss = tf.constant(0.0)
        for _ in tf.range(n):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    run(tf.constant(3))  # trace and warm up
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        run(tf.constant(steps))
        rates.append(steps * 32 / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", choices=sorted(CASES), action="append")
    parser.add_argument("--job", choices=["fit", "cv"], default="fit")
    args = parser.parse_args()
    ds = load_dataset("breastmnist")
    print(f"{os.cpu_count()} cores, load {os.getloadavg()}")
    if args.job == "cv":
        for arch in args.arch or list(CASES_CV):
            _cv_job(arch, args.repeats)
        return
    for arch in args.arch or list(CASES):
        size, lr, epochs = CASES[arch]
        train = ds.arrays("train", (size, size), "grayscale")
        val = ds.arrays("val", (size, size), "grayscale")
        weights = class_weights(train[1], 2)
        results = {"baseline": [], "visioncascade": []}
        for repeat in range(args.repeats):
            for name in results:
                keras.backend.clear_session()
                keras.utils.set_random_seed(repeat)
                if name == "baseline":
                    total, per_epoch = _baseline(arch, size, lr, epochs, train, val, weights)
                else:
                    total, per_epoch = _ours(
                        arch, size, lr, epochs, train, val, weights, f"/tmp/bench-{arch}.keras"
                    )
                steady = len(train[0]) / statistics.median(per_epoch[1:])
                results[name].append((total, steady))
        print(f"\n{arch} {size}px, {epochs} epochs x {len(train[0])} images, median of {args.repeats}:")
        med = {}
        for name, runs in results.items():
            total = statistics.median(r[0] for r in runs)
            steady = statistics.median(r[1] for r in runs)
            med[name] = (total, steady)
            print(
                f"  {name:<14} total {total:7.1f} s   steady {steady:7.0f} images/s   "
                f"runs {[round(r[0], 1) for r in runs]}"
            )
        print(
            f"  speed-up: end to end {med['baseline'][0] / med['visioncascade'][0]:.2f}x, "
            f"steady-state {med['visioncascade'][1] / med['baseline'][1]:.2f}x"
        )
        keras.backend.clear_session()
        ceiling = _ceiling(arch, size, lr, train[0].shape[-1], steps=100 if arch == "scratch" else 20)
        print(
            f"  ceiling (train steps only) {ceiling:7.0f} images/s: baseline steady at "
            f"{med['baseline'][1] / ceiling:.0%}, visioncascade at {med['visioncascade'][1] / ceiling:.0%}; "
            f"2x the baseline would need {2 * med['baseline'][1] / ceiling:.1f}x the ceiling"
        )


if __name__ == "__main__":
    main()
