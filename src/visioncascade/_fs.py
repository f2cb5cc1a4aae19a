"""Run folders: atomic writes (build in a temporary sibling, then swap into place) and cheap checks."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from visioncascade.errors import RunExistsError, RunNotFoundError

__all__ = ["RUN_FILES", "atomic_dir", "check_output_dir", "check_run_dir"]

#: What a complete run folder of `visioncascade train` holds, at the least, for evaluating it.
RUN_FILES = ("model.keras", "spec.json", "config.yaml")

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


def check_run_dir(path: str | Path, required: Sequence[str] = ("model.keras", "spec.json")) -> Path:
    """``path`` as a :class:`Path` if it is a folder holding each of ``required``; else
    :class:`RunNotFoundError` naming what is missing (nothing is read, so a command can check before it
    imports TensorFlow)."""
    path = Path(path)
    if not path.is_dir():
        raise RunNotFoundError(f"{path} is not a run folder; pass the --out folder of `visioncascade train`")
    for name in required:
        if not (path / name).is_file():
            raise RunNotFoundError(
                f"{path} lacks {name}, so it is not a complete run; pass a run folder written by "
                "`visioncascade train`"
            )
    return path


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
