"""Shared fixtures: synthetic image folders and one small real training run on bundled BreastMNIST."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEIGHTS_DIR = SHARED / "weights"


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


@pytest.fixture
def shapes_folder(tmp_path: Path) -> Path:
    """A small mixed folder dataset: 2 classes (horizontal/vertical bars), imbalanced 1:2."""
    return write_shape_folder(tmp_path / "shapes", {"horizontal": 20, "vertical": 40})


@pytest.fixture(scope="session")
def scratch_run(tmp_path_factory: pytest.TempPathFactory):
    """One real, small training run on bundled BreastMNIST (scratch, 2 folds, few epochs)."""
    from visioncascade.experiment import train_run
    from visioncascade.train import TrainConfig

    out = tmp_path_factory.mktemp("runs") / "breast-scratch"
    config = TrainConfig.build(arch="scratch", folds=2, epochs=6, patience=3, image_size=28, seed=1)
    return train_run("breastmnist", out, config, progress=False)


@pytest.fixture(scope="session")
def weights_035() -> Path:
    """The α=0.35 MobileNetV2 no-top ImageNet weights bundled in the package."""
    from visioncascade.models.mobilenet import resolve_weights

    return Path(resolve_weights(None, 0.35))


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


@pytest.fixture(scope="session")
def cascade_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small trained runs: 'domain' (object/empty) and 'orientation' (horizontal/vertical), RGB 24 px."""
    from visioncascade.experiment import train_run
    from visioncascade.train import TrainConfig

    root = tmp_path_factory.mktemp("cascade-runs")
    config = TrainConfig.build(
        folds=0, epochs=30, patience=10, image_size=24, color_mode="rgb", batch_size=16, seed=0
    )
    domain = write_scene_folder(root / "scenes", count=50)
    shapes = write_shape_folder(root / "shapes", {"horizontal": 40, "vertical": 40}, seed=1, size=32)
    return {
        "domain": train_run(domain, root / "domain", config, name="domain", progress=False).run_dir,
        "orientation": train_run(
            shapes, root / "orientation", config, name="orientation", progress=False
        ).run_dir,
    }
