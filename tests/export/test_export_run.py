"""Exporting a real trained run: artifacts executed for real and compared with Keras, manifest, validate."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter
from export_helpers import PARITY_IMAGES, make_run_folder, write_rgb_folder

from visioncascade.errors import ExportError
from visioncascade.export import (
    MILProgram,
    check_coreml_structure,
    export_onnx,
    export_run,
    export_sizes,
    validate_exports,
)
from visioncascade.export._common import artifact_sha256
from visioncascade.export._parity import artifact_predictor
from visioncascade.spec import ModelSpec

_LIMITS = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2}  # the documented limits, written out here


def _assert_flips_only_on_near_ties(result, entry: dict, parity_set) -> None:
    """Run the artifact on the parity frames and compare its top-1 with the Keras probabilities the test
    computed itself: every flip is on a frame where Keras's top two are within twice the precision's limit,
    and the manifest's record counts the flips and near ties that this finds."""
    frames, reference = parity_set
    predict, _ = artifact_predictor(result.out_dir / entry["file"], entry["format"])
    got = predict(frames.prepared)
    top_two = np.sort(reference, axis=1)[:, -2:]
    near_tie = top_two[:, 1] - top_two[:, 0] <= 2 * _LIMITS[entry["precision"]]
    flips = got.argmax(axis=1) != reference.argmax(axis=1)
    assert not (flips & ~near_tie).any(), f"{entry['file']} flips a frame Keras calls decisively"
    parity = entry["parity"]
    assert parity["images"] == len(reference)
    assert (parity["near_tie_flips"], parity["near_ties"]) == (int(flips.sum()), int(near_tie.sum()))
    assert parity["top1_agreement"] == pytest.approx(1 - flips.mean())


def _artifact(result, fmt: str, precision: str | None = None) -> dict:
    return next(
        a
        for a in result.artifacts
        if a["format"] == fmt and (precision is None or a["precision"] == precision)
    )


@pytest.mark.slow
def test_export_writes_every_artifact_with_manifest(exported, scratch_run, parity_set):
    out = exported.out_dir
    name = scratch_run.spec.name
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{name}.mlpackage", f"{name}.tflite", f"{name}.onnx", "manifest.json", "spec.json"]
    )
    assert not list(out.parent.glob(".exports.tmp-*")), "no temporary folder is left behind"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(exported.manifest))
    assert ModelSpec.load(out / "spec.json") == scratch_run.spec
    assert manifest["parity_frames"]["source_images"] == PARITY_IMAGES
    assert manifest["parity_frames"]["frames"] == 3 * PARITY_IMAGES  # gray, RGB camera, BGR OpenCV
    # The BGR frame's input is its RGB frame's (checked once), so each artifact runs 2 inputs per image.
    assert manifest["parity_frames"]["inputs"] == 2 * PARITY_IMAGES
    assert manifest["parity_frames"]["duplicate_frames"] == PARITY_IMAGES
    assert manifest["parity_frames"]["bgr_frames_checked"] == PARITY_IMAGES
    formats = {(a["format"], a["precision"]) for a in manifest["artifacts"]}
    assert formats == {("coreml", "fp16"), ("tflite", "fp32"), ("onnx", "fp32")}
    for entry in manifest["artifacts"]:
        path = out / entry["file"]
        assert entry["sha256"] == artifact_sha256(path)
        assert entry["bytes"] > 10_000
        assert entry["labels"] == list(scratch_run.spec.labels)
        assert entry["input"]["name"] == "image"
        parity = entry["parity"]
        assert parity["passed"] is True
        assert parity["images"] == 2 * PARITY_IMAGES
        assert parity["max_abs_diff"] <= {"fp32": 1e-4, "fp16": 1e-2}[entry["precision"]]
        _assert_flips_only_on_near_ties(exported, entry, parity_set)
        assert "worst_image" in parity
    coreml = _artifact(exported, "coreml")
    assert coreml["input"]["color_layout"] == "GRAYSCALE"
    assert coreml["parity"]["backend"].startswith("mil-numpy-interpreter")
    assert coreml["structure"]["labels"] == list(scratch_run.spec.labels)


