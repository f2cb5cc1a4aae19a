"""Benchmarks of the cascade issue.

1. Per-frame latency of a whole 2-stage cascade (two scratch CNNs at 96x96 RGB, both stages always run)
   for each backend, next to the same two Keras models called with ``model.predict`` per frame, in the
   same run. Aim: p50 <= 1 ms, p99 <= 3 ms, >= 100x the ``model.predict`` loop.
2. End-to-end throughput of ``watch`` on a 640x480 video, decode and resize included. Aim: >= 300 frames/s.

    python benchmarks/cascade_latency.py [--frames 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np
import yaml

from visioncascade.export import export_onnx, export_tflite
from visioncascade.models import create_model, save_model
from visioncascade.runtime import Cascade, ContextSchedule, open_source, watch
from visioncascade.spec import ModelSpec

SIZE = 96


def build(root: Path) -> dict[str, Path]:
    """Two scratch models (domain, specialist) saved as .keras, .onnx and .tflite with spec sidecars."""
    paths = {}
    for name, labels in (("domain", ("object", "empty")), ("specialist", ("a", "b", "c"))):
        spec = ModelSpec(
            name=name,
            labels=labels,
            input_size=(SIZE, SIZE),
            color_mode="rgb",
            architecture="scratch",
            edges=True,
        )
        model = create_model("scratch", input_shape=spec.input_shape, num_classes=len(labels), edges=True)
        folder = root / name
        folder.mkdir()
        save_model(model, folder / "model.keras")
        spec.save(folder / "spec.json")
        export_onnx(model, folder / f"{name}.onnx", spec)
        export_tflite(model, folder / f"{name}.tflite", spec)
        paths[name] = folder
    return paths


def cascade_file(root: Path, paths: dict[str, Path], backend: str) -> Path:
    suffix = {"onnx": ".onnx", "litert": ".tflite", "keras": ""}[backend]

    def model(name: str) -> str:
        return str(paths[name] / f"{name}{suffix}") if suffix else str(paths[name])

    doc = {
        "name": f"bench-{backend}",
        "backend": backend,
        "domain": {"model": model("domain"), "threshold": 0.01},  # every frame reaches stage 2
        "specialists": {"ctx": {"model": model("specialist"), "threshold": 0.01}},
    }
    path = root / f"{backend}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def time_cascade(cascade: Cascade, frames: list[np.ndarray]) -> list[float]:
    for frame in frames[:20]:
        cascade.run(frame, "ctx")
    times = []
    for frame in frames:
        start = time.perf_counter()
        result = cascade.run(frame, "ctx")
        times.append((time.perf_counter() - start) * 1000)
        assert len(result.stages) == 2
    return times


def time_predict_loop(paths: dict[str, Path], frames: list[np.ndarray]) -> list[float]:
    from visioncascade.models import load_model

    domain, special = load_model(paths["domain"]), load_model(paths["specialist"])
    times = []
    for frame in frames:
        start = time.perf_counter()
        x = frame[None].astype(np.float32)
        domain.predict(x, verbose=0)
        special.predict(x, verbose=0)
        times.append((time.perf_counter() - start) * 1000)
    return times[5:]


def write_video(path: Path, frames: int) -> Path:
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
    base = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    for i in range(frames):
        writer.write(np.roll(base, i * 4, axis=1))
    writer.release()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--video-frames", type=int, default=600)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(args.frames)]
    print(f"{os.cpu_count()} cores, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = build(root)
        rows = {}
        for backend in ("onnx", "litert", "keras"):
            cascade = Cascade.from_file(cascade_file(root, paths, backend))
            n = args.frames if backend != "keras" else min(args.frames, 200)
            runs = [time_cascade(cascade, frames[:n]) for _ in range(args.repeats)]
            rows[f"cascade/{backend}"] = runs
        runs = [time_predict_loop(paths, frames[:60]) for _ in range(args.repeats)]
        rows["model.predict x2 per frame"] = runs
        base = statistics.median(statistics.median(r) for r in rows["model.predict x2 per frame"])
        print(f"\n2-stage cascade at {SIZE}x{SIZE}, per frame, median over {args.repeats} runs:")
        for name, runs in rows.items():
            p50 = statistics.median(float(np.percentile(r, 50)) for r in runs)
            p99 = statistics.median(float(np.percentile(r, 99)) for r in runs)
            print(
                f"  {name:<28} p50 {p50:8.3f} ms  p99 {p99:8.3f} ms  speed-up vs predict {base / p50:7.0f}x"
            )
        video = write_video(root / "clip.mp4", args.video_frames)
        fps = []
        for _ in range(args.repeats):
            cascade = Cascade.from_file(cascade_file(root, paths, "onnx"))
            source = open_source(video)
            stats = watch(cascade, source, ContextSchedule(["ctx"]))
            fps.append(stats.summary(source)["fps"])
        print(
            f"\nwatch on 640x480 video ({args.video_frames} frames, decode + resize + 2 stages, onnx): "
            f"median {statistics.median(fps):.0f} frames/s  runs {[round(f) for f in fps]}"
        )
        start = time.perf_counter()
        capture = cv2.VideoCapture(str(video))
        count = 0
        while capture.read()[0]:
            count += 1
        print(f"decode alone: {count / (time.perf_counter() - start):.0f} frames/s")


if __name__ == "__main__":
    main()
