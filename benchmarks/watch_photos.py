"""A cascade on a folder of phone photos: ``watch`` and ``predict`` wall time and peak memory, two commits.

    python benchmarks/watch_photos.py BASELINE_REV NEW_REV [--runs 3] [--photos 24]

Builds a cascade once with the new commit's ``visioncascade demo --quick`` (28-px ONNX models, so
``Cascade.frame_cap`` is 512), writes ``--photos`` synthetic 12-megapixel JPEGs (4032x3024, quality 90,
every other one a portrait photo as a phone stores it: landscape pixels plus EXIF orientation 6) into one
folder, then alternates the two commits (each commit's src/ taken with ``git archive``, run with this
interpreter's packages), each run a fresh process under ``/usr/bin/time``:

* ``visioncascade watch CASCADE --source PHOTOS --context shapes --no-post --json`` (frames, fps),
* ``visioncascade predict CASCADE PHOTOS/*.jpg --context shapes --json``,
* ``visioncascade predict CASCADE PHOTOS/IMG_0000.jpg --context shapes`` (one photo: a script's call),
* ``visioncascade serve --cascade CASCADE`` (SQLite): seconds until it answers ``GET /`` and its resident
  memory then.

Prints each run's wall seconds, the fps ``watch`` reports and peak resident memory, the medians, and
whether both commits gave every photo the same decision and labels.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def write_photos(folder: Path, count: int) -> None:
    """``count`` 12-megapixel JPEGs of smooth coloured shapes, every other one with EXIF orientation 6."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        small = np.full((48, 64, 3), rng.integers(40, 90), np.uint8)
        colour = [int(c) for c in rng.integers(0, 255, 3)]
        centre = (int(rng.integers(20, 44)), int(rng.integers(16, 32)))
        cv2.circle(small, centre, int(rng.integers(6, 14)), colour, -1)
        pixels = cv2.resize(small, (4032, 3024), interpolation=cv2.INTER_CUBIC)
        pixels = cv2.add(pixels, rng.integers(0, 12, pixels.shape, dtype=np.uint8))  # sensor noise
        image = Image.fromarray(pixels)
        tags = image.getexif()
        if i % 2:
            tags[0x0112] = 6
        image.save(folder / f"IMG_{i:04d}.jpg", quality=90, exif=tags.tobytes())


def timed(args: list[str], src: Path) -> tuple[float, float, str]:
    """``(wall seconds, peak MB, stdout)`` of ``python -m visioncascade.cli ARGS`` with ``src`` on the path."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "visioncascade.cli", *args],
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return seconds, peak_kb / 1024, done.stdout


def serve(cascade: Path, src: Path, port: int = 8765) -> tuple[float, float]:
    """``(seconds until GET / answers, resident MB then)`` of ``visioncascade serve --cascade CASCADE``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    db = cascade.parent / "bench-serve.db"
    db.unlink(missing_ok=True)
    args = ["serve", "--db", f"sqlite:///{db}", "--rules", str(cascade.parent / "rules.yaml")]
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "visioncascade.cli", *args, "--cascade", str(cascade), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
                break
            except OSError:
                if server.poll() is not None or time.perf_counter() - started > 120:
                    raise SystemExit("serve did not start") from None
                time.sleep(0.05)
        seconds = time.perf_counter() - started
        status = Path(f"/proc/{server.pid}/status").read_text()
        rss_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
        return seconds, rss_kb / 1024
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("revs", nargs=2, help="baseline and new commit")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--photos", type=int, default=24)
    args = parser.parse_args()
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        copies = {}
        for rev in args.revs:
            copies[rev] = work / f"src-{rev}"
            copies[rev].mkdir()
            archive = subprocess.run(
                ["git", "-C", str(repo), "archive", rev, "src"], capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", str(copies[rev])], input=archive.stdout, check=True)
        new_src = copies[args.revs[1]] / "src"
        started = time.perf_counter()
        timed(["demo", "--quick", "--out", str(work / "demo")], new_src)
        cascade = str(work / "demo" / "cascade.yaml")
        photos = work / "photos"
        write_photos(photos, args.photos)
        files = sorted(str(p) for p in photos.iterdir())
        megabytes = sum(Path(f).stat().st_size for f in files) / 1e6
        print(
            f"cascade from demo --quick; {args.photos} photos, 4032x3024, {megabytes:.0f} MB of JPEG "
            f"(set up in {time.perf_counter() - started:.0f} s)"
        )
        results: dict[str, dict[str, list[float]]] = {rev: {} for rev in args.revs}
        answers: dict[str, list] = {}
        for run in range(args.runs):
            for rev in args.revs:
                src = copies[rev] / "src"
                row = results[rev]
                seconds, peak, out = timed(
                    ["watch", cascade, "--source", str(photos), "--context", "shapes", "--no-post", "--json"],
                    src,
                )
                summary = json.loads(out)
                row.setdefault("watch s", []).append(seconds)
                row.setdefault("watch fps", []).append(summary["fps"])
                row.setdefault("watch MB", []).append(peak)
                seconds, peak, out = timed(["predict", cascade, *files, "--context", "shapes", "--json"], src)
                row.setdefault("predict s", []).append(seconds)
                row.setdefault("predict MB", []).append(peak)
                seconds, peak, _ = timed(["predict", cascade, files[0], "--context", "shapes"], src)
                row.setdefault("predict-1 s", []).append(seconds)
                row.setdefault("predict-1 MB", []).append(peak)
                seconds, rss = serve(Path(cascade), src)
                row.setdefault("serve up s", []).append(seconds)
                row.setdefault("serve MB", []).append(rss)
                answers[rev] = [
                    (
                        r["decision"],
                        [(s["stage"], s["top_label"]) for s in r["stages"]],
                        [s["probabilities"] for s in r["stages"]],
                    )
                    for r in json.loads(out)["results"]
                ]
                print(
                    f"run {run + 1} {rev}: watch {row['watch s'][-1]:.1f} s ({summary['frames']} frames, "
                    f"{summary['fps']:.1f} fps, {row['watch MB'][-1]:.0f} MB), predict {row['predict s'][-1]:.1f} s "
                    f"({row['predict MB'][-1]:.0f} MB), one photo {row['predict-1 s'][-1]:.1f} s, serve up in "
                    f"{seconds:.1f} s ({rss:.0f} MB)",
                    flush=True,
                )
        print("\nmedians:")
        for rev in args.revs:
            print(
                f"  {rev}: " + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in results[rev].items())
            )
        base, new = (answers[rev] for rev in args.revs)
        differ = sum(a[:2] != b[:2] for a, b in zip(base, new, strict=True))
        gap = max(
            float(np.abs(np.subtract(pa, pb)).max())
            for a, b in zip(base, new, strict=True)
            for pa, pb in zip(a[2], b[2], strict=False)
        )
        print(
            f"same decision and labels for every photo: {differ == 0} ({differ} of {len(files)} differ); "
            f"largest probability difference between the commits {gap:.4f}"
        )


if __name__ == "__main__":
    main()