@pytest.mark.slow
def test_tflite_and_onnx_run_for_real_match_keras(exported, parity_set):
    """Run the artifacts directly (LiteRT, onnxruntime), batch 1 and a dynamic batch, against Keras."""
    frames, reference = parity_set
    x = frames.prepared.astype(np.float32)
    interpreter = Interpreter(model_path=str(exported.out_dir / _artifact(exported, "tflite")["file"]))
    interpreter.allocate_tensors()
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert list(inp["shape_signature"][1:]) == [28, 28, 1] and inp["dtype"] == np.float32
    got = []
    for image in x:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        got.append(interpreter.get_tensor(outp["index"])[0])
    assert np.abs(np.array(got) - reference).max() <= 1e-4
    # By name, as an app's signature runner calls it: image in, probabilities out.
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["image"], "outputs": ["probabilities"]}
    }
    runner = interpreter.get_signature_runner("serving_default")
    named = runner(image=x[:1])["probabilities"]
    np.testing.assert_allclose(named[0], got[0], atol=1e-6)

    path = exported.out_dir / _artifact(exported, "onnx")["file"]
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in model.graph.input] == ["image"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batched = session.run(["probabilities"], {"image": x})[0]
    single = np.concatenate([session.run(None, {"image": x[i : i + 1]})[0] for i in range(5)])
    assert np.abs(batched - reference).max() <= 1e-4
    np.testing.assert_allclose(single, batched[:5], atol=1e-6)


@pytest.mark.slow
def test_coreml_package_executes_in_interpreter_and_has_vision_interface(exported, parity_set, scratch_run):
    import coremltools as ct

    frames, reference = parity_set
    path = exported.out_dir / _artifact(exported, "coreml")["file"]
    program = MILProgram(path)
    assert program.image_input.color_space == "GRAYSCALE"
    assert (program.image_input.height, program.image_input.width) == (28, 28)
    got = program.predict(frames.prepared)
    assert np.abs(got - reference).max() <= 1e-2
    assert np.mean(got.argmax(1) == reference.argmax(1)) >= 0.99
    facts = check_coreml_structure(path, scratch_run.spec)
    assert facts["type"] == "mlProgram"
    model = ct.models.MLModel(str(path), skip_model_load=True)
    meta = model.user_defined_metadata
    assert ModelSpec.from_json(meta["visioncascade.spec"]) == scratch_run.spec
    assert float(meta["visioncascade.temperature"]) == pytest.approx(scratch_run.spec.temperature)
    assert model.author and model.license and model.version == scratch_run.spec.version
    description = model.get_spec().description
    assert description.predictedFeatureName == "classLabel"
    assert description.predictedProbabilitiesName == "classLabel_probs"
    described = {f.name: f.shortDescription for f in [*description.input, *description.output]}
    assert described == {
        "image": "grayscale image, 28x28 (width x height), raw 0..255 pixels; scale the whole frame to this "
        "size without keeping the aspect ratio (Vision: .scaleFill)",
        "classLabel": "the most probable label (malignant, normal_benign)",
        "classLabel_probs": "the probability of each label, summing to 1 (softmax with the run's calibration "
        "applied)",
    }
    assert facts["outputs"] == {"label": "classLabel", "probabilities": "classLabel_probs"}
    assert description.input[0].type.imageType.colorSpace == description.input[0].type.imageType.GRAYSCALE


@pytest.mark.slow
def test_int8_artifacts_pass_their_limit(exported_int8, parity_set):
    for fmt in ("coreml", "tflite"):
        entry = _artifact(exported_int8, fmt, "int8")
        assert entry["file"].endswith(("-int8.mlpackage", "-int8.tflite"))
        assert entry["parity"]["passed"] and entry["parity"]["max_abs_diff"] <= 5e-2
        _assert_flips_only_on_near_ties(exported_int8, entry, parity_set)
    # int8 weights are smaller than fp16 / fp32 ones
    assert _artifact(exported_int8, "tflite")["bytes"] < 0.5 * 296_000
    assert _artifact(exported_int8, "tflite")["precision_detail"].startswith("dynamic-range int8")


@pytest.mark.slow
def test_validate_refuses_a_core_ml_artifact_newer_than_its_recorded_target(exported_int8, tmp_path):
    """The int8 .mlpackage is specification version 7 (iOS 16): a manifest saying iOS15 is not true."""
    copy = tmp_path / "exports"
    shutil.copytree(exported_int8.out_dir, copy)
    entry = _artifact(exported_int8, "coreml", "int8")
    assert entry["ios_target"] == "iOS16" and entry["structure"]["specification_version"] == 7
    manifest = json.loads((copy / "manifest.json").read_text())
    for item in manifest["artifacts"]:
        if item["file"] == entry["file"]:
            item["ios_target"] = "iOS15"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        ExportError,
        match=rf"{re.escape(entry['file'])} failed: specification version 7 needs iOS16 or later, but the "
        r"recorded target is iOS15",
    ):
        validate_exports(copy)


