"""Architectures, custom layers, weights and freezing."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from visioncascade.data.pipeline import Augmentation, augment_batch, make_tf_dataset
from visioncascade.errors import ConfigError, ModelError
from visioncascade.models import SobelEdges, create_model, list_architectures, load_model, save_model
from visioncascade.spec import ModelSpec

SHARED_WEIGHTS = Path(__file__).resolve().parents[1].parent / "shared" / "weights"


def test_registry_lists_both_architectures_and_rejects_unknown():
    assert list_architectures() == ["mobilenet_v2", "scratch"]
    with pytest.raises(
        ConfigError, match="unknown architecture 'resnet'; choose one of mobilenet_v2, scratch"
    ):
        create_model("resnet", input_shape=(28, 28, 1), num_classes=2)
    with pytest.raises(ConfigError, match=r"has no parameter\(s\) \['depth'\]"):
        create_model("scratch", input_shape=(28, 28, 1), num_classes=2, depth=3)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("edges", [False, True])
def test_scratch_is_tiny_and_outputs_probabilities(channels: int, edges: bool):
    model = create_model("scratch", input_shape=(28, 28, channels), num_classes=3, edges=edges)
    assert model.count_params() < 100_000
    x = np.random.default_rng(0).uniform(0, 255, (4, 28, 28, channels)).astype(np.float32)
    p = model.predict(x, verbose=0)
    assert p.shape == (4, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert any(isinstance(layer, SobelEdges) for layer in model.layers) == edges


def test_sobel_layer_finds_a_vertical_step_and_ignores_flat_regions():
    img = np.zeros((1, 9, 9, 1), np.float32)
    img[..., 5:, :] = 1.0  # columns 5.. bright
    out = keras.ops.convert_to_numpy(SobelEdges(append=False)(img))[0, :, :, 0]
    # Interior rows: strong response at the step (columns 4 and 5), none far from it.
    assert out[4, 4] > 0.6 and out[4, 5] > 0.6
    assert out[4, 1] < 0.01 and out[4, 7] < 0.01
    rgb = np.repeat(img, 3, axis=-1)
    both = keras.ops.convert_to_numpy(SobelEdges(append=True)(rgb))
    assert both.shape == (1, 9, 9, 4)
    np.testing.assert_allclose(both[..., 3], out[None], atol=1e-5)


def test_temperature_survives_save_and_load(tmp_path: Path):
    model = create_model("scratch", input_shape=(16, 16, 1), num_classes=2)
    x = np.random.default_rng(1).uniform(0, 255, (3, 16, 16, 1)).astype(np.float32)
    before = model.predict(x, verbose=0)
    model.get_layer("probabilities").set_temperature(3.0)
    after = model.predict(x, verbose=0)
    assert np.abs(after - 0.5).max() < np.abs(before - 0.5).max()  # softer
    save_model(model, tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), after, atol=1e-6)


def test_each_save_writes_the_model_as_it_is_then_without_its_optimizer(tmp_path: Path):
    """save_model reuses its uncompiled copy for a config it has saved before (a fit saves its checkpoint
    again and again): each file still holds the weights and calibration the model had when saved."""
    model = create_model("scratch", input_shape=(16, 16, 1), num_classes=2)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    x = np.random.default_rng(3).uniform(0, 255, (4, 16, 16, 1)).astype(np.float32)
    save_model(model, tmp_path / "a.keras")
    first = keras.ops.convert_to_numpy(model(x))
    model.set_weights([w * 0.5 for w in model.get_weights()])
    model.get_layer("probabilities").set_temperature(2.0)
    save_model(model, tmp_path / "b.keras")
    second = keras.ops.convert_to_numpy(model(x))
    assert np.abs(first - second).max() > 1e-3
    for name, expected in (("a", first), ("b", second)):
        loaded = load_model(tmp_path / f"{name}.keras")
        np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), expected, atol=1e-6)
        with zipfile.ZipFile(tmp_path / f"{name}.keras") as archive:
            names = archive.namelist()
            with archive.open("model.weights.h5") as f, h5py.File(f) as weights:
                assert "optimizer" not in weights and "model.weights.h5" in names
    assert model.optimizer is not None  # the model itself stays compiled


def test_logit_offsets_are_added_after_the_temperature_and_survive_save_and_load(tmp_path: Path):
    model = create_model("scratch", input_shape=(16, 16, 1), num_classes=3)
    x = np.random.default_rng(2).uniform(0, 255, (4, 16, 16, 1)).astype(np.float32)
    layer = model.get_layer("probabilities")
    logits = keras.ops.convert_to_numpy(keras.Model(model.input, model.get_layer("logits").output)(x))
    layer.set_temperature(0.5)
    layer.set_offsets([0.3, -0.1, -0.2])
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(logits / 0.5 + np.array([0.3, -0.1, -0.2])))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), expected, atol=1e-6)
    save_model(model, tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), expected, atol=1e-6)
    with pytest.raises(ValueError, match="offsets must be 3 finite values"):
        layer.set_offsets([0.1, 0.2])
    with pytest.raises(ValueError, match="offsets must be 3 finite values"):
        layer.set_offsets([0.1, np.nan, 0.0])


def test_a_model_saved_before_the_offsets_existed_loads_and_predicts_as_it_did():
    """``tests/data``'s model was saved by visioncascade a09cedf: its softmax held a temperature only."""
    data = Path(__file__).parent / "data"
    model = load_model(data / "legacy_scratch_temperature_only.keras")
    expected = np.load(data / "legacy_scratch_temperature_only.npz")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(expected["x"])), expected["p"], atol=1e-6)
    layer = model.get_layer("probabilities")
    assert float(keras.ops.convert_to_numpy(layer.temperature)) == pytest.approx(0.5)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.offsets), np.zeros(3))


