"""The cascade on exported artifacts: onnxruntime and LiteRT give the Keras reference's answers."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from visioncascade.errors import ConfigError, ModelError
from visioncascade.export import export_run
from visioncascade.runtime import Cascade, find_spec, load_cascade_config, load_predictor

from .test_cascade import bar, empty


@pytest.fixture(scope="session")
def exported(cascade_runs, tmp_path_factory) -> dict[str, Path]:
    """Each cascade run exported to TFLite and ONNX (fp32), parity-proven by export_run."""
    root = tmp_path_factory.mktemp("exported")
    out = {}
    for name, run in cascade_runs.items():
        result = export_run(run, ["tflite", "onnx"], out=root / name, parity_images=20)
        out[name] = result.out_dir
    return out


def _cascade_file(folder: Path, exported: dict[str, Path], backend: str, suffix: str) -> Path:
    doc = {
        "name": f"{backend}-cascade",
        "backend": backend,
        "domain": {"model": str(exported["domain"] / f"domain.{suffix}"), "continue_on": ["object"]},
        "specialists": {
            "hiking": {"model": str(exported["orientation"] / f"orientation.{suffix}")},
        },
    }
    path = folder / f"{backend}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(("backend", "suffix"), [("onnx", "onnx"), ("litert", "tflite")])
def test_exported_backends_match_keras(tmp_path: Path, exported, cascade_runs, backend: str, suffix: str):
    reference = Cascade.from_file(_write_keras(tmp_path, cascade_runs))
    cascade = Cascade.from_file(_cascade_file(tmp_path, exported, backend, suffix))
    assert cascade.domain.backend == backend
    frames = [bar("horizontal", seed=i) for i in range(4)] + [bar("vertical", seed=9), empty(seed=2)]
    for frame in frames:
        got, want = cascade.run(frame, "hiking"), reference.run(frame, "hiking")
        assert got.decision == want.decision
        for a, b in zip(got.stages, want.stages, strict=True):
            np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-4)
            assert a.labels == b.labels and a.model == b.model


def _write_keras(folder: Path, runs: dict[str, Path]) -> Path:
    doc = {
        "name": "keras-cascade",
        "backend": "keras",
        "domain": {"model": str(runs["domain"]), "continue_on": ["object"]},
        "specialists": {"hiking": {"model": str(runs["orientation"])}},
    }
    path = folder / "keras.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_spec_is_found_beside_exported_artifacts(exported, tmp_path: Path):
    onnx = exported["domain"] / "domain.onnx"
    assert find_spec(onnx).labels == ("empty", "object")
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(onnx, lonely)
    with pytest.raises(ConfigError, match=r"no ModelSpec found for .*lonely\.onnx"):
        load_predictor(lonely)
    shutil.copy(exported["domain"] / "spec.json", tmp_path / "lonely.onnx.spec.json")
    assert load_predictor(lonely).spec.labels == ("empty", "object")
    with pytest.raises(ConfigError, match=r"backend 'litert' cannot run domain\.onnx"):
        load_predictor(onnx, backend="litert")
    package = tmp_path / "m.mlpackage"
    package.mkdir()
    if sys.platform != "darwin":
        with pytest.raises(ConfigError, match="runs only on macOS"):
            load_predictor(package)


@pytest.mark.parametrize(
    ("file", "text", "words"),
    [
        ("manifest.json", "{not json", r"manifest\.json is not valid JSON \(Expecting property name"),
        ("manifest.json", "[1, 2]", r"manifest\.json is not a visioncascade manifest"),
        (
            "manifest.json",
            '{"spec": {"labels": 5}}',
            r"manifest\.json: spec lacks the fields \['architecture'",
        ),
        ("spec.json", '{"labels": 5}', r"spec\.json: spec lacks the fields \['architecture', 'color_mode'"),
        (
            "spec.json",
            '{"name": "m", "labels": 5, "input_size": [24, 24], "color_mode": "rgb", "architecture": "scratch"}',
            r"spec\.json: spec labels must be a list of names, got 5",
        ),
        (
            "m.onnx.spec.json",
            '{"name": "m", "labels": ["a", "b"], "input_size": 24, "color_mode": "rgb", "architecture": "s"}',
            r"m\.onnx\.spec\.json: spec input_size must be \[height, width\] in pixels, got 24",
        ),
        (
            "spec.json",
            '{"name": "m", "labels": ["a", "b"], "input_size": [24, 24], "color_mode": "rgb", '
            '"architecture": "s", "temperature": "hot"}',
            r"spec\.json: spec has a field of the wrong type",
        ),
    ],
    ids=[
        "manifest-not-json",
        "manifest-a-list",
        "manifest-spec",
        "spec-lacks",
        "labels-5",
        "size-24",
        "temp",
    ],
)
def test_a_broken_spec_or_manifest_is_a_config_error_naming_the_file(tmp_path: Path, file, text, words):
    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(b"not read: the spec is looked up first")
    (tmp_path / file).write_text(text)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path))}/{words}"):
        find_spec(artifact)


@pytest.mark.parametrize(("backend", "suffix"), [("onnx", "onnx"), ("litert", "tflite")])
def test_a_damaged_artifact_is_a_model_error_naming_the_file(exported, tmp_path: Path, backend, suffix):
    """A half-copied artifact: the runtime's own complaint, in the project's error naming the file."""
    artifact = exported["domain"] / f"domain.{suffix}"
    damaged = tmp_path / f"damaged.{suffix}"
    damaged.write_bytes(artifact.read_bytes()[: artifact.stat().st_size // 2])
    shutil.copy(exported["domain"] / "spec.json", tmp_path / f"damaged.{suffix}.spec.json")
    with pytest.raises(
        ModelError,
        match=rf"cannot load {re.escape(str(damaged))} with the {backend} backend \(\w+: .+\); the file is "
        "damaged or is not such a model: copy or export it again",
    ):
        load_predictor(damaged)


def test_a_backend_that_cannot_run_the_files_is_reported_when_the_cascade_is_read(tmp_path: Path, exported):
    """backend: onnx over .tflite files fails on reading the file, for the domain and every specialist;
    without a backend, each model's comes from its file."""
    path = _cascade_file(tmp_path, exported, "onnx", "tflite")
    with pytest.raises(ConfigError) as info:
        load_cascade_config(path)
    message = str(info.value)
    for where, model in [("domain", "domain"), ("specialists.hiking", "orientation")]:
        assert (
            f"{where}.model: {exported[model] / (model + '.tflite')} is a .tflite file, which the litert backend "
            "runs, but backend is 'onnx'; set backend: litert, or leave backend out" in message
        ), message
    doc = yaml.safe_load(path.read_text())
    del doc["backend"]
    path.write_text(yaml.safe_dump(doc))
    config = load_cascade_config(path)
    assert config.domain.backend == config.specialists["hiking"].backend == "litert"
    assert Cascade(config).specialist("hiking")[2].backend == "litert"