@pytest.mark.slow
def test_tflite_full_integer_int8_option(scratch_run, keras_model, parity_set, tmp_path):
    """Full-integer int8: int8 activations inside, float32 I/O, calibrated on the run's training images."""
    from visioncascade.export import export_tflite
    from visioncascade.export._parity import representative_images, run_dataset

    dataset, seed = run_dataset(scratch_run.run_dir)
    rep = representative_images(dataset, scratch_run.spec, limit=50, seed=seed)
    path = export_tflite(
        keras_model, tmp_path / "full.tflite", scratch_run.spec, precision="int8",
        representative_images=rep, int8_mode="full",
    )  # fmt: skip
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    dtypes = {t["dtype"] for t in interpreter.get_tensor_details()}
    assert np.int8 in dtypes
    frames, reference = parity_set
    from visioncascade.export import LiteRTRunner

    got = LiteRTRunner(path).predict(frames.prepared)
    assert np.abs(got - reference).max() < 0.15  # measured 0.02-0.08: why dynamic-range is the default
    with pytest.raises(ExportError, match="needs representative training images"):
        export_tflite(
            keras_model, tmp_path / "x.tflite", scratch_run.spec, precision="int8", int8_mode="full"
        )


def test_frames_are_app_like_and_bgr_equals_rgb(parity_set, scratch_run):
    frames, _ = parity_set
    kinds = [s.split(" ")[1] for s in frames.sources]
    assert kinds[:3] == ["gray-frame", "rgb-camera-frame", "bgr-opencv-frame"]
    assert frames.frames[0].ndim == 2 and frames.frames[1].shape[-1] == 3
    assert not np.array_equal(frames.frames[1][..., 0], frames.frames[1][..., 2]), "camera frame is coloured"
    np.testing.assert_array_equal(frames.frames[1], frames.frames[2][..., ::-1])
    # the OpenCV BGR frame, prepared with channel_order="bgr", is exactly the RGB frame's model input: it is
    # checked, and not given to the artifacts a second time
    from visioncascade.data import prepare_image

    spec = scratch_run.spec
    for i in range(0, len(frames.frames), 3):
        rgb, bgr = frames.frames[i + 1], frames.frames[i + 2]
        np.testing.assert_array_equal(
            prepare_image(rgb, spec.input_size, spec.color_mode),
            prepare_image(bgr, spec.input_size, spec.color_mode, channel_order="bgr"),
        )
    assert frames.bgr_checked == PARITY_IMAGES
    assert len(frames) == len(frames.prepared) == len(frames.input_sources) == 2 * PARITY_IMAGES
    assert len({x.tobytes() for x in frames.prepared}) == len(frames.prepared), "no input twice"
    assert {s.split(" ")[1] for s in frames.input_sources} == {"gray-frame", "rgb-camera-frame"}
    assert frames.prepared.shape[1:] == (*spec.input_size, 1)


@pytest.mark.slow
def test_validate_passes_then_catches_a_swapped_artifact(exported, tmp_path, scratch_run, keras_model):
    copy = tmp_path / "exports"
    shutil.copytree(exported.out_dir, copy)
    report = validate_exports(copy)
    assert report["passed"] and len(report["artifacts"]) == 3
    assert all(a["parity"]["max_abs_diff"] <= 1e-2 for a in report["artifacts"])

    # Swap the ONNX file for one from a perturbed model and fix up its sha256 in the manifest, so only the
    # parity proof can notice: it must name the artifact, the worst image and the difference.
    import keras

    perturbed = keras.models.clone_model(keras_model)
    weights = keras_model.get_weights()
    perturbed.set_weights([w * 1.3 if w.ndim == 2 else w for w in weights])  # scale the dense head
    entry_file = _artifact(exported, "onnx")["file"]
    export_onnx(perturbed, copy / entry_file, scratch_run.spec)
    manifest = json.loads((copy / "manifest.json").read_text())
    for entry in manifest["artifacts"]:
        if entry["file"] == entry_file:
            entry["sha256"] = artifact_sha256(copy / entry_file)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=rf"parity failed for {entry_file}.*max \|Δp\| .* on test\[\d+\]"):
        validate_exports(copy)