def _h5_kernel(path: Path, layer: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        group = f[layer]
        names: list[str] = []
        group.visit(names.append)
        kernel = next(n for n in names if n.endswith("kernel:0"))
        return np.asarray(group[kernel])


def test_mobilenet_loads_bundled_weights_freezes_and_keeps_bn_statistics(weights_035: Path):
    model = create_model("mobilenet_v2", input_shape=(64, 64, 1), num_classes=2, edges=True, freeze=7)
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    np.testing.assert_array_equal(base.get_layer("Conv1").get_weights()[0], _h5_kernel(weights_035, "Conv1"))
    assert [layer.trainable for layer in base.layers[:7]] == [False] * 7
    rest = [layer for layer in base.layers[7:] if layer.weights]
    assert all(layer.trainable != isinstance(layer, keras.layers.BatchNormalization) for layer in rest)
    bn = base.get_layer("bn_Conv1")
    mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    assert not np.allclose(mean, 0.0) and not np.allclose(var, 1.0)  # ImageNet statistics, not defaults
    # Grayscale + edges: the adapter starts as "pass RGB through".
    kernel = model.get_layer("edge_adapter").get_weights()[0][0, 0]
    np.testing.assert_array_equal(kernel, np.vstack([np.eye(3), np.zeros((1, 3))]))


def test_mobilenet_bn_statistics_do_not_move_during_training(weights_035: Path):
    from visioncascade.train.fit import compile_model

    model = create_model("mobilenet_v2", input_shape=(32, 32, 3), num_classes=2, freeze=0)
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    before = base.get_layer("block_16_project_BN").moving_mean.numpy().copy()
    compile_model(model, 1e-3)
    rng = np.random.default_rng(0)
    model.fit(rng.uniform(0, 255, (16, 32, 32, 3)), rng.integers(0, 2, 16), epochs=1, verbose=0)
    np.testing.assert_array_equal(base.get_layer("block_16_project_BN").moving_mean.numpy(), before)


def test_mobilenet_weight_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="would freeze random weights and leave BatchNorm statistics unset"):
        create_model("mobilenet_v2", input_shape=(32, 32, 3), num_classes=2, weights="none", freeze=5)
    with pytest.raises(ModelError, match="does not exist"):
        create_model(
            "mobilenet_v2", input_shape=(32, 32, 3), num_classes=2, weights=str(tmp_path / "nope.h5")
        )
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(ModelError, match="does not fit mobilenet_v2"):
        create_model("mobilenet_v2", input_shape=(32, 32, 3), num_classes=2, weights=str(junk))
    with pytest.raises(ModelError, match=r"no bundled ImageNet weights for MobileNetV2 alpha=0\.5"):
        create_model("mobilenet_v2", input_shape=(32, 32, 3), num_classes=2, alpha=0.5)
    with pytest.raises(ConfigError, match="needs images of at least 32 px"):
        create_model("mobilenet_v2", input_shape=(28, 28, 1), num_classes=2)
    with pytest.raises(ConfigError, match="--freeze must be between 0 and"):
        create_model("mobilenet_v2", input_shape=(32, 32, 3), num_classes=2, freeze=1000)


