"""``visioncascade watch`` and ``predict`` as a user runs them."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from api.conftest import LiveServer, count_rows
from visioncascade.api.storage import upgrade_database

from .test_cascade import _write_video, bar, empty, write_cascade


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "visioncascade.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=None if env is None else {**os.environ, **env},
    )


def _events_server(tmp_path: Path) -> tuple[str, LiveServer]:
    """An API started on a fresh SQLite file (development settings, no practical rate limit): its URL, it."""
    database = f"sqlite:///{tmp_path / 'events.db'}"
    upgrade_database(database)
    server = LiveServer(
        database, environment="development", rate_limit_per_second=1e5, rate_limit_burst=100000
    )
    server.start()
    return database, server


def test_watch_stopped_by_an_error_still_posts_the_events_it_queued(tmp_path: Path, cascade_runs):
    """A specialist whose model is damaged fails when its context first comes, midway through the video:
    the events queued before are still sent to the API, and the user is told so."""
    database, server = _events_server(tmp_path)
    try:
        broken = tmp_path / "broken"
        shutil.copytree(cascade_runs["orientation"], broken)
        model = broken / "model.keras"
        model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
        cascade = write_cascade(
            tmp_path,
            {**cascade_runs, "broken": broken},
            {"hiking": {"model": "models/orientation"}, "kitchen": {"model": "models/broken"}},
            api={"url": server.base_url, "key_env": "VC_TEST_INGEST_KEY", "min_interval_s": 0.0},
        )
        video = _write_video(tmp_path / "clip.mp4", 12)
        result = run_cli(
            "watch", str(cascade), "--source", str(video), "--context", "hiking", "--context", "kitchen",
            "--switch-every", "6",
            env={"VC_TEST_INGEST_KEY": server.key("ingest")},
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert re.search(r"error: cannot load .*broken with the keras backend", result.stderr), result.stderr
        posted = re.search(
            r"watch stopped on an error; the (\d+) event\(s\) queued before it were posted to "
            + re.escape(server.base_url),
            result.stderr,
        )
        assert posted, result.stderr
        assert int(posted[1]) >= 1 and count_rows(database) == int(posted[1])
    finally:
        server.stop()


def test_watch_json_summary_on_a_video(tmp_path: Path, cascade_runs):
    cascade = write_cascade(tmp_path, cascade_runs, {"hiking": {"model": "models/orientation"}})
    video = _write_video(tmp_path / "clip.mp4", 12)
    watch = ["watch", str(cascade), "--source", str(video), "--context", "hiking"]
    result = run_cli(*watch, "--json", "--save", str(tmp_path / "out.mp4"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["frames"] == 12 and summary["dropped"] == 0
    assert set(summary["latency_ms"]) == {"domain", "specialist", "cascade"}
    assert summary["events"]["produced"] >= 8
    assert int(cv2.VideoCapture(str(tmp_path / "out.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    (tmp_path / "notes.txt").write_text("x")
    for save, message in [
        ("notes.txt/out.mp4", "notes.txt is a file, not a folder"),
        ("out.txt", "name a file ending in .mp4"),
    ]:
        bad = run_cli(*watch, "--save", str(tmp_path / save))
        assert bad.returncode == 2 and bad.stderr.startswith(
            f"error: cannot save the video as {tmp_path / save}: "
        )
        assert message in bad.stderr and len(bad.stderr.splitlines()) == 1, bad.stderr


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


def test_predict_runs_the_readable_images_and_names_the_others(tmp_path: Path, cascade_runs):
    cascade = write_cascade(tmp_path, cascade_runs, {"hiking": {"model": "models/orientation"}})
    cv2.imwrite(str(tmp_path / "h.png"), cv2.cvtColor(bar("horizontal"), cv2.COLOR_RGB2BGR))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    args = [str(tmp_path / n) for n in ("broken.jpg", "h.png", "gone.jpg")]
    result = run_cli("predict", str(cascade), *args, "--context", "hiking", "--json")
    assert result.returncode == 2, result.stderr
    broken, good, gone = json.loads(result.stdout)["results"]
    assert good["decision"] == "event" and good["stages"][1]["top_label"] == "horizontal"
    assert broken == {"image": args[0], "error": f"cannot read image {args[0]}: cannot identify image file"}
    assert gone == {"image": args[2], "error": f"cannot read image {args[2]}: No such file or directory"}
    text = run_cli("predict", str(cascade), *args, "--context", "hiking")
    assert text.returncode == 2
    lines = text.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{args[1]}: event (domain: object ")
    assert f"error: cannot read image {args[2]}: No such file or directory" in text.stderr


def test_watch_a_folder_of_photos(tmp_path: Path, cascade_runs):
    from PIL import Image

    cascade = write_cascade(tmp_path, cascade_runs, {"hiking": {"model": "models/orientation"}})
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, kind in enumerate(["horizontal", "vertical", "horizontal"]):
        Image.fromarray(cv2.resize(bar(kind, seed=i), (1200, 900))).save(folder / f"{i}.jpg", quality=92)
    (folder / "3.jpg").write_bytes(b"truncated")
    result = run_cli(
        "watch", str(cascade), "--source", str(folder), "--context", "hiking", "--no-post",
        "--save", str(tmp_path / "out.mp4"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "3 frames (0 dropped)" in result.stderr
    assert f"warning: skipped 1 unreadable image(s): cannot read image {folder / '3.jpg'}" in result.stderr
    video = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    # Decoded as training keeps photos (shorter side load_cap(24) = 512, so 683 x 512), not at 1200 x 900;
    # MPEG-4 part 2 codes an even width.
    assert (video.get(cv2.CAP_PROP_FRAME_WIDTH), video.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (682, 512)
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    as_json = run_cli(
        "watch", str(cascade), "--source", str(folder), "--context", "hiking", "--no-post", "--json"
    )
    summary = json.loads(as_json.stdout)
    assert summary["frames"] == 3 and summary["unreadable"] == 1
    assert f"warning: skipped 1 unreadable image(s): cannot read image {folder / '3.jpg'}" in as_json.stderr
    for image in folder.glob("[0-2].jpg"):  # nothing readable left: an error, not an empty summary
        image.write_bytes(b"not a jpeg")
    none = run_cli("watch", str(cascade), "--source", str(folder), "--context", "hiking", "--no-post")
    assert none.returncode == 2 and none.stderr.startswith(
        f"error: none of the 4 image(s) in {folder} could be read"
    )


def _bars(folder: Path, count: int) -> list[str]:
    """``count`` PNGs of bars the cascade turns into events."""
    paths = []
    for i in range(count):
        path = folder / f"bar{i}.png"
        cv2.imwrite(
            str(path), cv2.cvtColor(bar("horizontal" if i % 2 else "vertical", seed=i), cv2.COLOR_RGB2BGR)
        )
        paths.append(str(path))
    return paths


def test_predict_posts_the_event_of_every_image_and_fails_when_one_is_not_delivered(
    tmp_path: Path, cascade_runs
):
    database, server = _events_server(tmp_path)
    api = {"url": server.base_url, "key_env": "VC_TEST_INGEST_KEY"}  # min_interval_s: 1 s by default
    cascade = write_cascade(tmp_path, cascade_runs, {"hiking": {"model": "models/orientation"}}, api=api)
    images = _bars(tmp_path, 3)
    env = {"VC_TEST_INGEST_KEY": server.key("ingest")}
    try:
        result = run_cli("predict", str(cascade), *images, "--context", "hiking", "--post", "--json", env=env)
        assert result.returncode == 0, result.stderr
        results = json.loads(result.stdout)["results"]
        assert [r["decision"] for r in results] == ["event"] * 3
        assert [r["api"]["event_id"] for r in results] == [r["event"]["event_id"] for r in results]
        assert count_rows(database) == 3
    finally:
        server.stop()
    down = run_cli("predict", str(cascade), *images, "--context", "hiking", "--post", "--json", env=env)
    assert down.returncode == 2
    assert [r["decision"] for r in json.loads(down.stdout)["results"]] == ["event"] * 3
    assert (
        f"error: 3 of 3 event(s) were not delivered to {server.base_url}: 3 not taken before the end (cannot reach "
        in down.stderr
    )
    assert count_rows(database) == 3


def test_post_without_an_api_section_is_an_error(tmp_path: Path, cascade_runs):
    cascade = write_cascade(tmp_path, cascade_runs, {"hiking": {"model": "models/orientation"}})
    images = _bars(tmp_path, 1)
    predict = run_cli("predict", str(cascade), *images, "--context", "hiking", "--post")
    watch = run_cli("watch", str(cascade), "--source", str(tmp_path), "--context", "hiking", "--post")
    for result in (predict, watch):
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"error: --post needs an api section in {cascade}"), result.stderr
    assert run_cli("watch", str(cascade), "--source", str(tmp_path), "--context", "hiking").returncode == 0


def test_events_the_api_refuses_are_reported_with_its_reason_and_fail_the_run(tmp_path: Path, cascade_runs):
    database, server = _events_server(tmp_path)
    try:
        api = {"url": server.base_url, "key_env": "VC_TEST_INGEST_KEY", "min_interval_s": 0.0}
        specialists = {"default": {"model": "models/orientation"}}
        cascade = write_cascade(tmp_path, cascade_runs, specialists, api=api)
        video = _write_video(tmp_path / "clip.mp4", 6)
        wrong_key = {"VC_TEST_INGEST_KEY": "vc_not-a-key"}
        watch = run_cli("watch", str(cascade), "--source", str(video), "--context", "hiking", env=wrong_key)
        predict = run_cli(
            "predict", str(cascade), *_bars(tmp_path, 2), "--context", "hiking", "--post", env=wrong_key
        )
        for result in (watch, predict):
            assert result.returncode == 2, result.stderr
            refused = re.search(
                r"error: (\d+) of \1 event\(s\) were not delivered to .*: \1 refused by the API \(",
                result.stderr,
            )
            assert refused and int(refused[1]) >= 2 and "401" in result.stderr, result.stderr
        assert count_rows(database) == 0
        # A context the API would refuse in every event fails before the first frame; without posting it
        # only routes frames (here to the default specialist).
        long = "c" * 129
        env = {"VC_TEST_INGEST_KEY": server.key("ingest")}
        too_long = run_cli("watch", str(cascade), "--source", str(video), "--context", long, env=env)
        assert too_long.returncode == 2
        assert too_long.stderr.startswith(
            f"error: --context '{long[:40]}...' (129 characters) would be refused"
        )
        assert (
            run_cli("watch", str(cascade), "--source", str(video), "--context", long, "--no-post").returncode
            == 0
        )
        assert count_rows(database) == 0
    finally:
        server.stop()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is a POSIX signal")
def test_sigterm_stops_watch_as_ctrl_c_does_and_the_saved_video_plays(tmp_path: Path, cascade_runs):
    cascade = write_cascade(tmp_path, cascade_runs, {"hiking": {"model": "models/orientation"}})
    video = tmp_path / "long.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (320, 240))
    rng = np.random.default_rng(0)
    for _ in range(400):  # noise codes to large frames: the saved file grows from the first frames on
        writer.write(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    writer.release()
    saved = tmp_path / "out.mp4"
    process = subprocess.Popen(
        [sys.executable, "-m", "visioncascade.cli", "watch", str(cascade), "--source", str(video),
         "--context", "hiking", "--save", str(saved), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # Past its header, the file grows as frames are coded: watch is in its loop, the video open.
        while process.poll() is None and not (saved.exists() and saved.stat().st_size > 200_000):
            time.sleep(0.05)
        assert process.poll() is None, "watch ended before it was sent SIGTERM"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    frames = json.loads(stdout)["frames"]
    assert 0 < frames < 400
    playback = cv2.VideoCapture(str(saved))
    assert playback.isOpened()
    read = 0
    while playback.read()[0]:
        read += 1
    assert frames - 1 <= read <= frames  # the frame being run when the signal came may not be in it


def test_several_contexts_need_switch_every_of_at_least_one_frame(tmp_path: Path, cascade_runs):
    specialists = {"hiking": {"model": "models/orientation"}, "kitchen": {"model": "models/orientation"}}
    cascade = write_cascade(tmp_path, cascade_runs, specialists)
    video = _write_video(tmp_path / "clip.mp4", 4)
    watch = ["watch", str(cascade), "--source", str(video), "--json", "--context", "hiking"]
    for extra, message in [
        (
            ["--context", "kitchen"],
            "2 contexts given (hiking, kitchen) but no --switch-every: pass --switch-every N to switch to the next "
            "context every N frames, or give one --context",
        ),
        (
            ["--context", "kitchen", "--switch-every", "0"],
            "--switch-every must be a number of frames, at least 1; got 0",
        ),
        (["--switch-every", "-3"], "--switch-every must be a number of frames, at least 1; got -3"),
    ]:
        result = run_cli(*watch, *extra)
        assert result.returncode == 2 and result.stderr == f"error: {message}\n", result.stderr
    both = run_cli(*watch, "--context", "kitchen", "--switch-every", "2")
    assert both.returncode == 0, both.stderr
    assert json.loads(both.stdout)["frames"] == 4