def _edit_manifest(copy, edit) -> None:
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.slow
def test_validate_catches_tampered_labels_and_stray_files(exported, tmp_path):
    """spec.json, the manifest's labels and each entry's labels must agree with the manifest's spec, and
    a file the manifest does not name (which a runtime would give this manifest's labels) is a problem."""
    labels = list(exported.manifest["spec"]["labels"])
    onnx_file = _artifact(exported, "onnx")["file"]

    def fresh(name: str):
        copy = tmp_path / name
        shutil.copytree(exported.out_dir, copy)
        return copy

    copy = fresh("spec")
    ModelSpec.load(copy / "spec.json").replace(labels=tuple(reversed(labels))).save(copy / "spec.json")
    with pytest.raises(ExportError, match=r"spec\.json differs from the spec in manifest\.json"):
        validate_exports(copy)

    copy = fresh("labels")
    _edit_manifest(copy, lambda m: m.update(labels=["cat", "dog"]))
    with pytest.raises(ExportError, match=r"manifest\.json's labels \['cat', 'dog'\] differ from its spec's"):
        validate_exports(copy)

    copy = fresh("entry")
    _edit_manifest(
        copy, lambda m: [a.update(labels=labels[::-1]) for a in m["artifacts"] if a["file"] == onnx_file]
    )
    with pytest.raises(ExportError, match=rf"{re.escape(onnx_file)}'s labels in manifest\.json"):
        validate_exports(copy)

    copy = fresh("stray")
    shutil.copy(copy / onnx_file, copy / "other-model.onnx")
    with pytest.raises(ExportError, match=r"holds other-model\.onnx, which manifest\.json does not name"):
        validate_exports(copy)


@pytest.mark.slow
def test_validate_with_a_wrong_run_is_an_error(exported, scratch_run, tmp_path):
    """An explicit --run that is not a run is refused, not replaced by the folder above the exports."""
    from visioncascade.errors import RunNotFoundError

    run = tmp_path / "run"
    shutil.copytree(scratch_run.run_dir, run, ignore=shutil.ignore_patterns("exports"))
    shutil.copytree(exported.out_dir, run / "exports")
    assert validate_exports(run / "exports", run_dir=run)["passed"]
    with pytest.raises(RunNotFoundError, match=rf"{re.escape(str(tmp_path / 'typo'))} is not a run folder"):
        validate_exports(run / "exports", run_dir=tmp_path / "typo")


