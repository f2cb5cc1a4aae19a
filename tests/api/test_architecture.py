"""Layering: the API never pulls in TensorFlow; the client never pulls in the server side."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": SRC},
    ).stdout
    return {line.split(".")[0] for line in out.splitlines()}


@pytest.mark.parametrize(
    "statement",
    [
        "import visioncascade.api",
        "import visioncascade.api.app",
        "from visioncascade.api.cli import register",
    ],
)
def test_the_api_does_not_import_tensorflow_or_training(statement: str) -> None:
    loaded = _modules_after(statement + "\nimport visioncascade.api.app")
    assert not {"tensorflow", "keras", "onnxruntime", "cv2", "sklearn"} & loaded


def test_the_client_depends_only_on_httpx_and_stdlib() -> None:
    loaded = _modules_after("import visioncascade.client")
    assert "httpx" in loaded
    assert not {"fastapi", "starlette", "sqlalchemy", "alembic", "pydantic", "uvicorn", "tensorflow"} & loaded


def test_migrations_ship_inside_the_package() -> None:
    folder = Path(SRC) / "visioncascade" / "api" / "migrations"
    assert (folder / "env.py").is_file() and (folder / "script.py.mako").is_file()
    assert list((folder / "versions").glob("0001_*.py"))
