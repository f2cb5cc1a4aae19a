"""Shared fixtures: synthetic image folders and one small real training run on bundled BreastMNIST."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import pytest

from suite_groups import group_costly_fixture_users
from synthetic import write_scene_folder, write_shape_folder

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEIGHTS_DIR = SHARED / "weights"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the tests that share a costly session fixture share a worker."""
    group_costly_fixture_users(items)


@pytest.fixture
def shapes_folder(tmp_path: Path) -> Path:
    """A small mixed folder dataset: 2 classes (horizontal/vertical bars), imbalanced 1:2."""
    return write_shape_folder(tmp_path / "shapes", {"horizontal": 20, "vertical": 40})


@pytest.fixture(scope="session")
def scratch_run(tmp_path_factory: pytest.TempPathFactory):
    """One real, small training run on bundled BreastMNIST (scratch, 2 folds, few epochs, 3 averaged)."""
    from visioncascade.experiment import train_run
    from visioncascade.train import TrainConfig

    out = tmp_path_factory.mktemp("runs") / "breast-scratch"
    config = TrainConfig.build(
        arch="scratch", folds=2, epochs=6, patience=3, average_epochs=3, image_size=28, seed=1
    )
    return train_run("breastmnist", out, config, progress=False)


@pytest.fixture(scope="session")
def weights_035() -> Path:
    """The α=0.35 MobileNetV2 no-top ImageNet weights bundled in the package."""
    from visioncascade.models.mobilenet import resolve_weights

    return Path(resolve_weights(None, 0.35))


@pytest.fixture(scope="session")
def cascade_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small trained runs: 'domain' (object/empty) and 'orientation' (horizontal/vertical), RGB 24 px."""
    from visioncascade.experiment import train_run
    from visioncascade.train import TrainConfig

    root = tmp_path_factory.mktemp("cascade-runs")
    # No refit: the first fit already classifies these worlds without error, and the refit doubles the cost.
    config = TrainConfig.build(
        folds=0, epochs=30, patience=10, image_size=24, color_mode="rgb", batch_size=16, seed=0, refit=False
    )
    domain = write_scene_folder(root / "scenes", count=50)
    shapes = write_shape_folder(root / "shapes", {"horizontal": 40, "vertical": 40}, seed=1, size=32)
    return {
        "domain": train_run(domain, root / "domain", config, name="domain", progress=False).run_dir,
        "orientation": train_run(
            shapes, root / "orientation", config, name="orientation", progress=False
        ).run_dir,
    }


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory: pytest.TempPathFactory):
    """One quick run of ``visioncascade demo`` (models, ONNX exports, cascade.yaml, rules.yaml), shared.

    Returns ``(DemoResult, progress lines)``.
    """
    from visioncascade.demo import run_demo

    lines: list[str] = []
    result = run_demo(tmp_path_factory.mktemp("demo") / "demo", quick=True, progress=False, log=lines.append)
    return result, lines
