"""The frame loop behind ``visioncascade watch``: source → cascade → events, with live statistics."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from visioncascade.errors import ConfigError, DataError
from visioncascade.runtime.cascade import Cascade, CascadeResult
from visioncascade.runtime.sender import EventSender
from visioncascade.runtime.sources import Frame, FrameSource

__all__ = [
    "SAVE_SUFFIXES",
    "ContextSchedule",
    "WatchStats",
    "annotate",
    "check_save_path",
    "fit_frame",
    "watch",
]

#: What ``save`` may end in: the containers OpenCV's FFmpeg writer puts MPEG-4 part 2 (``mp4v``) video in.
SAVE_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi")


class ContextSchedule:
    """Which context applies to frame *i*: one fixed context, or several switched every N frames.

    Raises :class:`ConfigError` for no context, a ``switch_every`` below 1, or several contexts without
    ``switch_every`` (only the first would ever be used).
    """

    def __init__(self, contexts: list[str], switch_every: int | None = None):
        if not contexts:
            raise ConfigError("at least one context is needed (--context)")
        if switch_every is not None and switch_every < 1:
            raise ConfigError(f"--switch-every must be a number of frames, at least 1; got {switch_every}")
        if len(contexts) > 1 and switch_every is None:
            raise ConfigError(
                f"{len(contexts)} contexts given ({', '.join(contexts)}) but no --switch-every: pass "
                "--switch-every N to switch to the next context every N frames, or give one --context"
            )
        self.contexts = contexts
        self.switch_every = switch_every

    def __call__(self, index: int) -> str:
        """The context of frame ``index`` (counted from 0)."""
        if len(self.contexts) == 1 or not self.switch_every:
            return self.contexts[0]
        return self.contexts[(index // self.switch_every) % len(self.contexts)]


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "mean": None}
    arr = np.asarray(values)
    return {
        "p50": float(np.percentile(arr, 50)),
        "p99": float(np.percentile(arr, 99)),
        "mean": float(arr.mean()),
    }


@dataclass
class WatchStats:
    """Running statistics of a watch loop; :meth:`summary` is what ``--json`` prints."""

    frames: int = 0
    events: int = 0
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None
    decisions: dict[str, int] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(
        default_factory=lambda: {"domain": [], "specialist": [], "cascade": []}
    )
    last: CascadeResult | None = None

    def add(self, result: CascadeResult) -> None:
        """Account one frame's result."""
        self.frames += 1
        self.last = result
        self.decisions[result.decision] = self.decisions.get(result.decision, 0) + 1
        self.events += result.is_event
        for stage, ms in result.timings_ms.items():
            self.latency[stage].append(ms)
        self.latency["cascade"].append(result.latency_ms)

    @property
    def seconds(self) -> float:
        """Wall-clock seconds of the loop (until now while it runs)."""
        return (self.ended or time.perf_counter()) - self.started

    @property
    def fps(self) -> float:
        """Frames processed per wall-clock second."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self, source: FrameSource | None = None, sender: EventSender | None = None) -> dict[str, Any]:
        """Frames, dropped, fps, latency p50/p99 per stage and overall, events produced/posted/dropped."""
        out: dict[str, Any] = {
            "frames": self.frames,
            "dropped": source.dropped if source is not None else 0,
            "unreadable": len(source.unreadable) if source is not None else 0,
            "fps": self.fps,
            "seconds": self.seconds,
            "latency_ms": {stage: _percentiles(values) for stage, values in self.latency.items()},
            "decisions": dict(self.decisions),
            "events": {"produced": self.events},
        }
        if sender is not None:
            stats = sender.stats
            out["events"].update(
                posted=stats.posted,
                queued=stats.queued,
                skipped=stats.skipped,
                dropped=stats.dropped,
                rejected=stats.rejected,
                pending=stats.pending,
                retries=stats.retries,
                api_up=stats.api_up,
                last_answer=stats.last_answer,
            )
        return out


def annotate(image: np.ndarray, channel_order: str, result: CascadeResult, fps: float) -> np.ndarray:
    """A BGR copy of ``image`` with the cascade's labels, probabilities and fps drawn on it."""
    frame = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if channel_order == "rgb" and frame.ndim == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    frame = np.ascontiguousarray(frame).copy()
    scale = max(0.4, frame.shape[1] / 900)
    lines = [f"context {result.context}  {fps:.0f} fps"]
    for stage in result.stages:
        mark = "+" if stage.passed else "-"
        lines.append(f"{mark} {stage.stage}: {stage.top_label} {stage.top_probability:.2f}")
    if result.is_event:
        lines.append("EVENT")
    for i, text in enumerate(lines):
        y = int(22 * scale * (i + 1))
        cv2.putText(frame, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0), 3, cv2.LINE_AA)
        color = (0, 220, 0) if (result.is_event and i) else (255, 255, 255)
        cv2.putText(frame, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, color, 1, cv2.LINE_AA)
    return frame


