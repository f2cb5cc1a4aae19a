"""How long the live page's server takes to decode one camera frame (``visioncascade.api.live.decode_frame``).

The browser page sends each frame as a JPEG of at most 640 px wide; the server decodes it before the
cascade runs, so the decode is part of every live frame's latency. Baseline in the same run: OpenCV's own
``cv2.imdecode`` of the same bytes (what the live page used before it shared the reader of ``watch``,
``predict`` and training). Each figure is the median over ``--repeats`` runs of the mean of ``--frames``
decodes of a 640x480 JPEG (quality 80) and of a 640x480 grayscale PNG.

    python benchmarks/live_decode.py [--frames 300] [--repeats 7]

Run it against another commit's sources with ``PYTHONPATH=/tmp/other/src`` (a ``git archive`` copy).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np

from visioncascade.api.live import decode_frame


def _frames() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 200, 640)[None, :, None]
    image = (rng.random((480, 640, 3)) * 40 + gradient).astype(np.uint8)
    jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
    png = cv2.imencode(".png", np.ascontiguousarray(image[..., 0]))[1].tobytes()
    return {"640x480 JPEG": jpeg, "640x480 gray PNG": png}


def _ms_per_frame(decode, data: bytes, frames: int, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(frames):
            decode(data)
        runs.append((time.perf_counter() - started) / frames * 1e3)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    def opencv(data: bytes) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

    print("| frame | bytes | decode_frame ms | cv2.imdecode ms (baseline) | same pixels |")
    print("|---|---:|---:|---:|---|")
    for name, data in _frames().items():
        ours = _ms_per_frame(decode_frame, data, args.frames, args.repeats)
        base = _ms_per_frame(opencv, data, args.frames, args.repeats)
        same = np.array_equal(decode_frame(data), opencv(data))
        print(f"| {name} | {len(data):,} | {ours:.2f} | {base:.2f} | {same} |")


if __name__ == "__main__":
    main()
