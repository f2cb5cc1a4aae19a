"""Core ML export: an ML Program ``.mlpackage`` (default) or a neural-network ``.mlmodel`` for old iOS.

The artifact has an **image input** (grayscale models get a grayscale image, RGB models an RGB one) with
``scale=1, bias=0`` — the model itself rescales raw 0..255 pixels — and a **classifier** output
(``classLabel`` + ``classLabel_probs``) over ``spec.labels``, so Apple's Vision framework can run it with
``VNCoreMLRequest`` and return ``VNClassificationObservation``\\ s. The spec JSON and the calibration
temperature (already applied in the softmax) travel in the model's metadata.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import keras

from visioncascade import __version__
from visioncascade.errors import ExportError
from visioncascade.export._common import check_precision, converter_error
from visioncascade.spec import ModelSpec

__all__ = [
    "COREML_FORMATS",
    "IOS_TARGETS",
    "SPEC_VERSIONS",
    "check_coreml_structure",
    "export_coreml",
    "resolve_ios_target",
]

COREML_FORMATS = ("mlprogram", "mlmodel")
IOS_TARGETS = ("iOS13", "iOS14", "iOS15", "iOS16", "iOS17", "iOS18")
#: The classifier's outputs, in both Core ML formats: the top label and the per-label probabilities.
LABEL_OUTPUT = "classLabel"
PROBABILITIES_OUTPUT = "classLabel_probs"
_META_SPEC = "visioncascade.spec"
_META_TEMPERATURE = "visioncascade.temperature"


def _quiet_coremltools() -> None:
    for name in ("coremltools", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


#: The Core ML specification version each minimum deployment target allows (coremltools' ``ct.target``).
SPEC_VERSIONS = {"iOS13": 4, "iOS14": 5, "iOS15": 6, "iOS16": 7, "iOS17": 8, "iOS18": 9}


def resolve_ios_target(coreml_format: str, ios_target: str | None, precision: str | None = None) -> str:
    """The minimum iOS target of a Core ML export (``ios_target`` or the format's default), checked.

    Raises :class:`ExportError` for an unknown format or target, a target the format cannot have, or a
    precision the target cannot run: int8 weight compression (``constexpr_affine_dequantize``) exists from
    iOS 16 on, so an int8 ML Program below iOS16 is refused rather than silently built for iOS 16.
    """
    if coreml_format not in COREML_FORMATS:
        raise ExportError(f"unknown Core ML format {coreml_format!r}; choose mlprogram or mlmodel")
    target = ios_target or ("iOS16" if coreml_format == "mlprogram" else "iOS13")
    if target not in IOS_TARGETS:
        raise ExportError(f"unknown iOS target {target!r}; choose one of {', '.join(IOS_TARGETS)}")
    number = int(target[3:])
    if coreml_format == "mlprogram" and number < 15:
        raise ExportError(
            f"an ML Program needs iOS 15 or later, got --ios-target {target}; "
            "pass --coreml-format mlmodel for older iOS versions"
        )
    if coreml_format == "mlmodel" and number > 15:
        raise ExportError(
            f"the neural-network .mlmodel format targets iOS 15 or earlier, got --ios-target {target}; "
            "use --coreml-format mlprogram for iOS 16+"
        )
    if coreml_format == "mlprogram" and precision == "int8" and number < 16:
        raise ExportError(
            f"Core ML int8 weight compression needs iOS 16 or later, got --ios-target {target}; "
            "pass --ios-target iOS16 (or later), or export at --precision fp16 for iOS 15"
        )
    return target


def export_coreml(
    model: keras.Model,
    path: str | Path,
    spec: ModelSpec,
    *,
    precision: str = "fp16",
    coreml_format: str = "mlprogram",
    ios_target: str | None = None,
) -> Path:
    """Convert ``model`` to Core ML and save it at ``path`` (``.mlpackage`` or ``.mlmodel``).

    Args:
        model: The Keras model (raw 0..255 NHWC input, probabilities out).
        path: Where to write; the suffix must match ``coreml_format``.
        spec: The run's spec (input size, colour mode, labels, metadata).
        precision: ``fp16`` (default: fp16 weights and compute), ``fp32``, or ``int8`` (8-bit symmetric
            weight compression of every weight tensor over 2048 elements, fp16 compute; ML Program only).
        coreml_format: ``mlprogram`` (iOS 15+, default iOS 16) or ``mlmodel`` (neural network, iOS 13+).
        ios_target: Minimum deployment target such as ``"iOS16"``.

    Returns:
        The written path.

    Raises:
        ExportError: Bad precision/format/target combination, or a layer the converter cannot handle.
    """
    _quiet_coremltools()
    import coremltools as ct

    path = Path(path)
    check_precision("coreml" if coreml_format == "mlprogram" else "coreml-mlmodel", precision)
    target = resolve_ios_target(coreml_format, ios_target, precision)
    suffix = ".mlpackage" if coreml_format == "mlprogram" else ".mlmodel"
    if path.suffix != suffix:
        raise ExportError(f"a Core ML {coreml_format} is saved as {suffix}, got path {path}")
    height, width = spec.input_size
    gray = spec.color_mode == "grayscale"
    image = ct.ImageType(
        name="image",
        shape=(1, height, width, spec.channels),
        scale=1.0,
        bias=0.0 if gray else [0.0, 0.0, 0.0],
        color_layout=ct.colorlayout.GRAYSCALE if gray else ct.colorlayout.RGB,
        channel_first=False,
    )
    kwargs: dict[str, Any] = {
        "inputs": [image],
        "classifier_config": ct.ClassifierConfig(list(spec.labels)),
        "convert_to": "mlprogram" if coreml_format == "mlprogram" else "neuralnetwork",
        "minimum_deployment_target": getattr(ct.target, target),
    }
    if coreml_format == "mlprogram":
        kwargs["compute_precision"] = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mlmodel = ct.convert(model, **kwargs)
    except Exception as exc:
        raise converter_error("coreml", model, exc) from exc
    if precision == "int8":
        from coremltools.optimize.coreml import (
            OpLinearQuantizerConfig,
            OptimizationConfig,
            linear_quantize_weights,
        )

        config = OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric"))
        mlmodel = linear_quantize_weights(mlmodel, config)
    elif precision == "fp16" and coreml_format == "mlmodel":
        from coremltools.models.neural_network import quantization_utils

        mlmodel = quantization_utils.quantize_weights(mlmodel, nbits=16)
    mlmodel = _name_probabilities(mlmodel)
    _set_metadata(mlmodel, spec, precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    mlmodel.save(str(path))
    return path


def _name_probabilities(mlmodel: Any) -> Any:
    """``mlmodel`` with its probabilities output named :data:`PROBABILITIES_OUTPUT`.

    The ML Program converter names it so already; the neural-network converter keeps the TensorFlow
    tensor's name (``Identity``), which the feature (and the layer writing it) is renamed from.
    """
    import coremltools as ct

    mspec = mlmodel.get_spec()
    name = mspec.description.predictedProbabilitiesName
    if name == PROBABILITIES_OUTPUT or mspec.WhichOneof("Type") == "mlProgram":
        return mlmodel  # an ML Program named otherwise fails the structure check, naming the output
    ct.utils.rename_feature(mspec, name, PROBABILITIES_OUTPUT)
    return ct.models.MLModel(mspec, skip_model_load=True)


def _set_metadata(mlmodel: Any, spec: ModelSpec, precision: str) -> None:
    extra = spec.extra or {}
    mlmodel.short_description = str(
        extra.get("description")
        or f"{spec.name}: {spec.architecture} classifier of {spec.input_size[0]}x{spec.input_size[1]} "
        f"{spec.color_mode} images into {', '.join(spec.labels)} (visioncascade)"
    )
    mlmodel.author = str(extra.get("author", "visioncascade"))
    mlmodel.license = str(
        extra.get("license") or extra.get("attribution") or "see the training data's license"
    )
    mlmodel.version = str(spec.version)
    height, width = spec.input_size
    mlmodel.input_description["image"] = (
        f"{spec.color_mode} image, {width}x{height} (width x height), raw 0..255 pixels; scale the whole frame "
        "to this size without keeping the aspect ratio (Vision: .scaleFill)"
    )
    labels = ", ".join(spec.labels) if len(spec.labels) <= 10 else f"{len(spec.labels)} labels"
    mlmodel.output_description[LABEL_OUTPUT] = f"the most probable label ({labels})"
    mlmodel.output_description[PROBABILITIES_OUTPUT] = (
        "the probability of each label, summing to 1 (softmax with the run's calibration applied)"
    )
    meta = mlmodel.user_defined_metadata
    meta[_META_SPEC] = spec.to_json()
    meta[_META_TEMPERATURE] = repr(float(spec.temperature))
    meta["visioncascade.temperature_applied"] = "true (inside the softmax)"
    meta["visioncascade.labels"] = json.dumps(list(spec.labels))
    meta["visioncascade.precision"] = precision
    meta["visioncascade.version"] = __version__
    meta["visioncascade.input"] = (
        f"{spec.color_mode} image {spec.input_size[1]}x{spec.input_size[0]} (width x height), raw 0..255 "
        f"pixels (scale 1, bias 0), resized with '{spec.preprocessing.get('resize', 'area')}'"
    )


def check_coreml_structure(
    path: str | Path, spec: ModelSpec, ios_target: str | None = None
) -> dict[str, Any]:
    """Check a saved Core ML model's interface against ``spec``; raise :class:`ExportError` on mismatch.

    Checks: a specification version that ``ios_target`` (the manifest's minimum iOS, when given) can
    load, one image input of ``spec.input_size`` with the colour layout of ``spec.color_mode``, no
    scale/bias preprocessing other than identity, a classifier output (``classLabel`` and
    ``classLabel_probs``) whose labels equal ``spec.labels``
    (in order), and metadata (spec JSON, temperature, author, license, version, a description of the input
    and of each output) that round-trips.
    Returns the facts checked, for the manifest.
    """
    _quiet_coremltools()
    import coremltools as ct

    path = Path(path)
    model = ct.models.MLModel(str(path), skip_model_load=True)
    mspec = model.get_spec()
    problems: list[str] = []
    inputs = list(mspec.description.input)
    facts: dict[str, Any] = {
        "type": mspec.WhichOneof("Type"),
        "specification_version": mspec.specificationVersion,
    }
    if ios_target is not None:
        allowed = SPEC_VERSIONS.get(ios_target)
        if allowed is None:
            problems.append(f"unknown iOS target {ios_target!r} (choose one of {', '.join(IOS_TARGETS)})")
        elif mspec.specificationVersion > allowed:
            needs = next(t for t, v in SPEC_VERSIONS.items() if v >= mspec.specificationVersion)
            problems.append(
                f"specification version {mspec.specificationVersion} needs {needs} or later, but the "
                f"recorded target is {ios_target}"
            )
    if len(inputs) != 1 or inputs[0].type.WhichOneof("Type") != "imageType":
        problems.append(f"expected one image input, got {[i.name for i in inputs]}")
    else:
        img = inputs[0].type.imageType
        space = type(img).ColorSpace.Name(img.colorSpace)
        want_space = "GRAYSCALE" if spec.color_mode == "grayscale" else "RGB"
        facts["input"] = {
            "name": inputs[0].name,
            "width": img.width,
            "height": img.height,
            "color_space": space,
        }
        if (img.height, img.width) != tuple(spec.input_size):
            problems.append(f"image input is {img.height}x{img.width}, spec says {spec.input_size}")
        if space != want_space:
            problems.append(
                f"image colour layout is {space}, spec's color_mode {spec.color_mode} needs {want_space}"
            )
    kind = mspec.WhichOneof("Type")
    if kind == "neuralNetworkClassifier":
        nn = mspec.neuralNetworkClassifier
        labels = tuple(nn.stringClassLabels.vector)
        for pre in nn.preprocessing:
            scaler = pre.scaler
            biases = (scaler.blueBias, scaler.greenBias, scaler.redBias, scaler.grayBias)
            if pre.WhichOneof("preprocessor") == "scaler" and (
                scaler.channelScale not in (0.0, 1.0) or any(b != 0 for b in biases)
            ):
                problems.append(f"image preprocessing is not identity (scale 1, bias 0): {scaler}")
    elif kind == "mlProgram":
        labels = tuple(str(c) for c in _program_classes(model, mspec))
    else:
        labels = ()
        problems.append(f"expected an ML Program or neural-network classifier, got {kind}")
    facts["labels"] = list(labels)
    if labels != tuple(spec.labels):
        problems.append(f"classifier labels {list(labels)} differ from the spec's {list(spec.labels)}")
    outputs = (mspec.description.predictedFeatureName, mspec.description.predictedProbabilitiesName)
    facts["outputs"] = {"label": outputs[0], "probabilities": outputs[1]}
    if not all(outputs):
        problems.append("the output is not a classifier (no predicted feature / probabilities names)")
    elif outputs != (LABEL_OUTPUT, PROBABILITIES_OUTPUT):
        problems.append(
            f"classifier outputs are named {outputs[0]!r} and {outputs[1]!r}, expected {LABEL_OUTPUT!r} "
            f"and {PROBABILITIES_OUTPUT!r}"
        )
    meta = dict(mspec.description.metadata.userDefined)
    try:
        round_trip = ModelSpec.from_json(meta.get(_META_SPEC, ""))
    except Exception as exc:  # ConfigError for missing/invalid JSON
        problems.append(f"metadata {_META_SPEC} does not hold the spec: {exc}")
    else:
        if round_trip != spec:
            problems.append("the spec in the Core ML metadata differs from the run's spec.json")
    if meta.get(_META_TEMPERATURE) != repr(float(spec.temperature)):
        problems.append(
            f"metadata temperature {meta.get(_META_TEMPERATURE)!r} != spec's {spec.temperature!r}"
        )
    md = mspec.description.metadata
    if not md.author or not md.license or md.versionString != str(spec.version) or not md.shortDescription:
        problems.append("author, license, version or description metadata is missing")
    undescribed = [f.name for f in [*inputs, *mspec.description.output] if not f.shortDescription]
    if undescribed:
        problems.append(f"input/output {', '.join(undescribed)} without a description")
    if problems:
        raise ExportError(f"Core ML structure check of {path.name} failed: " + "; ".join(problems))
    facts["metadata_keys"] = sorted(meta)
    return facts


def _program_classes(model: Any, mspec: Any) -> list[str]:
    """The ``classes`` of the ML Program's ``classify`` op (an inline value or a named const)."""
    function = mspec.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    values = {op.outputs[0].name: op.attributes["val"] for op in block.operations if op.type == "const"}
    for op in block.operations:
        if op.type == "classify":
            arg = op.inputs["classes"].arguments[0]
            value = arg.value if arg.HasField("value") else values.get(arg.name)
            if value is None:
                return []
            return [str(v.immediateValue.tensor.strings.values[0]) for v in value.immediateValue.list.values]
    return []