def fit_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (HxW or HxWxC) scaled to fit ``size`` = (width, height), aspect ratio kept, centred on black.

    A video has one frame size; a folder of photos does not (portrait and landscape, other cameras).
    """
    height, width = image.shape[:2]
    if (width, height) == size:
        return image
    scale = min(size[0] / width, size[1] / height)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, new, interpolation=interpolation).reshape(new[1], new[0], *image.shape[2:])
    canvas = np.zeros((size[1], size[0], *image.shape[2:]), image.dtype)
    top, left = (size[1] - new[1]) // 2, (size[0] - new[0]) // 2
    canvas[top : top + new[1], left : left + new[0]] = resized
    return canvas


def check_save_path(path: Path) -> None:
    """Check, before any frame, that an annotated video can be written to ``path``; its folder is created.

    Raises :class:`ConfigError` for a suffix OpenCV cannot write (see :data:`SAVE_SUFFIXES`) or a path that
    is a folder, :class:`DataError` for a folder that cannot be created or written to.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"cannot save the video as {path}: it is a folder; name a file in it, e.g. {path}/out.mp4"
        )
    if path.suffix.lower() not in SAVE_SUFFIXES:
        raise ConfigError(
            f"cannot save the video as {path}: name a file ending in {', '.join(SAVE_SUFFIXES)} "
            f"(e.g. {path.with_suffix('.mp4') if path.suffix or path.name else 'out.mp4'})"
        )
    folder = path.parent
    blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise DataError(f"cannot save the video as {path}: {blocking} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise DataError(
            f"cannot save the video as {path}: cannot write in the folder {folder} "
            f"({exc.strerror or exc}); choose a folder you can write to"
        ) from exc


def _open_writer(writer: cv2.VideoWriter, path: Path, fps: float, size: tuple[int, int]) -> None:
    """Open ``writer`` (already the caller's, so that an interrupt cannot orphan an open file) as an
    MPEG-4 writer to ``path``; DataError naming ``path`` when OpenCV cannot open it."""
    if not writer.open(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size):
        raise DataError(
            f"cannot save the video as {path}: OpenCV cannot open a writer for {size[0]}×{size[1]} frames at "
            f"{fps:g} fps (frames must be at least 2×2 px; the folder must be writable)"
        )


def watch(
    cascade: Cascade,
    source: FrameSource,
    context: ContextSchedule | Callable[[int], str],
    *,
    sender: EventSender | None = None,
    save: Path | None = None,
    on_result: Callable[[Frame, CascadeResult, WatchStats], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> WatchStats:
    """Run ``cascade`` on every frame ``source`` yields (live sources drop frames when inference lags).

    Events go to ``sender`` (non-blocking). ``save`` writes an annotated MP4 the size of the first frame
    (later frames of another size are fitted into it, see :func:`fit_frame`); it is checked with
    :func:`check_save_path` before the first frame. Ctrl-C (a KeyboardInterrupt) ends the loop cleanly,
    the video finished.
    """
    stats = WatchStats()
    writer: cv2.VideoWriter | None = None
    video_size: tuple[int, int] = (0, 0)
    try:
        if save is not None:
            check_save_path(save)
        for frame in source:
            if should_stop is not None and should_stop():
                break
            result = cascade.run(frame.image, context(stats.frames), channel_order=frame.channel_order)
            stats.add(result)
            if sender is not None and result.event is not None:
                domain, special = result.labels
                sender.offer(result.event, key=(result.context, domain, special))
            if save is not None:
                if writer is None:
                    video_size = (frame.image.shape[1], frame.image.shape[0])
                    writer = cv2.VideoWriter()
                    _open_writer(writer, save, source.fps or 30.0, video_size)
                image = fit_frame(frame.image, video_size)
                writer.write(annotate(image, frame.channel_order, result, stats.fps))
            if on_result is not None:
                on_result(frame, result, stats)
    except KeyboardInterrupt:
        pass
    finally:
        stats.ended = time.perf_counter()
        if writer is not None:
            writer.release()
        source.close()
    return stats