@pytest.mark.parametrize(("module", "suffix"), [("onnxruntime", "onnx"), ("ai_edge_litert", "tflite")])
def test_a_missing_runtime_package_says_which_extra_to_install(exported, monkeypatch, module, suffix):
    artifact = next(exported["domain"].glob(f"*.{suffix}"))
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # what `import` sees when the package is not installed
    with pytest.raises(
        ConfigError, match=r"needs the Python package .*pip install 'visioncascade\[export\]'"
    ):
        load_predictor(artifact)


@pytest.mark.parametrize(("backend", "suffix"), [("onnx", "onnx"), ("litert", "tflite")])
def test_exported_cascades_run_without_tensorflow(tmp_path: Path, exported, backend: str, suffix: str):
    """A cascade of exported models, its predictors and the API's app start without importing TensorFlow
    (seconds and hundreds of MB per process: every `predict`, `watch` and `serve` worker would pay it)."""
    import subprocess

    cascade = _cascade_file(tmp_path, exported, backend, suffix)
    frame = tmp_path / "frame.npy"
    np.save(frame, bar("horizontal"))  # an object, horizontal: an event (test_exported_backends_match_keras)
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from visioncascade.runtime import Cascade\n"
        "from visioncascade.api.app import create_app\n"
        f"result = Cascade.from_file({str(cascade)!r}).run(np.load({str(frame)!r}), 'hiking')\n"
        "print(result.decision, result.labels, sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "event ('object', 'horizontal') []"