@pytest.mark.slow
def test_validate_names_a_damaged_manifest_a_lost_run_and_an_edited_spec(exported, scratch_run, tmp_path):
    copy = tmp_path / "exports"
    shutil.copytree(exported.out_dir, copy)
    manifest_path = copy / "manifest.json"
    text = manifest_path.read_text()

    manifest_path.write_text(text[: len(text) // 2])  # a truncated copy
    with pytest.raises(ExportError, match=rf"^{re.escape(str(manifest_path))} is damaged \(not valid JSON: "):
        validate_exports(copy)
    no_spec = json.loads(text)
    del no_spec["spec"]
    manifest_path.write_text(json.dumps(no_spec))
    with pytest.raises(
        ExportError,
        match=r"is not a visioncascade export manifest \(it lacks spec\); it is damaged or another",
    ):
        validate_exports(copy)

    # The run moved (or the exports were copied elsewhere): say so, and what to pass.
    manifest_path.write_text(text)
    _edit_manifest(copy, lambda m: m.update(run_dir=str(tmp_path / "moved")))
    with pytest.raises(
        ExportError, match=r"no longer exists or lacks model\.keras.*; pass --run with the run"
    ):
        validate_exports(copy)
    assert validate_exports(copy, run_dir=scratch_run.run_dir)["passed"]

    # An edited manifest spec is the manifest's fault, not the run's.
    manifest_path.write_text(text)
    _edit_manifest(copy, lambda m: m["spec"].update(version="9.9"))
    with pytest.raises(ExportError) as failed:
        validate_exports(copy)
    message = str(failed.value)
    assert (
        f"the spec in {manifest_path} differs from the exports' spec.json and the run's spec.json" in message
    )
    assert "manifest.json was edited after export" in message
    assert "differs from the spec the exports were made from" not in message  # the run is not blamed
    assert "spec.json differs from the spec in" not in message


@pytest.mark.slow
def test_validate_catches_modified_bytes(exported, tmp_path):
    copy = tmp_path / "exports"
    shutil.copytree(exported.out_dir, copy)
    tflite = copy / _artifact(exported, "tflite")["file"]
    tflite.write_bytes(tflite.read_bytes() + b"\0")
    with pytest.raises(ExportError, match=r"\.tflite was modified after export"):
        validate_exports(copy)


def _truncate(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.slow
def test_validate_names_truncated_artifacts_instead_of_crashing(exported, tmp_path):
    """A half-copied .tflite / .onnx: its hash differs, so it is reported and not run."""
    copy = tmp_path / "exports"
    shutil.copytree(exported.out_dir, copy)
    names = [_artifact(exported, fmt)["file"] for fmt in ("tflite", "onnx")]
    for name in names:
        _truncate(copy / name)
    with pytest.raises(ExportError) as info:
        validate_exports(copy)
    message = str(info.value)
    for name in names:
        assert (
            f"{name} was modified after export (sha256 differs from the manifest); copy it again" in message
        )
    assert "parity failed" not in message and "cannot be loaded" not in message


@pytest.mark.slow
def test_validate_names_artifacts_their_runtime_cannot_load(exported, tmp_path):
    """A damaged artifact whose manifest hash was updated along with it reaches the runtime, which cannot
    load it: an ExportError naming the file, the runtime's complaint and the fix (not a raw traceback)."""
    copy = tmp_path / "exports"
    shutil.copytree(exported.out_dir, copy)
    names = [_artifact(exported, fmt)["file"] for fmt in ("tflite", "onnx")]
    manifest = json.loads((copy / "manifest.json").read_text())
    for entry in manifest["artifacts"]:
        if entry["file"] in names:
            _truncate(copy / entry["file"])
            entry["sha256"] = artifact_sha256(copy / entry["file"])
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError) as info:
        validate_exports(copy)
    message = str(info.value)
    for name in names:
        assert re.search(
            rf"{re.escape(name)} cannot be loaded or run \(\w+: .+\); the file is damaged or is not a "
            r"(tflite|onnx) model: export the run again",
            message,
        ), message


@pytest.mark.slow
def test_mlmodel_neural_network_format_structure_only(scratch_run, tmp_path):
    """The .mlmodel cannot run on Linux: the command says it was checked for structure only, not proven;
    its outputs are named as the ML Program's are (classLabel, classLabel_probs) and the check insists."""
    import coremltools as ct
    from typer.testing import CliRunner

    from visioncascade.cli import app

    out = tmp_path / "ex"
    result = CliRunner().invoke(
        app, ["export", str(scratch_run.run_dir), "--to", "coreml", "--coreml-format", "mlmodel",
              "--out", str(out), "--parity-images", "8"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "every artifact passed" not in text and "✓" not in text
    assert "0 proven by the parity proof, 1 checked for structure only (breastmnist-scratch.mlmodel: " \
        "Core ML cannot run on Linux" in text  # fmt: skip
    (entry,) = json.loads((out / "manifest.json").read_text())["artifacts"]
    assert entry["file"].endswith(".mlmodel") and entry["ios_target"] == "iOS13"
    assert entry["structure"]["type"] == "neuralNetworkClassifier"
    assert entry["structure"]["input"]["color_space"] == "GRAYSCALE"
    assert entry["parity"]["status"] == "structure-only" and entry["parity"]["proven"] is False
    assert entry["structure"]["outputs"] == {"label": "classLabel", "probabilities": "classLabel_probs"}
    path = out / entry["file"]
    mspec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    assert {o.name for o in mspec.description.output} == {"classLabel", "classLabel_probs"}
    assert mspec.neuralNetworkClassifier.labelProbabilityLayerName == "classLabel_probs"
    assert all(f.shortDescription for f in [*mspec.description.input, *mspec.description.output])
    # An .mlmodel whose probabilities keep the converter's name (as before) fails the structure check.
    ct.utils.rename_feature(mspec, "classLabel_probs", "Identity")
    ct.models.MLModel(mspec, skip_model_load=True).save(str(tmp_path / "old.mlmodel"))
    with pytest.raises(ExportError, match=r"outputs are named 'classLabel' and 'Identity', expected"):
        check_coreml_structure(tmp_path / "old.mlmodel", scratch_run.spec)
    ct.utils.rename_feature(mspec, "Identity", "classLabel_probs")
    mspec.description.input[0].shortDescription = ""
    ct.models.MLModel(mspec, skip_model_load=True).save(str(tmp_path / "undescribed.mlmodel"))
    with pytest.raises(ExportError, match=r"input/output image without a description"):
        check_coreml_structure(tmp_path / "undescribed.mlmodel", scratch_run.spec)


@pytest.mark.slow
def test_rgb_mobilenet_run_exports_and_proves_every_format(tmp_path, weights_035):
    """An RGB dataset (RGB camera + BGR OpenCV frames) through a MobileNetV2 with edges, all formats."""
    data = write_rgb_folder(tmp_path / "bars")
    run = make_run_folder(
        tmp_path / "run", data, "mobilenet_v2", 32, "rgb", edges=True, weights=str(weights_035)
    )
    result = export_run(run, "coreml,tflite,onnx", out=run / "exports", parity_images=8)
    kinds = result.manifest["parity_frames"]["frame_kinds"]
    assert kinds == {"rgb-camera-frame": 8, "bgr-opencv-frame": 8}
    assert result.manifest["parity_frames"]["inputs"] == 8  # the BGR frames give the RGB frames' inputs
    for entry in result.artifacts:
        assert entry["parity"]["passed"], entry
    assert _artifact(result, "coreml")["input"]["color_layout"] == "RGB"
    assert validate_exports(run / "exports")["passed"]


@pytest.mark.slow
def test_export_sizes_gives_bytes_of_three_artifacts(scratch_run, tmp_path):
    sizes = export_sizes(scratch_run.run_dir, tmp_path / "sizes")
    assert set(sizes) == {"coreml_fp16_bytes", "tflite_int8_bytes", "onnx_fp32_bytes"}
    assert all(isinstance(v, int) and v > 10_000 for v in sizes.values())
    assert sizes["tflite_int8_bytes"] < sizes["onnx_fp32_bytes"]
    # Some formats at a time (compare sizes Core ML in one worker task, the others in another): same bytes.
    assert export_sizes(scratch_run.run_dir, tmp_path / "tflite", formats=("tflite",)) == {
        "tflite_int8_bytes": sizes["tflite_int8_bytes"]
    }
    with pytest.raises(ExportError, match=r"unknown export format\(s\) 'tflite-int8'; choose from coreml"):
        export_sizes(scratch_run.run_dir, tmp_path / "bad", formats=("tflite-int8",))
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_export_sizes_can_prove_what_it_sizes(scratch_run, tmp_path):
    """compare sizes artifacts with their proofs: the same frames and limits as export, run for real."""
    sizes = export_sizes(scratch_run.run_dir, tmp_path / "sizes", formats=("onnx", "tflite"), prove=True)
    assert set(sizes) == {"tflite_int8_bytes", "tflite_int8_proof", "onnx_fp32_bytes", "onnx_fp32_proof"}
    onnx, tflite = sizes["onnx_fp32_proof"], sizes["tflite_int8_proof"]
    assert onnx["passed"] and onnx["limit"] == 1e-4 and 0 < onnx["max_abs_diff"] < 1e-4
    assert tflite["limit"] == 0.05 and tflite["max_abs_diff"] > 1e-4  # int8 differs, and it is measured
    # The scratch run's dynamic-range int8 TFLite is within int8's limit (as export_run finds, see
    # test_int8_artifacts_pass_their_limit): its proof here must say so.
    assert tflite["passed"] is True and tflite["max_abs_diff"] <= 0.05
    # The inputs the export's proof draws by default: BreastMNIST's 156 test images, 3 app frames each, of
    # which 2 distinct inputs (the BGR frame's is the RGB frame's).
    assert onnx["images"] == tflite["images"] == 2 * 156
