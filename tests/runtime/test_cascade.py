"""Cascades of real trained models on real frames (Keras backend here; exported backends in test_backends)."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from visioncascade.errors import ConfigError, DataError
from visioncascade.models import load_model, save_model
from visioncascade.runtime import Cascade, ContextSchedule, load_cascade_config, open_source, watch

from synthetic import make_shape_image


def write_cascade(folder: Path, runs: dict[str, Path], specialists: dict[str, dict], **extra) -> Path:
    """Copy the runs into ``folder/models`` and write ``folder/cascade.yaml`` (paths relative to it)."""
    models = folder / "models"
    models.mkdir(parents=True, exist_ok=True)
    for name, run in runs.items():
        if not (models / name).exists():
            shutil.copytree(run, models / name)
    doc = {
        "name": "test-cascade",
        "backend": "keras",
        "domain": {"model": "models/domain", "threshold": 0.5, "continue_on": ["object"]},
        "specialists": specialists,
        **extra,
    }
    path = folder / "cascade.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def bar(kind: str, size: int = 32, seed: int = 0) -> np.ndarray:
    return make_shape_image(kind, size, np.random.default_rng(seed), rgb=True)


def empty(size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(60, 20, (size, size, 3)).clip(0, 255).astype(np.uint8)


@pytest.fixture
def cascade_file(tmp_path: Path, cascade_runs) -> Path:
    return write_cascade(
        tmp_path,
        cascade_runs,
        {
            "hiking": {"model": "models/orientation"},
            "kitchen": {"model": "models/orientation", "threshold": 0.6},
        },
    )


def test_routing_events_and_payload(cascade_file: Path):
    cascade = Cascade.from_file(cascade_file)
    assert cascade.loaded_specialists == 0  # lazy
    result = cascade.run(bar("horizontal"), "hiking")
    assert [s.stage for s in result.stages] == ["domain", "hiking"]
    assert result.stages[0].top_label == "object" and result.stages[0].passed
    assert result.decision == "event" and result.stages[1].top_label == "horizontal"
    event = result.event
    uuid.UUID(event["event_id"])
    assert event["context"] == "hiking" and event["captured_at"].endswith("+00:00")
    assert [s["model"] for s in event["stages"]] == ["domain", "orientation"]
    for stage in event["stages"]:
        assert stage["version"] == "1" and len(stage["labels"]) == len(stage["probabilities"]) == 2
        assert sum(stage["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    assert cascade.run(bar("vertical", seed=3), "kitchen").stages[1].top_label == "vertical"
    assert cascade.loaded_specialists == 1  # both contexts share one model file
    nothing = cascade.run(empty(), "hiking")  # confidently "empty": passes stage 1 but may not continue
    assert nothing.stages[0].top_label == "empty" and nothing.stages[0].passed
    assert nothing.decision == "filtered" and len(nothing.stages) == 1 and nothing.event is None


def test_unknown_context_fails_clearly_and_default_catches_all(
    tmp_path: Path, cascade_file: Path, cascade_runs
):
    cascade = Cascade.from_file(cascade_file)
    with pytest.raises(
        ConfigError, match=r"unknown context 'office'.*known contexts: hiking, kitchen.*'default'"
    ):
        cascade.run(bar("horizontal"), "office")
    with_default = write_cascade(tmp_path / "d", cascade_runs, {"default": {"model": "models/orientation"}})
    result = Cascade.from_file(with_default).run(bar("horizontal"), "office")
    assert result.specialist == "default" and result.decision == "event"


def test_threshold_is_strict_exactly_half_does_not_pass(tmp_path: Path, cascade_runs):
    flat_dir = tmp_path / "flat"
    shutil.copytree(cascade_runs["orientation"], flat_dir)
    model = load_model(flat_dir)
    logits = model.get_layer("logits")
    logits.set_weights([np.zeros_like(w) for w in logits.get_weights()])  # softmax(0, 0) = exactly 0.5
    save_model(model, flat_dir / "model.keras")
    runs = {**cascade_runs, "flat": flat_dir}
    strict = write_cascade(tmp_path / "a", runs, {"x": {"model": "models/flat", "threshold": 0.5}})
    result = Cascade.from_file(strict).run(bar("horizontal"), "x")
    assert result.stages[1].top_probability == 0.5
    assert result.decision == "no_specialist" and result.event is None
    lenient = write_cascade(tmp_path / "b", runs, {"x": {"model": "models/flat", "threshold": 0.49}})
    assert Cascade.from_file(lenient).run(bar("horizontal"), "x").decision == "event"


def test_a_spec_whose_labels_do_not_fit_the_model_is_refused_when_it_loads(tmp_path: Path, cascade_runs):
    import json

    from visioncascade.errors import ModelError
    from visioncascade.runtime import load_predictor

    three = tmp_path / "models" / "three"
    shutil.copytree(cascade_runs["orientation"], three)
    spec = json.loads((three / "spec.json").read_text())
    spec["labels"] = ["horizontal", "vertical", "diagonal"]  # the model gives 2 probabilities
    (three / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(
        ModelError, match=rf"model {re.escape(str(three))} gives 2 probabilities .* its spec lists 3 labels"
    ):
        load_predictor(three)
    cascade = Cascade.from_file(write_cascade(tmp_path, cascade_runs, {"x": {"model": "models/three"}}))
    with pytest.raises(ModelError, match="gives 2 probabilities"):  # on its first frame, not an IndexError
        cascade.run(bar("horizontal"), "x")


def test_domain_labels_restrict_specialists(tmp_path: Path, cascade_runs):
    path = write_cascade(
        tmp_path, cascade_runs, {"x": {"model": "models/orientation", "domain_labels": ["empty"]}}
    )
    result = Cascade.from_file(path).run(bar("horizontal"), "x")
    assert result.decision == "filtered" and len(result.stages) == 1


def test_a_dozen_specialists_load_lazily_and_stay_cached(tmp_path: Path, cascade_runs):
    models = tmp_path / "models"
    for i in range(13):
        shutil.copytree(cascade_runs["orientation"], models / f"s{i}")
    specialists = {f"ctx{i}": {"model": f"models/s{i}"} for i in range(13)}
    cascade = Cascade.from_file(write_cascade(tmp_path, cascade_runs, specialists))
    frame = bar("vertical")
    for i in range(13):
        result = cascade.run(frame, f"ctx{i}")
        assert result.specialist == f"ctx{i}" and result.stages[1].top_label == "vertical"
    assert cascade.loaded_specialists == 13
    first = cascade.specialist("ctx0")[2]
    cascade.run(frame, "ctx0")
    assert cascade.specialist("ctx0")[2] is first and cascade.loaded_specialists == 13


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(colour="red"), r"colour: unknown key"),
        (lambda d: d["domain"].update(threshold=1.0), r"domain.threshold: Input should be less than 1"),
        (lambda d: d["domain"].update(threshold=0), r"domain.threshold: Input should be greater than 0"),
        (lambda d: d["specialists"]["hiking"].update(model="models/nope.onnx"), r"nope.onnx does not exist"),
        (lambda d: d["domain"].update(continue_on=["animal"]), r"\['animal'\] are not labels of the domain"),
        (lambda d: d.update(specialists={}), r"specialists: .*at least 1 item"),
        (lambda d: d["specialists"].update(office={}), r"specialists.office.model: Field required"),
        (lambda d: d.update(backend="tensorrt"), r"unknown backend 'tensorrt'"),
        (lambda d: d["domain"].update(threshold=True), r"domain.threshold: a number is needed, got true"),
        (
            lambda d: d["specialists"]["kitchen"].update(model=""),
            r"specialists.kitchen.model: the model path is empty; give the model file or run folder",
        ),
        (
            lambda d: d["specialists"].update({True: {"model": "models/orientation"}}),
            r"specialists: a key was read as true: YAML reads on, off, yes, no, true and false unquoted as true "
            r"or false; quote it \(e.g. 'on': ...\)",
        ),
        (
            lambda d: d.update(api={"url": "http://127.0.0.1:8000", "device_id": "d" * 129}),
            r"api.device_id: String should have at most 128 characters",
        ),
        (
            lambda d: d.update(backend="onnx"),
            r"domain.model: models/domain is a run folder, which the keras backend runs, but backend is "
            r"'onnx'; set backend: keras, or leave backend out",
        ),
        (
            lambda d: d["specialists"]["kitchen"].update(backend="litert"),
            r"specialists.kitchen.model: models/orientation is a run folder, which the keras backend runs, "
            r"but specialists.kitchen.backend is 'litert'; set specialists.kitchen.backend: keras",
        ),
    ],
    ids=[
        "unknown-key",
        "threshold-1",
        "threshold-0",
        "missing-model",
        "label-mismatch",
        "no-specialists",
        "context-without-model",
        "backend",
        "threshold-true",
        "empty-model",
        "yaml-boolean-context",
        "device-id-too-long",
        "backend-vs-run-folder",
        "specialist-backend-vs-run-folder",
    ],
)
def test_bad_cascade_files_fail_with_what_and_where(cascade_file: Path, change, message):
    doc = yaml.safe_load(cascade_file.read_text())
    change(doc)
    cascade_file.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=message):
        load_cascade_config(cascade_file)


def test_a_key_given_twice_is_an_error_not_the_last_one(cascade_file: Path):
    twice = cascade_file.with_name("twice.yaml")
    twice.write_text(
        "name: twice\n"
        "backend: keras\n"
        "domain: {model: models/domain}\n"
        "specialists:\n"
        "  hiking: &plain {model: models/orientation}\n"
        "  kitchen: {<<: *plain, threshold: 0.6}\n"  # a merged key may be overridden
        "  hiking: {model: models/orientation, threshold: 0.9}\n"
    )
    with pytest.raises(
        ConfigError, match=r"twice.yaml: the key 'hiking' is given twice in one mapping \(lines 5 and 7\)"
    ):
        load_cascade_config(twice)
    twice.write_text(twice.read_text().replace("  hiking: {model: models/orientation, threshold: 0.9}\n", ""))
    assert load_cascade_config(twice).specialists["kitchen"].threshold == 0.6
    twice.write_text(twice.read_text().replace("{model: models/orientation}", "{model: a, model: b}"))
    with pytest.raises(
        ConfigError, match=r"the key 'model' is given twice in one mapping \(both on line 5\)"
    ):
        load_cascade_config(twice)


def test_without_a_backend_each_model_gets_the_one_its_file_calls_for(cascade_file: Path):
    doc = yaml.safe_load(cascade_file.read_text())
    del doc["backend"]
    cascade_file.write_text(yaml.safe_dump(doc))
    config = load_cascade_config(cascade_file)
    assert config.backend == "auto"
    assert config.domain.backend == "keras"
    assert {stage.backend for stage in config.specialists.values()} == {"keras"}
    assert Cascade(config).run(bar("horizontal"), "hiking").decision == "event"


def _write_video(path: Path, frames: int, fps: float = 25.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for i in range(frames):
        rgb = bar("horizontal" if (i // 5) % 2 else "vertical", size=48, seed=i)
        writer.write(cv2.cvtColor(cv2.resize(rgb, (64, 48)), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_watch_a_video_file_with_changing_contexts(tmp_path: Path, cascade_file: Path):
    video = _write_video(tmp_path / "clip.mp4", 20)
    cascade = Cascade.from_file(cascade_file)
    source = open_source(video)
    stats = watch(
        cascade, source, ContextSchedule(["hiking", "kitchen"], switch_every=10), save=tmp_path / "o.mp4"
    )
    summary = stats.summary(source)
    assert summary["frames"] == 20 and summary["dropped"] == 0
    assert summary["events"]["produced"] == summary["decisions"].get("event", 0) > 10
    assert summary["latency_ms"]["cascade"]["p50"] > 0 and summary["latency_ms"]["domain"]["p99"] > 0
    annotated = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == 20


def test_a_video_that_cannot_be_saved_is_an_error_before_the_first_frame(tmp_path: Path, cascade_file: Path):
    cascade = Cascade.from_file(cascade_file)
    video = _write_video(tmp_path / "clip.mp4", 3)
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    bad = [
        (tmp_path / "out", ConfigError, r"out: name a file ending in \.mp4, \.m4v, \.mov, \.mkv, \.avi"),
        (tmp_path / "out.txt", ConfigError, r"out\.txt: name a file ending in \.mp4.*\(e\.g\. .*out\.mp4\)"),
        (tmp_path / "folder", ConfigError, r"folder: it is a folder; name a file in it"),
        (tmp_path / "notes.txt" / "o.mp4", DataError, r"o\.mp4: .*notes\.txt is a file, not a folder"),
        (Path("/proc/out.mp4"), DataError, r"/proc/out\.mp4: cannot write in the folder /proc"),
    ]
    for save, error, message in bad:
        source = open_source(video)
        with pytest.raises(error, match=message):
            watch(cascade, source, ContextSchedule(["hiking"]), save=save)
        assert source.read_frames == 0  # refused before the first frame
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cascade.yaml",
        "clip.mp4",
        "folder",
        "models",
        "notes.txt",
    ]
    assert not any((tmp_path / "folder").iterdir())
    tiny = tmp_path / "tiny"  # OpenCV's writer cannot open for a 1×1 first frame
    tiny.mkdir()
    cv2.imwrite(str(tiny / "a.png"), np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(DataError, match=r"o\.mp4: OpenCV cannot open a writer for 1×1 frames"):
        watch(cascade, open_source(tiny), ContextSchedule(["hiking"]), save=tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()
    deeper = tmp_path / "new" / "folders" / "o.mp4"  # folders are created
    watch(cascade, open_source(video), ContextSchedule(["hiking"]), save=deeper)
    assert int(cv2.VideoCapture(str(deeper)).get(cv2.CAP_PROP_FRAME_COUNT)) == 3


def test_live_sources_drop_frames_instead_of_queueing(tmp_path: Path, cascade_file: Path):
    video = _write_video(tmp_path / "fast.mp4", 60, fps=400.0)
    cascade = Cascade.from_file(cascade_file)
    source = open_source(video, realtime=True)

    def slow(frame, result, stats):
        time.sleep(0.02)  # inference "falls behind" a 400 fps source

    stats = watch(cascade, source, ContextSchedule(["hiking"]), on_result=slow)
    summary = stats.summary(source)
    assert summary["dropped"] > 0
    assert summary["frames"] + summary["dropped"] == source.read_frames == 60


def test_folder_source_and_bad_sources(tmp_path: Path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), bar("vertical", seed=i))
    frames = list(open_source(folder))
    assert len(frames) == 3 and frames[0].channel_order == "rgb"
    with pytest.raises(ConfigError, match="is not a camera index, an existing video file or folder"):
        open_source(tmp_path / "missing.mp4")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"notes\.txt is not a video file \(.*\) or a folder of images"):
        open_source(tmp_path / "notes.txt")


def _photo(path: Path, width: int, height: int, seed: int = 0, orientation: int | None = None) -> None:
    """A JPEG of a vertical bar scaled to ``width`` x ``height``, optionally with an EXIF orientation."""
    from PIL import Image

    image = Image.fromarray(cv2.resize(bar("vertical", seed=seed), (width, height)))
    tags = image.getexif()
    if orientation is not None:
        tags[0x0112] = orientation
    image.save(path, quality=92, exif=tags.tobytes())


def test_a_folder_skips_what_it_cannot_read_and_decodes_photos_reduced(tmp_path: Path):
    folder = tmp_path / "photos"
    folder.mkdir()
    _photo(folder / "a.jpg", 1200, 900)
    _photo(folder / "b.jpg", 1200, 900, seed=1, orientation=6)  # a portrait photo as a phone stores it
    (folder / "c.jpg").write_bytes(b"not a jpeg")
    (folder / "._a.jpg").write_bytes(b"\x00\x05\x16\x07")  # macOS's AppleDouble companion: not an image
    _photo(folder / "d.jpg", 400, 300, seed=2)
    source = open_source(folder, max_short_side=120)
    frames = list(source)
    assert [f.index for f in frames] == [0, 1, 3]  # c.jpg (index 2) skipped; ._a.jpg never listed
    assert [f.image.shape for f in frames] == [(120, 160, 3), (160, 120, 3), (120, 160, 3)]
    assert [(file.name, why) for file, why in source.unreadable] == [
        ("c.jpg", f"cannot read image {folder / 'c.jpg'}: cannot identify image file")
    ]
    assert source.unreadable_summary == f"cannot read image {folder / 'c.jpg'}: cannot identify image file"
    full = list(open_source(folder))
    assert full[0].image.shape == (900, 1200, 3) and full[1].image.shape == (1200, 900, 3)


@pytest.mark.timeout(60)
def test_a_live_source_whose_reader_fails_raises_instead_of_hanging():
    from visioncascade.runtime import FrameSource
    from visioncascade.runtime.sources import Frame

    calls = iter(range(3))

    def read():
        if next(calls) == 2:
            raise OSError("device unplugged")
        return Frame(bar("vertical"), "rgb", 0)

    source = FrameSource("flaky", read, live=True)
    with pytest.raises(OSError, match="device unplugged"):
        for _ in source:
            time.sleep(0.01)
    source.close()


def test_watch_saves_every_frame_of_a_folder_of_mixed_orientations(tmp_path: Path, cascade_file: Path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        _photo(folder / f"{i}.jpg", 320, 240, seed=i, orientation=6 if i % 2 else None)
    cascade = Cascade.from_file(cascade_file)
    source = open_source(folder, max_short_side=cascade.frame_cap)
    stats = watch(cascade, source, ContextSchedule(["hiking"]), save=tmp_path / "o.mp4")
    assert stats.summary(source)["frames"] == 6
    video = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 6  # portrait frames fitted, not dropped by OpenCV
    assert (video.get(cv2.CAP_PROP_FRAME_WIDTH), video.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (320, 240)
    ok, first = video.read()
    ok2, second = video.read()
    assert ok and ok2
    # The portrait frame is centred between black bars (below the annotation's lines at the top).
    assert second[60:, :40].max() < 30 and second[60:, -40:].max() < 30
    assert first[60:, :40].max() > 30


def test_frame_cap_covers_every_model_before_it_is_loaded(tmp_path: Path, cascade_runs):
    import json

    from visioncascade.data import load_cap

    cascade = Cascade.from_file(
        write_cascade(tmp_path, cascade_runs, {"hiking": {"model": "models/orientation"}})
    )
    assert cascade.frame_cap == load_cap(24) == 512  # 24-px models: the floor
    # A specialist with 200-px input, not loaded yet: its spec alone raises the cap to 4 x 200.
    shutil.copytree(tmp_path / "models" / "orientation", tmp_path / "models" / "big")
    spec_file = tmp_path / "models" / "big" / "spec.json"
    spec = json.loads(spec_file.read_text())
    spec["input_size"] = [200, 200]
    spec_file.write_text(json.dumps(spec))
    specialists = {"hiking": {"model": "models/orientation"}, "city": {"model": "models/big"}}
    cascade = Cascade.from_file(write_cascade(tmp_path, cascade_runs, specialists))
    assert cascade.frame_cap == 800 and cascade.loaded_specialists == 0


@pytest.mark.parametrize("source", ["²", "٣", "①"])
def test_a_digit_that_is_not_ascii_is_not_a_camera_index(source: str):
    with pytest.raises(ConfigError, match=f"source '{source}' is not a camera index"):
        open_source(source)


def test_missing_camera_and_stream_fail_clearly():
    with pytest.raises(DataError, match="cannot open camera 7"):
        open_source(7)
    with pytest.raises(DataError, match=r"cannot open stream 'rtsp://127\.0\.0\.1:9/none'"):
        open_source("rtsp://127.0.0.1:9/none")
