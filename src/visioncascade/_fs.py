"""Atomic folder writes: build in a temporary sibling, then swap into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from visioncascade.errors import RunExistsError

__all__ = ["atomic_dir", "check_output_dir"]

_RUN_MARKERS = ("spec.json", "model.keras", "metrics.json", "comparison.json", "manifest.json")


def check_output_dir(path: Path, overwrite: bool) -> None:
    """Refuse to write into ``path`` if it already holds something, unless ``overwrite``."""
    if path.exists() and not path.is_dir():
        raise RunExistsError(f"output path {path} exists and is a file; choose another --out")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        holds_run = any((path / marker).exists() for marker in _RUN_MARKERS)
        what = "a run" if holds_run else "files"
        raise RunExistsError(
            f"output folder {path} already holds {what}; pass --overwrite to replace it, "
            "or choose another --out"
        )


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``path`` only if the block succeeds.

    On error (or Ctrl-C) the temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    check_output_dir(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; a run folder gets ordinary permissions
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
