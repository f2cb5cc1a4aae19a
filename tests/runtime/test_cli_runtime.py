"""``visioncascade watch`` and ``predict`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2

from .test_cascade import _write_video, bar, empty, write_cascade


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "visioncascade.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_watch_json_summary_on_a_video(tmp_path: Path, cascade_runs):
    cascade = write_cascade(tmp_path, cascade_runs, {"hiking": {"model": "models/orientation"}})
    video = _write_video(tmp_path / "clip.mp4", 12)
    result = run_cli(
        "watch",
        str(cascade),
        "--source",
        str(video),
        "--context",
        "hiking",
        "--json",
        "--save",
        str(tmp_path / "out.mp4"),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["frames"] == 12 and summary["dropped"] == 0
    assert set(summary["latency_ms"]) == {"domain", "specialist", "cascade"}
    assert summary["events"]["produced"] >= 8
    assert int(cv2.VideoCapture(str(tmp_path / "out.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 12


def test_predict_json_and_errors(tmp_path: Path, cascade_runs):
    cascade = write_cascade(tmp_path, cascade_runs, {"hiking": {"model": "models/orientation"}})
    cv2.imwrite(str(tmp_path / "h.png"), cv2.cvtColor(bar("horizontal"), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "e.png"), empty())
    result = run_cli(
        "predict",
        str(cascade),
        str(tmp_path / "h.png"),
        str(tmp_path / "e.png"),
        "--context",
        "hiking",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    first, second = out["results"]
    assert first["decision"] == "event" and first["stages"][1]["top_label"] == "horizontal"
    assert first["event"]["stages"][0]["model"] == "domain"
    assert second["decision"] == "filtered"
    bad = run_cli("predict", str(cascade), str(tmp_path / "h.png"), "--context", "office")
    assert bad.returncode == 2 and "unknown context 'office'" in bad.stderr
    missing = run_cli("watch", str(tmp_path / "nope.yaml"), "--context", "x")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