def _keras_h5_weights(model: keras.Model, path: Path) -> Path:
    """``model``'s weights in the legacy Keras .h5 layout of the ImageNet files Keras downloads."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def _other_weights(tmp_path: Path) -> tuple[Path, Path]:
    """The two files of ../shared/weights that do not fit the default MobileNetV2 (alpha 0.5 and a v1
    MobileNet), or, where that folder is absent (a fresh clone in CI), files of the same layout and names
    made from randomly initialised models."""
    wrong_name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_224_no_top.h5"
    v1_name = "mobilenet_2_5_224_tf_no_top.h5"  # MobileNet alpha=0.25, not V2
    if (SHARED_WEIGHTS / wrong_name).is_file() and (SHARED_WEIGHTS / v1_name).is_file():
        return SHARED_WEIGHTS / wrong_name, SHARED_WEIGHTS / v1_name
    shape = (32, 32, 3)
    wrong = keras.applications.MobileNetV2(input_shape=shape, alpha=0.5, include_top=False, weights=None)
    v1 = keras.applications.MobileNet(input_shape=shape, alpha=0.25, include_top=False, weights=None)
    return _keras_h5_weights(wrong, tmp_path / wrong_name), _keras_h5_weights(v1, tmp_path / v1_name)


def test_mobilenet_rejects_weights_of_another_width(tmp_path: Path):
    wrong, v1 = _other_weights(tmp_path)
    with pytest.raises(
        ModelError,
        match=r"does not fit mobilenet_v2 \(alpha=0.35\).*its name says MobileNetV2 alpha=0.5: add --alpha 0.5",
    ):
        create_model("mobilenet_v2", input_shape=(32, 32, 3), num_classes=2, weights=str(wrong))
    with pytest.raises(ModelError, match=r"its name says MobileNet \(v1\) weights, not MobileNetV2"):
        create_model("mobilenet_v2", input_shape=(32, 32, 3), num_classes=2, weights=str(v1))
    right = create_model(
        "mobilenet_v2", input_shape=(32, 32, 3), num_classes=2, weights=str(wrong), alpha=0.5
    )
    assert right.count_params() > 700_000
    # The weights are those of the file: a layer of the base holds the file's values.
    with h5py.File(wrong, "r") as f:
        names: list[str] = []
        f["Conv1"].visit(names.append)  # Conv1/kernel or Conv1/Conv1/kernel:0, by who wrote the file
        saved = np.asarray(f["Conv1"][next(n for n in names if n.rsplit("/", 1)[-1].startswith("kernel"))])
    base = right.get_layer(next(layer.name for layer in right.layers if layer.name.startswith("mobilenetv2")))
    np.testing.assert_array_equal(np.asarray(base.get_layer("Conv1").kernel), saved)


def test_augmentation_keeps_shape_and_range_and_flip_is_exact():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 20, 20, 1)).astype(np.float32)
    out = augment_batch(x, Augmentation()).numpy()
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, x)
    flip_only = Augmentation(rotation_degrees=0, shift=0, zoom=0, brightness=0, contrast=0)
    flipped = augment_batch(x, flip_only).numpy()
    mirrored = 0
    for original, result in zip(x, flipped, strict=True):
        same = np.allclose(result, original, atol=1e-3)
        mirrored += np.allclose(result, original[:, ::-1], atol=1e-3)
        assert same != np.allclose(result, original[:, ::-1], atol=1e-3)  # one or the other, exactly
    assert 0 < mirrored < len(x)  # flipped with probability 1/2: some, not all (1 in 32,768 misses)
    upside_down = Augmentation(
        horizontal_flip=False,
        vertical_flip=True,
        rotation_degrees=0,
        shift=0,
        zoom=0,
        brightness=0,
        contrast=0,
    )
    flipped = augment_batch(x, upside_down).numpy()
    turned = [np.allclose(r, o[::-1], atol=1e-3) for o, r in zip(x, flipped, strict=True)]
    kept = [np.allclose(r, o, atol=1e-3) for o, r in zip(x, flipped, strict=True)]
    assert all(t != k for t, k in zip(turned, kept, strict=True)) and 0 < sum(turned) < len(x)
    with pytest.raises(ConfigError, match="zoom must be in"):
        Augmentation(zoom=1.5)


def test_augmenting_in_the_training_step_gives_the_pipelines_batches():
    """``augment_in_step`` hands each batch's seed on: augmenting with it gives the very same batches."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 12, 12, 1)).astype(np.uint8)
    y = np.arange(20) % 2
    aug = Augmentation(vertical_flip=True)
    common = dict(batch_size=8, training=True, augmentation=aug, seed=3)
    in_pipeline = make_tf_dataset(x, y, **common)
    in_step = make_tf_dataset(x, y, **common, augment_in_step=True)
    for _epoch in range(2):  # new shuffles and seeds every epoch, the same on both sides
        batches = 0
        for (images, labels), ((raw, seeds), raw_labels) in zip(in_pipeline, in_step, strict=True):
            assert raw.dtype == images.dtype and not np.array_equal(raw.numpy(), images.numpy())
            np.testing.assert_array_equal(augment_batch(raw, aug, seeds).numpy(), images.numpy())
            np.testing.assert_array_equal(raw_labels.numpy(), labels.numpy())
            batches += 1
        assert batches == 3
    with pytest.raises(ConfigError, match="augment_in_step needs a training dataset with an augmentation"):
        make_tf_dataset(x, y, batch_size=8, training=True, augment_in_step=True)
    with pytest.raises(ConfigError, match="got training=False"):
        make_tf_dataset(x, y, batch_size=8, training=False, augmentation=aug, augment_in_step=True)


