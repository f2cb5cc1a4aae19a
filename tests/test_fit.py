"""fit_model: later fits of an architecture reuse a compiled twin, to the last digit."""

from __future__ import annotations

import random
import sys
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from visioncascade.data.pipeline import Augmentation, make_tf_dataset
from visioncascade.models import create_model, load_model
from visioncascade.train import fit as fit_module
from visioncascade.train.fit import class_weights, clear_trainers, compile_model, fit_model, seed_everything


class _SeesModel(keras.callbacks.Callback):
    """Records which object the fit trained (``self.model``)."""

    def on_train_begin(self, logs=None):
        self.trained = self.model


def _data(seed: int, n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.uniform(0, 120, (n, 16, 16, 1)) + y[:, None, None, None] * rng.uniform(0, 100, (n, 1, 1, 1))
    return x.astype(np.uint8), y


def _build(seed: int, filters=(4, 8), freeze: bool = False) -> keras.Model:
    """A fresh model, seeded like the experiment's."""
    keras.utils.set_random_seed(seed)
    model = create_model("scratch", input_shape=(16, 16, 1), num_classes=2, edges=True, filters=list(filters))
    if freeze:
        model.get_layer("s0_conv0").trainable = False
    return model


def _fit(
    seed: int,
    filters=(4, 8),
    freeze: bool = False,
    callbacks=None,
    model=None,
    learning_rates=None,
    weight_decay: float = 0.0,
    augmentation: Augmentation | None = Augmentation(),
    epochs: int = 4,
    learning_rate: float = 3e-3,
    average_epochs: int = 0,
    checkpoint=None,
):
    """One fit from a fresh model: history, weights, probabilities, the object that trained, the model,
    the fit's result."""
    model = model or _build(seed, filters, freeze)
    seen = _SeesModel()
    train, val = _data(seed), _data(seed + 100, 24)
    result = fit_model(
        model,
        train,
        val,
        epochs=epochs,
        patience=10,
        batch_size=8,
        learning_rate=learning_rate,
        augmentation=augmentation,
        class_weight=class_weights(train[1], 2),
        seed=seed,
        checkpoint=checkpoint,
        callbacks=[seen, *(callbacks or [])],
        learning_rates=learning_rates,
        weight_decay=weight_decay,
        average_epochs=average_epochs,
    )
    probabilities = keras.ops.convert_to_numpy(model(val[0].astype(np.float32), training=False))
    return result.history, model.get_weights(), probabilities, seen.trained, model, result


_TWO_EPOCHS = {"epochs": 2, "patience": 10, "batch_size": 8, "learning_rate": 3e-3}


def _assert_same(a, b) -> None:
    assert a[0] == b[0]  # every loss of every epoch
    for wa, wb in zip(a[1], b[1], strict=True):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(a[2], b[2])


@pytest.fixture(autouse=True)
def _no_twins():
    clear_trainers()
    yield
    clear_trainers()


def test_a_reused_twin_trains_to_the_same_digits_as_a_fresh_one():
    first = _fit(0)
    other = _fit(1)  # trains the twin on other data, with its own optimizer state and learning-rate cuts
    again = _fit(0)
    assert again[3] is first[3] is other[3]  # one compiled twin served all three fits
    _assert_same(first, again)
    clear_trainers()
    fresh = _fit(1)
    assert fresh[3] is not other[3]
    _assert_same(other, fresh)
    # The caller's model holds the trained state and stays compiled, as before, without optimizer slots
    # it never used (the twin trained): Adam keeps two per trainable weight, the twin has them.
    assert fresh[4] is not fresh[3]
    assert fresh[4].optimizer is not None
    assert len(fresh[4].optimizer.variables) < len(fresh[4].trainable_variables)
    assert len(fresh[3].optimizer.variables) > 2 * len(fresh[3].trainable_variables)


def test_a_twin_trains_to_the_same_digits_as_the_model_itself(monkeypatch: pytest.MonkeyPatch):
    first, reused = _fit(1), _fit(0)  # the second fit of the architecture: a reused twin
    monkeypatch.setattr(fit_module, "_trainer_for", lambda model, *_: (model, None))  # the old way
    own = _fit(0)
    assert own[3] is own[4] and reused[3] is first[3]
    _assert_same(reused, own)


def test_each_architecture_and_frozen_set_gets_its_own_twin():
    plain = _fit(0)
    wider = _fit(0, filters=(6, 8))
    frozen = _fit(0, freeze=True)
    assert len({id(plain[3]), id(wider[3]), id(frozen[3])}) == 3
    plain_again = _fit(0)
    assert plain_again[3] is not plain[3]  # only the two most recent twins are kept
    _assert_same(plain, plain_again)
    frozen_again = _fit(0, freeze=True)
    assert frozen_again[3] is frozen[3]
    _assert_same(frozen, frozen_again)
    # The frozen convolution did not move; the same one in the plain model did.
    untrained = _build(0).get_layer("s0_conv0").get_weights()[0]
    np.testing.assert_array_equal(frozen[4].get_layer("s0_conv0").get_weights()[0], untrained)
    assert not np.array_equal(plain[4].get_layer("s0_conv0").get_weights()[0], untrained)


def test_fits_in_two_threads_do_not_share_a_twin():
    # Keras's global seed (which tf.data's seeds build on) is one per process: 0 for all of them here.
    expected = {seed: _fit(seed, model=_build(0)) for seed in (0, 1)}
    results: dict[int, tuple] = {}
    started = threading.Barrier(2)

    class _Meet(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            started.wait(timeout=60)  # both fits are training at the same time

    models = {seed: _build(0) for seed in (0, 1)}
    threads = [
        threading.Thread(
            target=lambda s=seed: results.__setitem__(s, _fit(s, callbacks=[_Meet()], model=models[s]))
        )
        for seed in (0, 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results) == [0, 1]
    assert results[0][3] is not results[1][3]
    for seed in (0, 1):
        _assert_same(expected[seed], results[seed])


@pytest.mark.parametrize("augmentation", [None, Augmentation()], ids=["plain", "augmented"])
def test_a_model_keras_cannot_rebuild_from_its_config_trains_itself(augmentation):
    class _Unregistered(keras.layers.Layer):  # not serializable: from_config cannot rebuild it
        def call(self, x):
            return x * 1.0

    inputs = keras.Input((16, 16, 1))
    x = _Unregistered()(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    before = [w.copy() for w in model.get_weights()]
    seen = _SeesModel()
    train, val = _data(0), _data(100, 24)
    result = fit_model(
        model,
        train,
        val,
        **_TWO_EPOCHS,
        augmentation=augmentation,
        class_weight=None,
        seed=0,
        callbacks=[seen],
    )
    assert seen.trained is model
    assert result.epochs_run == 2
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    # The step that augmented (it takes seeds with the images) was for that fit only: plain data trains.
    assert "train_step" not in vars(model)
    model.fit(train[0].astype(np.float32), train[1], batch_size=8, epochs=1, verbose=0)


def test_the_augmentation_runs_in_the_twins_step_with_the_pipelines_seeds():
    """The batches reach the twin's step unaugmented with a seed each; it augments them, every fit."""
    identity = Augmentation(
        horizontal_flip=False, rotation_degrees=0, shift=0, zoom=0, brightness=0, contrast=0
    )
    plain = _fit(0, augmentation=None)
    through_step = _fit(0, augmentation=identity)  # seeds travel, images come out unchanged: the same digits
    assert through_step[3] is not plain[3]  # the augmentation is part of the traced step: its own twin
    _assert_same(plain, through_step)
    augmented = _fit(0, augmentation=Augmentation())
    assert augmented[0]["loss"] != plain[0]["loss"]
    _assert_same(augmented, _fit(0, augmentation=Augmentation()))  # the twin reused: the same digits again
    clear_trainers()
    _assert_same(augmented, _fit(0, augmentation=Augmentation()))


def test_the_training_step_is_traced_once():
    """Adam's slots exist before the first trace (else TensorFlow traces the whole step twice)."""
    model = _build(0)
    compile_model(model, 1e-3)
    traces = []
    step = model.train_step
    model.train_step = lambda data: traces.append(1) or step(data)
    x, y = _data(0)
    model.fit(x.astype(np.float32), y, batch_size=8, epochs=2, verbose=0)
    assert len(traces) == 1


def test_given_learning_rates_replace_the_halving_on_plateaus():
    rates = [3e-3, 1e-3, 5e-4]
    history = _fit(0, learning_rates=rates)[0]
    assert history["learning_rate"] == pytest.approx([3e-3, 1e-3, 5e-4, 5e-4], rel=1e-6)
    # Replaying a fit's own schedule (as the refit does) trains to the same digits.
    halving = _fit(
        1, callbacks=[keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1)]
    )
    assert len(set(halving[0]["learning_rate"])) > 1  # the rate was cut
    replayed = _fit(1, learning_rates=halving[0]["learning_rate"])
    _assert_same(halving, replayed)


def test_weight_decay_shrinks_the_weights_and_has_a_twin_of_its_own():
    plain = _fit(0)
    decayed = _fit(0, weight_decay=0.9)  # the step traced without decay must not serve this fit
    assert decayed[3] is not plain[3]
    assert decayed[3].optimizer.weight_decay == pytest.approx(0.9)
    clear_trainers()
    _assert_same(decayed, _fit(0, weight_decay=0.9))  # a fresh twin: the same digits

    def kernels(result) -> float:
        return sum(float(np.sum(w.numpy() ** 2)) for w in result[4].trainable_weights if w.ndim == 4)

    assert kernels(decayed) < 0.97 * kernels(plain)


def test_the_step_trains_on_the_batches_the_pipeline_would_have_augmented():
    """fit_model (augmentation in the twin's step) = Keras's fit on the pipeline's augmented batches."""
    train, val = _data(0), _data(100, 24)
    aug, weights = Augmentation(), class_weights(train[1], 2)
    ours = fit_model(
        _build(0),
        train,
        val,
        **_TWO_EPOCHS,
        augmentation=aug,
        class_weight=weights,
        seed=5,
        learning_rates=[3e-3] * 2,
    )
    reference = _build(0)
    compile_model(reference, 3e-3)
    pipeline = make_tf_dataset(*train, batch_size=8, training=True, augmentation=aug, seed=5)
    history = reference.fit(
        pipeline,
        validation_data=make_tf_dataset(*val, batch_size=128, training=False),
        epochs=2,
        class_weight=weights,
        shuffle=False,  # the pipeline shuffles, as fit_model's does
        verbose=0,
    )
    assert ours.history["loss"] == [float(v) for v in history.history["loss"]]
    assert ours.history["val_loss"] == [float(v) for v in history.history["val_loss"]]


def test_seed_everything_seeds_what_keras_seeds():
    """The same draws as after ``keras.utils.set_random_seed`` (which also clears TF's kernel cache)."""

    def draws() -> tuple:
        shuffled = tf.data.Dataset.range(8).shuffle(8, seed=1)  # builds on TF's global seed
        return (
            random.random(),
            float(np.random.rand()),
            float(keras.random.uniform(())),  # Keras's global seed generator
            keras.initializers.GlorotUniform()((3, 3)).numpy().tolist(),  # layers' initial weights
            list(shuffled.as_numpy_iterator()),
            list(tf.data.Dataset.random(seed=2).take(2).as_numpy_iterator()),
        )

    keras.utils.set_random_seed(7)
    expected = draws()
    keras.utils.set_random_seed(3)
    assert draws() != expected
    draws()  # every generator moves on
    seed_everything(7)
    assert draws() == expected


@pytest.mark.parametrize("gone", ["eager-context fields", "keras module"])
def test_seed_everything_falls_back_to_keras_where_tensorflow_changed(monkeypatch: pytest.MonkeyPatch, gone):
    from tensorflow.python.eager import context

    if gone == "keras module":
        from keras.src import utils as keras_utils

        monkeypatch.delattr(keras_utils, "rng_utils")
        monkeypatch.setitem(sys.modules, "keras.src.utils.rng_utils", None)  # importing it fails
    else:
        monkeypatch.setattr(context, "context", lambda: object())  # no _seed / _rng
    calls: list[int] = []
    monkeypatch.setattr(keras.utils, "set_random_seed", calls.append)
    seed_everything(4)
    assert calls == [4]


def _fit_averaging(seed: int, average_epochs: int, learning_rate: float = 3e-3, checkpoint=None):
    """A 3-epoch fit at 3e-3 (the rates given), then ``average_epochs`` at ``learning_rate``:
    its result, the model and its training data."""
    fitted = _fit(
        seed,
        epochs=3,
        learning_rates=[3e-3] * 3,
        weight_decay=0.05,
        learning_rate=learning_rate,
        average_epochs=average_epochs,
        checkpoint=checkpoint,
    )
    return fitted[5], fitted[4], _data(seed)


def _batch_norm_state(model: keras.Model) -> list[np.ndarray]:
    return [
        keras.ops.convert_to_numpy(v)
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in (layer.moving_mean, layer.moving_variance)
    ]


def test_weight_averaging_at_a_zero_rate_keeps_the_best_weights_and_recomputes_batch_norm():
    """Averaging epochs that cannot move the weights: their average is the best weights, to the bit."""
    plain, plain_model, train = _fit_averaging(0, 0)
    averaged, model, _ = _fit_averaging(0, 4, learning_rate=0.0)
    assert (averaged.averaged_epochs, plain.averaged_epochs) == (4, 0)
    assert averaged.averaging_history["learning_rate"] == [0.0] * 4
    for a, b in zip(model.trainable_weights, plain_model.trainable_weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    fit_module.recompute_batch_norm(plain_model, train[0])  # what averaging ends with
    for a, b in zip(_batch_norm_state(model), _batch_norm_state(plain_model), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_weight_averaging_trains_on_keeps_the_checkpoint_and_reports_its_epochs(tmp_path):
    plain, plain_model, _ = _fit_averaging(0, 0)
    averaged, model, _ = _fit_averaging(0, 3, checkpoint=tmp_path / "best.keras")
    assert averaged.averaged_epochs == 3
    assert averaged.epochs_run == plain.epochs_run == 3  # the fit's own epochs, as before
    assert set(averaged.averaging_history) >= {"loss", "accuracy", "learning_rate"}
    assert averaged.averaging_history["learning_rate"] == pytest.approx([3e-3] * 3)
    assert all(len(v) == 3 for v in averaged.averaging_history.values())
    assert averaged.history == plain.history  # the fit before averaging is untouched
    moved = [
        float(np.abs(keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b)).max())
        for a, b in zip(model.trainable_weights, plain_model.trainable_weights, strict=True)
    ]
    assert max(moved) > 1e-3
    # The checkpoint is the best model before averaging.
    best = load_model(tmp_path / "best.keras")
    for a, b in zip(best.get_weights(), plain_model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_recompute_batch_norm_gives_the_mean_of_the_batches_statistics_and_spares_frozen_layers():
    model = _build(3)
    frozen = model.get_layer("s1_bn1")
    frozen.trainable = False
    frozen_before = [
        keras.ops.convert_to_numpy(v).copy() for v in (frozen.moving_mean, frozen.moving_variance)
    ]
    x = _data(3, 32)[0].astype(np.float32)
    bn = model.get_layer("s0_bn0")
    features = keras.ops.convert_to_numpy(keras.Model(model.input, bn.input)(x))  # what bn0 normalises
    fit_module.recompute_batch_norm(model, x, batch_size=16)
    halves = features.reshape(2, 16, *features.shape[1:])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bn.moving_mean), features.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bn.moving_variance),
        halves.var(axis=(1, 2, 3)).mean(axis=0),
        rtol=1e-4,
        atol=1e-5,
    )
    assert bn.momentum == pytest.approx(0.9)  # put back
    for before, v in zip(frozen_before, (frozen.moving_mean, frozen.moving_variance), strict=True):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(v))
