"""``visioncascade demo``: the whole loop on the procedural world, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from visioncascade.demo import run_demo
from visioncascade.demo.scenes import SHAPES, render_video, scene


def test_scenes_are_deterministic_and_videos_match_their_truth(tmp_path: Path):
    a = scene(np.random.default_rng(3), 48, "circle", "red")
    b = scene(np.random.default_rng(3), 48, "circle", "red")
    assert a.shape == (48, 48, 3) and np.array_equal(a, b)
    truth = render_video(tmp_path / "v.mp4", seconds=1.0, fps=20.0)
    assert len(truth) == 20 and all(s is None or s in SHAPES for s, _ in truth)
    assert int(cv2.VideoCapture(str(tmp_path / "v.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 20


@pytest.mark.slow
def test_quick_demo_runs_the_whole_loop(tmp_path: Path):
    lines: list[str] = []
    result = run_demo(tmp_path / "demo", quick=True, progress=False, log=lines.append)
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