@pytest.mark.parametrize("augment_in_step", [False, True])
def test_datasets_run_without_the_autotuner_and_give_the_batches_it_gives(augment_in_step: bool):
    import tensorflow as tf

    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (37, 12, 12, 1), dtype=np.uint8)
    y = np.arange(37) % 3
    common = dict(batch_size=8, training=True, augmentation=Augmentation(), seed=2)
    ours = make_tf_dataset(x, y, **common, augment_in_step=augment_in_step)
    assert ours.options().autotune.enabled is False  # its background thread competes with training
    options = tf.data.Options()
    options.autotune.enabled = True
    # Another dataset of the same settings (each draws its own shuffles and seeds), with the tuner on.
    tuned = make_tf_dataset(x, y, **common, augment_in_step=augment_in_step).with_options(options)
    assert tuned.options().autotune.enabled is True
    for _epoch in range(2):
        ours_epoch, tuned_epoch = list(ours), list(tuned)
        assert len(ours_epoch) == len(tuned_epoch) == 5
        for a, b in zip(ours_epoch, tuned_epoch, strict=True):
            for u, v in zip(tf.nest.flatten(a), tf.nest.flatten(b), strict=True):
                np.testing.assert_array_equal(u.numpy(), v.numpy())


def test_a_spec_with_bad_logit_offsets_is_refused_naming_the_file(tmp_path: Path):
    spec = ModelSpec(
        name="m",
        labels=("a", "b", "c"),
        input_size=(16, 16),
        color_mode="grayscale",
        architecture="scratch",
        logit_offsets=[0.5, -0.25, -0.25],
    )
    spec.save(tmp_path / "spec.json")
    assert ModelSpec.load(tmp_path).logit_offsets == (0.5, -0.25, -0.25)
    data = spec.to_dict()
    for bad in ([0.1, 0.2], [0.1, float("nan"), 0.0]):
        (tmp_path / "spec.json").write_text(json.dumps({**data, "logit_offsets": bad}))
        with pytest.raises(
            ConfigError, match=r"spec\.json: logit_offsets must be one finite number per label \(3\)"
        ):
            ModelSpec.load(tmp_path)
    legacy = {k: v for k, v in data.items() if k != "logit_offsets"}  # written before offsets existed
    (tmp_path / "spec.json").write_text(json.dumps(legacy))
    assert ModelSpec.load(tmp_path).logit_offsets == ()
