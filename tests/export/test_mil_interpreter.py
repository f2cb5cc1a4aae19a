"""The NumPy MIL interpreter against Keras: both registry architectures, with/without edges, gray and RGB."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from visioncascade.errors import ExportError
from visioncascade.export import MILProgram, export_coreml
from visioncascade.models import create_model
from visioncascade.spec import ModelSpec

LABELS = ("a", "b", "c")


def _randomize_batchnorm(model: keras.Model, rng: np.random.Generator) -> None:
    """Give BatchNorm layers non-trivial statistics so the folded arithmetic is exercised."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.2, beta.shape),
                    rng.normal(0, 0.2, mean.shape),
                    rng.uniform(0.5, 2.0, var.shape),
                ]
            )


def _model(arch: str, gray: bool, edges: bool, weights_035) -> tuple[keras.Model, ModelSpec]:
    keras.utils.set_random_seed(3)
    channels = 1 if gray else 3
    params = {"weights": str(weights_035)} if arch == "mobilenet_v2" else {"filters": [8, 16]}
    model = create_model(arch, input_shape=(32, 32, channels), num_classes=3, edges=edges, **params)
    _randomize_batchnorm(model, np.random.default_rng(0))
    # A low temperature turns small logit differences into large probability differences.
    model.get_layer("probabilities").set_temperature(0.1 if arch == "scratch" else 0.2)
    spec = ModelSpec(
        name="t",
        labels=LABELS,
        input_size=(32, 32),
        color_mode="grayscale" if gray else "rgb",
        architecture=arch,
        edges=edges,
    )
    return model, spec


def _images(gray: bool, n: int = 12) -> np.ndarray:
    rng = np.random.default_rng(7)
    base = rng.uniform(0, 255, (n, 32, 32, 1 if gray else 3))
    # smooth-ish structure plus noise, like real frames (pure noise saturates the edge channel)
    base[:, 8:24, 10:20] = rng.uniform(150, 255, (n, 1, 1, base.shape[-1]))
    return base.round().astype(np.uint8)


# Every colour mode x edges pair for the scratch CNN; for MobileNetV2 (20-30 s a case on 2 cores) two
# cases that still cover both colour modes and both edge settings.
CASES = [
    pytest.param(arch, gray, edges, id=f"{arch}-{'gray' if gray else 'rgb'}-{'edges' if edges else 'plain'}")
    for arch in ("scratch", "mobilenet_v2")
    for gray in (True, False)
    for edges in (False, True)
    if arch == "scratch" or gray != edges
]


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "gray", "edges"), CASES)
def test_interpreter_matches_keras(arch, gray, edges, weights_035, tmp_path):
    model, spec = _model(arch, gray, edges, weights_035)
    x = _images(gray)
    reference = model.predict(x.astype(np.float32), verbose=0)
    assert reference.max(axis=1).min() < 0.95, "probabilities saturated: the comparison would be too easy"
    fp32 = MILProgram(export_coreml(model, tmp_path / "m32.mlpackage", spec, precision="fp32"))
    assert fp32.compute_dtypes == ["float32"]
    assert fp32.classes == LABELS
    got32 = fp32.predict(x)
    assert np.abs(got32 - reference).max() <= 1e-4
    fp16 = MILProgram(export_coreml(model, tmp_path / "m16.mlpackage", spec, precision="fp16"))
    assert "float16" in fp16.compute_dtypes
    got16 = fp16.predict(x)
    diff16 = np.abs(got16 - reference).max()
    assert diff16 <= 1e-2
    # fp16 rounding after every op is really emulated: the fp16 program is not bit-equal to the fp32 one
    assert np.abs(got16 - got32).max() > 1e-7
    if edges:
        assert "sqrt" in fp32.op_types
    if arch == "mobilenet_v2":
        assert fp32.op_types.get("conv", 0) > 40


def test_interpreter_feeds_image_like_core_ml(tmp_path):
    """The image input becomes (N, C, H, W) in R, G, B order; a wrong shape is refused."""
    keras.utils.set_random_seed(0)
    model = create_model("scratch", input_shape=(16, 16, 3), num_classes=3, edges=False, filters=[4])
    spec = ModelSpec(name="t", labels=LABELS, input_size=(16, 16), color_mode="rgb", architecture="scratch")
    program = MILProgram(export_coreml(model, tmp_path / "m.mlpackage", spec, precision="fp32"))
    x = _images(False)[:, :16, :16]
    tensor = program.image_to_tensor(x)
    assert tensor.shape == (12, 3, 16, 16)
    np.testing.assert_array_equal(tensor[:, 0], x[..., 0])
    with pytest.raises(ExportError, match=r"takes \(N, 16, 16, 3\)"):
        program.predict(x[..., :1])


def test_unknown_op_is_cannot_validate_never_a_pass(tmp_path):
    """A program with an op the interpreter lacks (here ``sin``) is an error naming the op."""

    class Wavy(keras.layers.Layer):
        def call(self, x):
            return keras.ops.sin(x)

    inputs = keras.Input((8, 8, 1), name="image")
    x = Wavy()(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    spec = ModelSpec(
        name="t", labels=LABELS, input_size=(8, 8), color_mode="grayscale", architecture="scratch"
    )
    path = export_coreml(model, tmp_path / "wavy.mlpackage", spec, precision="fp32")
    with pytest.raises(ExportError, match=r"cannot validate.*op sin"):
        MILProgram(path)


def test_interpreter_refuses_neural_network_mlmodel(tmp_path):
    keras.utils.set_random_seed(0)
    model = create_model("scratch", input_shape=(16, 16, 1), num_classes=3, edges=False, filters=[4])
    spec = ModelSpec(
        name="t", labels=LABELS, input_size=(16, 16), color_mode="grayscale", architecture="scratch"
    )
    path = export_coreml(model, tmp_path / "m.mlmodel", spec, precision="fp32", coreml_format="mlmodel")
    with pytest.raises(ExportError, match="not an ML Program"):
        MILProgram(path)
