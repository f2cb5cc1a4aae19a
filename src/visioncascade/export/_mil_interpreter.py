"""A NumPy interpreter for the Core ML ML Program (MIL) operations visioncascade models use.

Core ML itself cannot run on Linux. To prove on Linux that a saved ``.mlpackage`` computes what the Keras
model computes, the package is loaded with coremltools' own loader (``MLModel(skip_model_load=True)`` →
protobuf spec → ``milproto.load`` → a PyMIL program whose constants come from the package's weight blob)
and every operation of its ``main`` function is executed here with NumPy:

* each operation computes in float32 and its result is cast to the output's declared dtype, so fp16
  programs are rounded to float16 after every operation, as Core ML's fp16 compute does;
* the image input is fed the way Core ML feeds an ``ImageType``: an ``H x W`` grayscale or RGB image becomes
  a ``(1, C, H, W)`` float tensor (any scale/bias is part of the program's own operations);
* the ``classify`` operation's probabilities are returned, re-ordered by class label.

An operation this interpreter does not implement is an :class:`~visioncascade.errors.ExportError`
("cannot validate: op X"), never a silent pass.

Batching: the program is written for batch 1; the interpreter runs N images at once, which is exact for
every implemented operation (``reshape`` to a leading 1 is re-targeted to N).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visioncascade.errors import ExportError

__all__ = ["SUPPORTED_OPS", "MILProgram"]

_Op = Callable[[dict[str, Any]], Any]


def _types():
    from coremltools.converters.mil.mil import types

    return types


def _dtype_of(var: Any) -> np.dtype | None:
    """The NumPy dtype of a PyMIL tensor/scalar var (None for strings, lists, dicts)."""
    types = _types()
    dtype = var.dtype
    if types.is_tensor(var.sym_type) or types.is_scalar(var.sym_type):
        name = types.builtin_to_string(dtype)
        return {
            "fp16": np.dtype(np.float16),
            "fp32": np.dtype(np.float32),
            "fp64": np.dtype(np.float64),
            "int32": np.dtype(np.int32),
            "int64": np.dtype(np.int64),
            "int8": np.dtype(np.int8),
            "uint8": np.dtype(np.uint8),
            "int16": np.dtype(np.int16),
            "uint16": np.dtype(np.uint16),
            "bool": np.dtype(np.bool_),
        }.get(name)
    return None


# ---------------------------------------------------------------------------------------------------------
# Operations. Each takes the op's resolved inputs (NumPy arrays / Python values) and returns its output(s).


def _spatial_pads(
    pad_type: str, pad: Any, size: tuple[int, int], kernel: tuple[int, int], strides, dilations
) -> list[tuple[int, int]]:
    pad_type = str(pad_type)
    if pad_type == "valid":
        return [(0, 0), (0, 0)]
    if pad_type == "custom":
        p = [int(v) for v in np.asarray(pad).ravel()]
        return [(p[0], p[1]), (p[2], p[3])]
    if pad_type in ("same", "same_lower"):
        pads = []
        for n, k, s, d in zip(size, kernel, strides, dilations, strict=True):
            out = -(-n // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
            before = total // 2 if pad_type == "same" else total - total // 2
            pads.append((before, total - before))
        return pads
    raise ExportError(f"cannot validate: pad_type {pad_type!r} is not implemented in the MIL interpreter")


def _conv(a: dict[str, Any]) -> np.ndarray:
    x = a["x"].astype(np.float32)
    w = a["weight"].astype(np.float32)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    strides = [int(v) for v in np.asarray(a.get("strides", [1, 1])).ravel()]
    dil = [int(v) for v in np.asarray(a.get("dilations", [1, 1])).ravel()]
    groups = int(a.get("groups", 1))
    pads = _spatial_pads(a.get("pad_type", "valid"), a.get("pad"), (h, wd), (kh, kw), strides, dil)
    xp = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))
    ho = (xp.shape[2] - (kh - 1) * dil[0] - 1) // strides[0] + 1
    wo = (xp.shape[3] - (kw - 1) * dil[1] - 1) // strides[1] + 1
    out = np.zeros((n, o, ho, wo), dtype=np.float32)
    depthwise = cg == 1 and o == groups == c
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dil[0], j * dil[1]
            xs = xp[
                :,
                :,
                r0 : r0 + strides[0] * (ho - 1) + 1 : strides[0],
                c0 : c0 + strides[1] * (wo - 1) + 1 : strides[1],
            ]
            if groups == 1:
                out += np.einsum("nchw,oc->nohw", xs, w[:, :, i, j], optimize=True)
            elif depthwise:
                out += xs * w[:, 0, i, j][None, :, None, None]
            else:
                xg = xs.reshape(n, groups, cg, ho, wo)
                wg = w[:, :, i, j].reshape(groups, o // groups, cg)
                out += np.einsum("ngchw,goc->ngohw", xg, wg, optimize=True).reshape(n, o, ho, wo)
    if a.get("bias") is not None:
        out += a["bias"].astype(np.float32)[None, :, None, None]
    return out


def _pool(a: dict[str, Any], kind: str) -> np.ndarray:
    x = a["x"].astype(np.float32)
    n, c, h, w = x.shape
    kh, kw = (int(v) for v in np.asarray(a["kernel_sizes"]).ravel())
    strides = [int(v) for v in np.asarray(a["strides"]).ravel()]
    pads = _spatial_pads(a.get("pad_type", "valid"), a.get("pad"), (h, w), (kh, kw), strides, (1, 1))
    if bool(a.get("ceil_mode", False)):
        extra = []
        for size, (p0, p1), k, s in zip((h, w), pads, (kh, kw), strides, strict=True):
            span = size + p0 + p1 - k
            out = -(-span // s) + 1
            extra.append(max((out - 1) * s + k - (size + p0 + p1), 0))
        pads = [(pads[0][0], pads[0][1] + extra[0]), (pads[1][0], pads[1][1] + extra[1])]
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]), constant_values=fill)
    ones = np.pad(np.ones((1, 1, h, w), np.float32), ((0, 0), (0, 0), pads[0], pads[1]))
    ho = (xp.shape[2] - kh) // strides[0] + 1
    wo = (xp.shape[3] - kw) // strides[1] + 1
    out = np.full((n, c, ho, wo), fill, dtype=np.float32)
    count = np.zeros((1, 1, ho, wo), dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            sl = (slice(None), slice(None), slice(i, i + strides[0] * (ho - 1) + 1, strides[0]),
                  slice(j, j + strides[1] * (wo - 1) + 1, strides[1]))  # fmt: skip
            if kind == "max":
                out = np.maximum(out, xp[sl])
            else:
                out += xp[sl]
                count += ones[sl]
    if kind == "avg":
        exclude = bool(a.get("exclude_padding_from_average", False))
        out = out / (count if exclude else float(kh * kw))
    return out


def _axes(a: dict[str, Any], ndim: int) -> tuple[int, ...] | None:
    axes = a.get("axes")
    if axes is None:
        return None
    return tuple(int(v) % ndim for v in np.asarray(axes).ravel())


def _reduce(fn: Callable[..., np.ndarray]) -> _Op:
    def op(a: dict[str, Any]) -> np.ndarray:
        x = a["x"].astype(np.float32)
        return fn(x, axis=_axes(a, x.ndim), keepdims=bool(a.get("keep_dims", False)))

    return op


def _softmax(a: dict[str, Any]) -> np.ndarray:
    x = a["x"].astype(np.float32)
    axis = int(a.get("axis", -1))
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _concat(a: dict[str, Any]) -> np.ndarray:
    values = [np.asarray(v) for v in a["values"]]
    if bool(a.get("interleave", False)):
        raise ExportError("cannot validate: op concat with interleave=True is not implemented")
    return np.concatenate(values, axis=int(a["axis"]))


def _reshape(a: dict[str, Any]) -> np.ndarray:
    x = a["x"]
    shape = [int(v) for v in np.asarray(a["shape"]).ravel()]
    if shape and shape[0] == 1 and x.shape[0] != 1:
        shape[0] = x.shape[0]  # the program's batch of 1 runs N images here
    return x.reshape(shape)


def _matmul(a: dict[str, Any]) -> np.ndarray:
    x, y = a["x"].astype(np.float32), a["y"].astype(np.float32)
    if bool(a.get("transpose_x", False)):
        x = np.swapaxes(x, -1, -2)
    if bool(a.get("transpose_y", False)):
        y = np.swapaxes(y, -1, -2)
    return x @ y


def _linear(a: dict[str, Any]) -> np.ndarray:
    out = a["x"].astype(np.float32) @ a["weight"].astype(np.float32).T
    if a.get("bias") is not None:
        out = out + a["bias"].astype(np.float32)
    return out


def _batch_norm(a: dict[str, Any]) -> np.ndarray:
    x = a["x"].astype(np.float32)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = a["mean"].astype(np.float32).reshape(shape)
    var = a["variance"].astype(np.float32).reshape(shape)
    out = (x - mean) / np.sqrt(var + float(a.get("epsilon", 1e-5)))
    if a.get("gamma") is not None:
        out = out * a["gamma"].astype(np.float32).reshape(shape)
    if a.get("beta") is not None:
        out = out + a["beta"].astype(np.float32).reshape(shape)
    return out


def _pad(a: dict[str, Any]) -> np.ndarray:
    x = a["x"].astype(np.float32)
    pad = [int(v) for v in np.asarray(a["pad"]).ravel()]
    mode = str(a.get("mode", "constant"))
    pairs = [(0, 0)] * (x.ndim - len(pad) // 2) + [(pad[i], pad[i + 1]) for i in range(0, len(pad), 2)]
    if mode == "constant":
        return np.pad(x, pairs, constant_values=float(a.get("constant_val", 0.0)))
    if mode in ("reflect", "replicate"):
        return np.pad(x, pairs, mode="reflect" if mode == "reflect" else "edge")
    raise ExportError(f"cannot validate: op pad with mode {mode!r} is not implemented")


def _cast(a: dict[str, Any]) -> np.ndarray:
    return np.asarray(a["x"])  # the result is cast to the output var's declared dtype by the caller


def _affine_dequantize(a: dict[str, Any]) -> np.ndarray:
    data = np.asarray(a["quantized_data"]).astype(np.float32)
    axis = int(a["axis"]) % data.ndim
    shape = [1] * data.ndim
    shape[axis] = -1
    zero = np.asarray(a["zero_point"]).astype(np.float32)
    scale = np.asarray(a["scale"]).astype(np.float32)
    if zero.ndim:
        zero = zero.reshape(shape)
    if scale.ndim:
        scale = scale.reshape(shape)
    return (data - zero) * scale


def _blockwise_shift_scale(a: dict[str, Any]) -> np.ndarray:
    data = np.asarray(a["data"]).astype(np.float32)
    scale = np.asarray(a["scale"]).astype(np.float32)
    offset = a.get("offset")

    def expand(t: np.ndarray) -> np.ndarray:
        for axis in range(data.ndim):
            if t.shape[axis] != data.shape[axis]:
                t = np.repeat(t, data.shape[axis] // t.shape[axis], axis=axis)
        return t

    if offset is not None:
        data = data - expand(np.asarray(offset).astype(np.float32))
    return data * expand(scale)


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> _Op:
    return lambda a: fn(np.asarray(a["x"], dtype=np.float32), np.asarray(a["y"], dtype=np.float32))


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> _Op:
    return lambda a: fn(np.asarray(a["x"], dtype=np.float32))


_OPS: dict[str, _Op] = {
    "conv": _conv,
    "max_pool": lambda a: _pool(a, "max"),
    "avg_pool": lambda a: _pool(a, "avg"),
    "relu": _unary(lambda x: np.maximum(x, 0.0)),
    "relu6": _unary(lambda x: np.clip(x, 0.0, 6.0)),
    "clip": lambda a: np.clip(a["x"].astype(np.float32), float(a["alpha"]), float(a["beta"])),
    "sigmoid": _unary(lambda x: 1.0 / (1.0 + np.exp(-x))),
    "tanh": _unary(np.tanh),
    "exp": _unary(np.exp),
    "sqrt": _unary(np.sqrt),
    "rsqrt": lambda a: 1.0 / np.sqrt(a["x"].astype(np.float32) + float(a.get("epsilon", 1e-12))),
    "square": _unary(np.square),
    "abs": _unary(np.abs),
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "real_div": _binary(np.divide),
    "maximum": _binary(np.maximum),
    "minimum": _binary(np.minimum),
    "pow": _binary(np.power),
    "reduce_sum": _reduce(np.sum),
    "reduce_mean": _reduce(np.mean),
    "reduce_max": _reduce(np.max),
    "softmax": _softmax,
    "concat": _concat,
    "transpose": lambda a: np.transpose(a["x"], [int(v) for v in np.asarray(a["perm"]).ravel()]),
    "reshape": _reshape,
    "squeeze": lambda a: np.squeeze(a["x"], axis=_axes(a, np.ndim(a["x"]))),
    "expand_dims": lambda a: np.expand_dims(
        a["x"], axis=tuple(int(v) for v in np.asarray(a["axes"]).ravel())
    ),
    "matmul": _matmul,
    "linear": _linear,
    "batch_norm": _batch_norm,
    "pad": _pad,
    "cast": _cast,
    "identity": lambda a: np.asarray(a["x"]),
    "constexpr_affine_dequantize": _affine_dequantize,
    "constexpr_blockwise_shift_scale": _blockwise_shift_scale,
}

#: Names of the MIL operations the interpreter executes (plus ``const`` and ``classify``).
SUPPORTED_OPS: tuple[str, ...] = tuple(sorted([*_OPS, "const", "classify"]))


@dataclass
class _ImageInput:
    name: str
    height: int
    width: int
    channels: int
    color_space: str


class MILProgram:
    """A saved Core ML ML Program, loaded with coremltools and executable with NumPy.

    Args:
        path: A ``.mlpackage`` folder.

    Raises:
        ExportError: The package is not an ML Program, has no image input or uses an operation the
            interpreter does not implement ("cannot validate: op X").
    """

    def __init__(self, path: str | Path):
        import coremltools as ct
        from coremltools.converters.mil.frontend.milproto import load as milproto

        self.path = Path(path)
        model = ct.models.MLModel(str(self.path), skip_model_load=True)
        spec = model.get_spec()
        if spec.WhichOneof("Type") != "mlProgram":
            raise ExportError(
                f"cannot validate {self.path}: it is a {spec.WhichOneof('Type')!r} model, not an ML Program; "
                "the NumPy interpreter runs ML Programs (.mlpackage) only"
            )
        self.spec = spec
        program = milproto.load(spec, spec.specificationVersion, model.weights_dir)
        self.function = program.functions["main"]
        self.operations = list(self.function.operations)
        unknown = sorted({op.op_type for op in self.operations} - set(SUPPORTED_OPS))
        if unknown:
            raise ExportError(
                f"cannot validate {self.path.name}: op {', '.join(unknown)} is not implemented in the MIL "
                f"interpreter (it implements {', '.join(SUPPORTED_OPS)}); add it to "
                "visioncascade/export/_mil_interpreter.py before trusting this artifact"
            )
        inputs = list(spec.description.input)
        if len(inputs) != 1 or inputs[0].type.WhichOneof("Type") != "imageType":
            raise ExportError(f"cannot validate {self.path.name}: expected one image input, got {inputs}")
        image = inputs[0].type.imageType
        space = type(image).ColorSpace.Name(image.colorSpace)
        self.image_input = _ImageInput(
            name=inputs[0].name,
            height=int(image.height),
            width=int(image.width),
            channels=1 if space.startswith("GRAYSCALE") else 3,
            color_space=space,
        )
        classify = [op for op in self.operations if op.op_type == "classify"]
        if len(classify) != 1:
            raise ExportError(
                f"cannot validate {self.path.name}: expected one classify op, found {len(classify)}"
            )
        self._classify = classify[0]
        self.classes = tuple(str(c) for c in self._classify.inputs["classes"].val)
        self.compute_dtypes = sorted(
            {
                str(_dtype_of(op.outputs[0]))
                for op in self.operations
                if op.op_type not in ("const", "classify")
            }
            - {"None"}
        )

    @property
    def op_types(self) -> dict[str, int]:
        """How many operations of each type the program holds."""
        counts: dict[str, int] = {}
        for op in self.operations:
            counts[op.op_type] = counts.get(op.op_type, 0) + 1
        return counts

    def image_to_tensor(self, images: np.ndarray) -> np.ndarray:
        """Turn ``(N, H, W, C)`` uint8/float pixels into the ``(N, C, H, W)`` float32 tensor Core ML feeds."""
        images = np.asarray(images)
        info = self.image_input
        expected = (info.height, info.width, info.channels)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ExportError(
                f"the Core ML image input takes (N, {info.height}, {info.width}, {info.channels}) "
                f"{info.color_space} images, got shape {images.shape}"
            )
        if info.color_space == "BGR":
            images = images[..., ::-1]
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)

    def predict(self, images: np.ndarray, chunk: int = 32) -> np.ndarray:
        """Class probabilities ``(N, K)`` for ``(N, H, W, C)`` images, in :attr:`classes` order.

        Images run ``chunk`` at a time (each op is batch-independent) to bound memory.
        """
        images = np.asarray(images)
        parts = [self._run(images[i : i + chunk]) for i in range(0, len(images), chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.classes)))

    def _run(self, images: np.ndarray) -> np.ndarray:
        env: dict[str, Any] = {self.image_input.name: self.image_to_tensor(images)}
        for op in self.operations:
            out = op.outputs[0]
            if op.op_type == "const":
                env[out.name] = out.val
                continue
            args = {key: self._resolve(value, env) for key, value in op.inputs.items()}
            if op.op_type == "classify":
                probs = np.asarray(args["probabilities"], dtype=np.float32)
                env["__probabilities__"] = probs.reshape(probs.shape[0], -1)
                continue
            fn = _OPS[op.op_type]
            try:
                result = fn(args)
            except ExportError:
                raise
            except Exception as exc:  # a bug or an unexpected attribute: never a silent pass
                raise ExportError(
                    f"cannot validate {self.path.name}: op {op.op_type} ({op.name}) failed in the MIL "
                    f"interpreter: {exc}"
                ) from exc
            dtype = _dtype_of(out)
            result = np.asarray(result)
            if dtype is not None:
                result = result.astype(dtype)
            env[out.name] = result
        if "__probabilities__" not in env:
            raise ExportError(f"cannot validate {self.path.name}: the program has no classify output")
        return env["__probabilities__"].astype(np.float64)

    @staticmethod
    def _resolve(value: Any, env: dict[str, Any]) -> Any:
        if isinstance(value, list | tuple):
            return [MILProgram._resolve(v, env) for v in value]
        if value.name in env:
            return env[value.name]
        if value.val is not None:
            return value.val
        raise ExportError(f"cannot validate: the MIL program uses {value.name!r} before it is computed")
