"""``visioncascade demo``: the whole loop on the procedural world, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from visioncascade.demo.scenes import SHAPES, render_video, scene, video_frames


def test_scenes_are_deterministic_and_videos_match_their_truth(tmp_path: Path):
    a = scene(np.random.default_rng(3), 48, "circle", "red")
    b = scene(np.random.default_rng(3), 48, "circle", "red")
    assert a.shape == (48, 48, 3) and np.array_equal(a, b)
    truth = render_video(tmp_path / "v.mp4", seconds=1.0, fps=20.0)
    assert len(truth) == 20 and all(s is None or s in SHAPES for s, _ in truth)
    assert int(cv2.VideoCapture(str(tmp_path / "v.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 20


def test_y4m_videos_play_in_chromiums_fake_camera_format(tmp_path: Path):
    truth = render_video(tmp_path / "v.y4m", seconds=1.0, fps=10.0, size=(64, 48), seed=2)
    data = (tmp_path / "v.y4m").read_bytes()
    header, _, body = data.partition(b"\n")
    assert header == b"YUV4MPEG2 W64 H48 F10:1 Ip A1:1 C420jpeg"
    frame_bytes = 64 * 48 * 3 // 2
    assert len(body) == len(truth) * (len(b"FRAME\n") + frame_bytes) and len(truth) == 10
    first = np.frombuffer(body[6 : 6 + frame_bytes], np.uint8).reshape(48 * 3 // 2, 64)
    rgb = cv2.cvtColor(first, cv2.COLOR_YUV2RGB_I420)
    expected = next(video_frames(1.0, 10.0, (64, 48), seed=2))[0]
    # 4:2:0 halves the chroma of per-pixel noise (~8 levels off); a wrong plane layout is ~50 off.
    assert np.abs(rgb.astype(int) - expected.astype(int)).mean() < 12
    with pytest.raises(ValueError, match="even"):
        render_video(tmp_path / "odd.y4m", seconds=0.1, size=(63, 48))


@pytest.mark.slow
def test_quick_demo_runs_the_whole_loop(quick_demo):
    result, lines = quick_demo
    summary = result.summary
    assert [line.split()[0] for line in lines][:2] == ["1/6", "2/6"] and lines[-1].startswith("6/6")
    for name in ("domain", "shape", "colour"):
        assert summary["models"][name]["accuracy"] >= 0.8, summary["models"][name]
        assert set(summary["exported_bytes"][name]) == {f"{name}.onnx", f"{name}.tflite"}
    events = summary["events"]
    assert events["produced"] > 0 and events["posted"] > 0
    assert (
        events["stored"] == events["posted"] and events["dropped"] == 0
    )  # every acknowledged event is stored
    assert summary["outputs_by_rule"]  # the API answered with rule-chosen outputs
    assert summary["watch"]["frames"] + summary["watch"]["dropped"] == 180
    out = result.out_dir
    for name in ("summary.json", "summary.html", "cascade.yaml", "rules.yaml", "annotated.mp4", "events.db"):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text())["events"]["stored"] == events["stored"]


@pytest.mark.slow
def test_the_demos_runs_evaluate_and_export_where_the_demo_left_them(quick_demo, tmp_path: Path):
    """The demo trains in a temporary folder that is then moved into place: its runs still find their data."""
    from visioncascade.experiment import evaluate_run
    from visioncascade.export import export_run

    result, _ = quick_demo
    run = result.out_dir / "runs" / "colour"
    evaluated = evaluate_run(run, out=tmp_path / "ev")
    stored = json.loads((run / "metrics.json").read_text())["test"]
    assert evaluated.metrics["accuracy"] == pytest.approx(stored["accuracy"])
    notes = evaluated.metrics["data"]["notes"]
    assert len(notes) == 1 and f"found it beside the run at {result.out_dir / 'data' / 'colour'}" in notes[0]
    exported = export_run(run, ["onnx"], out=tmp_path / "exports", parity_images=8)  # parity needs the data
    assert [a["file"] for a in exported.manifest["artifacts"]] == ["colour.onnx"]
