"""A procedural little world for the demo: coloured shapes on textured, noisy backgrounds, and empty scenes."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "COLOURS",
    "SHAPES",
    "background",
    "draw_object",
    "render_video",
    "scene",
    "video_frames",
    "write_datasets",
]

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (215, 45, 40), "green": (45, 170, 60), "blue": (50, 85, 225)}


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A muted gradient with a random stripe texture and sensor-like noise (uint8 RGB)."""
    base = rng.uniform(70, 170, 3)
    tilt = rng.uniform(-40, 40, 3)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (xs / max(width - 1, 1))[..., None] * tilt
    freq = rng.uniform(0.05, 0.3)
    angle = rng.uniform(0, np.pi)
    texture = 12 * np.sin(freq * (np.cos(angle) * xs + np.sin(angle) * ys))[..., None]
    img = base + ramp + texture + rng.normal(0, 10, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def draw_object(
    img: np.ndarray, shape: str, colour: str, center: tuple[int, int], radius: int, rng: np.random.Generator
) -> None:
    """Draw a filled ``shape`` of ``colour`` (with a little colour jitter) into ``img`` in place."""
    rgb = np.clip(np.array(COLOURS[colour]) + rng.normal(0, 12, 3), 0, 255)
    color = tuple(int(c) for c in rgb)
    cx, cy = center
    if shape == "circle":
        cv2.circle(img, (cx, cy), radius, color, -1, cv2.LINE_AA)
    elif shape == "square":
        cv2.rectangle(img, (cx - radius, cy - radius), (cx + radius, cy + radius), color, -1, cv2.LINE_AA)
    elif shape == "triangle":
        pts = np.array([[cx, cy - radius], [cx - radius, cy + radius], [cx + radius, cy + radius]], np.int32)
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")


def scene(rng: np.random.Generator, size: int, shape: str | None, colour: str | None) -> np.ndarray:
    """One square scene; ``shape=None`` gives an empty scene."""
    img = background(rng, size, size)
    if shape is not None and colour is not None:
        radius = int(rng.uniform(0.18, 0.32) * size)
        cx, cy = (int(rng.uniform(radius, size - radius)) for _ in range(2))
        draw_object(img, shape, colour, (cx, cy), radius, rng)
    return img


def write_datasets(root: Path, per_class: int, size: int = 48, seed: int = 0) -> dict[str, Path]:
    """Write three class-folder datasets: ``domain`` (object/empty), ``shape`` and ``colour``."""
    rng = np.random.default_rng(seed)
    roots = {name: root / name for name in ("domain", "shape", "colour")}

    def save(folder: Path, index: int, img: np.ndarray) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{index:05d}.png")

    for i in range(per_class):
        save(roots["domain"] / "empty", i, scene(rng, size, None, None))
        shape, colour = SHAPES[i % 3], list(COLOURS)[(i // 3) % 3]
        save(roots["domain"] / "object", i, scene(rng, size, shape, colour))
    for i in range(per_class):
        for shape in SHAPES:
            save(roots["shape"] / shape, i, scene(rng, size, shape, list(COLOURS)[rng.integers(3)]))
        for colour in COLOURS:
            save(roots["colour"] / colour, i, scene(rng, size, SHAPES[rng.integers(3)], colour))
    return roots


def video_frames(
    seconds: float, fps: float = 30.0, size: tuple[int, int] = (320, 240), seed: int = 0
) -> Iterator[tuple[np.ndarray, tuple[str | None, str | None]]]:
    """RGB frames of objects gliding over changing backgrounds (with empty stretches), each with its truth."""
    rng = np.random.default_rng(seed)
    width, height = size
    frames = int(seconds * fps)
    segment = int(fps * 1.5)
    for start in range(0, frames, segment):
        bg = background(rng, height, width)
        empty = rng.random() < 0.25
        shape = None if empty else SHAPES[rng.integers(3)]
        colour = None if empty else list(COLOURS)[rng.integers(3)]
        radius = int(rng.uniform(0.25, 0.4) * height)
        y = int(rng.uniform(radius, height - radius))
        for k in range(min(segment, frames - start)):
            img = bg.copy()
            if shape is not None:
                x = int(radius + (width - 2 * radius) * k / max(segment - 1, 1))
                draw_object(img, shape, colour, (x, y), radius, np.random.default_rng(start))
            noisy = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
            yield noisy, (shape, colour)


def render_video(
    path: Path, seconds: float, fps: float = 30.0, size: tuple[int, int] = (320, 240), seed: int = 0
) -> list[tuple[str | None, str | None]]:
    """Write :func:`video_frames` to ``path`` and return the per-frame truth.

    ``.y4m`` writes uncompressed YUV4MPEG2 (4:2:0), the format Chromium's fake camera plays
    (``--use-file-for-fake-video-capture``); anything else an MP4 (mp4v).
    """
    path = Path(path)
    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"video size must be even on both sides for 4:2:0, got {width}x{height}")
    truth: list[tuple[str | None, str | None]] = []
    if path.suffix.lower() == ".y4m":
        rate = Fraction(fps).limit_denominator(1001)
        with path.open("wb") as out:
            out.write(
                f"YUV4MPEG2 W{width} H{height} F{rate.numerator}:{rate.denominator} Ip A1:1 C420jpeg\n".encode()
            )
            for rgb, t in video_frames(seconds, fps, size, seed):
                out.write(b"FRAME\n")
                out.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())
                truth.append(t)
        return truth
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    try:
        for rgb, t in video_frames(seconds, fps, size, seed):
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            truth.append(t)
    finally:
        writer.release()
    return truth
