"""Synthetic image datasets for tests: bars (horizontal/vertical) and empty noisy scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_shape_image(kind: str, size: int, rng: np.random.Generator, rgb: bool) -> np.ndarray:
    """A noisy image of a bright horizontal bar ('horizontal') or vertical bar ('vertical')."""
    img = rng.normal(60, 20, (size, size)).clip(0, 255)
    lo, hi = size // 3, 2 * size // 3
    offset = int(rng.integers(-size // 8, size // 8 + 1))
    if kind == "horizontal":
        img[lo + offset : hi + offset, 2:-2] += 140
    else:
        img[2:-2, lo + offset : hi + offset] += 140
    img = img.clip(0, 255).astype(np.uint8)
    if rgb:
        tint = rng.uniform(0.7, 1.0, 3)
        img = (img[..., None] * tint).clip(0, 255).astype(np.uint8)
    return img


def write_shape_folder(
    root: Path, counts: dict[str, int], seed: int = 0, mixed: bool = True, size: int = 40
) -> Path:
    """Write ``root/<class>/<i>.png|jpg`` images; ``mixed`` varies size, format and channel count."""
    rng = np.random.default_rng(seed)
    for label, count in counts.items():
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            side = int(rng.integers(size - 8, size + 9)) if mixed else size
            rgb = mixed and i % 3 == 0
            arr = make_shape_image(label, side, rng, rgb)
            if mixed and i % 4 == 1:
                Image.fromarray(arr).save(folder / f"{i}.jpg", quality=95)
            else:
                Image.fromarray(arr).save(folder / f"{i}.png")
    return root


def write_scene_folder(root: Path, count: int = 40, seed: int = 0, size: int = 32) -> Path:
    """Domain data: 'object' (a bright bar, either orientation) vs 'empty' (noise only)."""
    rng = np.random.default_rng(seed)
    for label in ("object", "empty"):
        (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        kind = "horizontal" if i % 2 else "vertical"
        Image.fromarray(make_shape_image(kind, size, rng, rgb=True)).save(root / "object" / f"{i}.png")
        noise = rng.normal(60, 20, (size, size, 3)).clip(0, 255).astype(np.uint8)
        Image.fromarray(noise).save(root / "empty" / f"{i}.png")
    return root
