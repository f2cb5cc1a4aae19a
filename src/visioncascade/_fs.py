"""Run folders: atomic writes (build in a temporary sibling, then swap into place) and cheap checks."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from visioncascade.errors import RunExistsError, RunNotFoundError

__all__ = [
    "RUN_FILES",
    "atomic_dir",
    "check_output_dir",
    "check_run_dir",
    "describe_folder",
    "remove_stale_temporaries",
]

#: What a complete run folder of `visioncascade train` holds, at the least, for evaluating it.
RUN_FILES = ("model.keras", "spec.json", "config.yaml")

#: Files that mark a folder as one visioncascade wrote (a run, a comparison, exports, the demo): only
#: such a folder is replaced by ``--overwrite``.
_RUN_MARKERS = (
    "spec.json",
    "model.keras",
    "metrics.json",
    "comparison.json",
    "manifest.json",
    "summary.json",
)


def describe_folder(path: Path) -> str:
    """What a folder holds, in words, for an error message: a trained run, a dataset, or its first names."""
    names = sorted(p.name for p in path.iterdir())
    markers = [name for name in ("model.keras", "spec.json", "config.yaml", "metrics.json") if name in names]
    if "model.keras" in markers:
        return f"a trained run ({', '.join(markers)})"
    from visioncascade.data.images import IMAGE_SUFFIXES

    image_folders = [
        p.name
        for p in sorted(path.iterdir())
        if p.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir())
    ]
    if image_folders or any(name.endswith(".npz") for name in names):
        shown = image_folders or [name for name in names if name.endswith(".npz")]
        return f"a dataset ({', '.join(shown[:5])}{', …' if len(shown) > 5 else ''})"
    return f"{', '.join(names[:5])}{f' and {len(names) - 5} more' if len(names) > 5 else ''}"


def check_output_dir(path: Path, overwrite: bool) -> None:
    """Refuse to write into ``path`` if it already holds something, unless ``overwrite`` and what it holds
    is an earlier output of visioncascade (a run, a comparison, exports, the demo).

    The output replaces its folder whole, so ``overwrite`` never replaces a folder of anything else (a
    dataset, a folder of runs, a home folder): that is refused whatever ``overwrite`` says.
    """
    if path.exists() and not path.is_dir():
        raise RunExistsError(f"output path {path} exists and is a file; choose another --out")
    if not path.is_dir() or not any(path.iterdir()):
        return
    if not any((path / marker).exists() for marker in _RUN_MARKERS):
        raise RunExistsError(
            f"output folder {path} holds {describe_folder(path)}, not an earlier visioncascade output; the "
            "output replaces its folder whole, so this one is never replaced: choose a new or empty --out"
        )
    if not overwrite:
        raise RunExistsError(
            f"output folder {path} already holds a run; pass --overwrite to replace it, or choose another --out"
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


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return False
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove what killed writes of ``path`` left beside it; return what was removed.

    :func:`atomic_dir` builds ``path`` in ``.<name>.tmp-<pid>-XXXX`` and moves the previous ``path`` aside
    to ``.<name>.old-<pid>`` during the swap. A temporary whose process is gone (or of the older
    ``.<name>.tmp-XXXX`` form, which names no process) is stale; an ``.old`` one is too, once ``path``
    exists again. Those of a process still running (a concurrent write) are left alone.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed: list[Path] = []
    for sibling in path.parent.iterdir():
        for kind in ("tmp", "old"):
            prefix = f".{path.name}.{kind}-"
            if not sibling.name.startswith(prefix) or not sibling.is_dir():
                continue
            rest = sibling.name[len(prefix) :]
            pid_text = rest.split("-", 1)[0] if kind == "tmp" and "-" in rest else rest
            pid = int(pid_text) if pid_text.isdigit() else None
            if kind == "old" and (pid is None or not path.exists()):
                continue  # the previous folder, while path is missing: kept, it may be all there is
            if pid is not None and _pid_alive(pid):
                continue
            shutil.rmtree(sibling, ignore_errors=True)
            removed.append(sibling)
    return removed


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``path`` only if the block succeeds.

    On error (or Ctrl-C) the temporary folder is removed and ``path`` is untouched. Temporaries that an
    earlier, killed write of ``path`` left behind are removed first (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    check_output_dir(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; a run folder gets ordinary permissions
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    try:
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C mid-swap: the previous folder back in place, the new one dropped
        if old is not None and not path.exists():
            os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
