"""Frame sources: camera index, video file, folder of images, RTSP/HTTP stream.

Live sources (cameras, streams, and video files played in ``realtime``) are read by a background thread
into a one-frame slot: when inference falls behind, older frames are *dropped* (and counted) instead of
queued, so results stay live. Offline sources (folders, video files by default) yield every frame.

A folder's images are read with :func:`~visioncascade.data.read_image` (upright by their EXIF orientation;
reduced to ``max_short_side`` when given, as training keeps photos). An image that cannot be read is
skipped and listed in :attr:`FrameSource.unreadable`; it does not end the run.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from visioncascade.data.images import IMAGE_SUFFIXES, _unreadable, read_images
from visioncascade.errors import ConfigError, DataError

__all__ = ["Frame", "FrameSource", "open_source"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".y4m", ".mpg", ".mpeg")


class Frame:
    """A frame and how its channels are laid out (``"bgr"`` from OpenCV, ``"rgb"`` from image files)."""

    __slots__ = ("channel_order", "image", "index", "timestamp")

    def __init__(self, image: np.ndarray, channel_order: str, index: int):
        self.image = image
        self.channel_order = channel_order
        self.index = index
        self.timestamp = time.time()


class FrameSource:
    """Iterate to get :class:`Frame` objects; ``dropped`` counts frames skipped because inference lagged.

    ``unreadable`` lists ``(file, why)`` for each image of a folder that could not be read (and was skipped).
    An error raised while reading (in the reader thread of a live source, too) ends the iteration with it.
    """

    def __init__(
        self,
        name: str,
        read: Callable[[], Frame | None],
        live: bool,
        fps: float | None = None,
        release: Callable[[], None] | None = None,
        pace: bool = False,
    ):
        self.name = name
        self.live = live
        self.fps = fps
        self.dropped = 0
        self.read_frames = 0
        self.unreadable: list[tuple[Path, str]] = []
        self._read = read
        self._release = release
        self._pace = pace
        self._slot: Frame | None = None
        self._done = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: BaseException | None = None

    @property
    def unreadable_summary(self) -> str:
        """The unreadable images grouped by why (``""`` when there were none)."""
        return _unreadable(self.unreadable) if self.unreadable else ""

    def _reader(self) -> None:
        interval = 1.0 / self.fps if self._pace and self.fps else 0.0
        next_due = time.perf_counter()
        try:
            while not self._stop.is_set():
                frame = self._read()
                if frame is None:
                    break
                with self._cond:
                    self.read_frames += 1
                    if self._slot is not None:
                        self.dropped += 1
                    self._slot = frame
                    self._cond.notify()
                if interval:
                    next_due += interval
                    delay = next_due - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
        except BaseException as exc:  # handed to the consumer: a dead reader must not leave it waiting
            self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify()

    def __iter__(self) -> Iterator[Frame]:
        if not self.live:
            while True:
                frame = self._read()
                if frame is None:
                    return
                self.read_frames += 1
                yield frame
        self._thread = threading.Thread(target=self._reader, name=f"frames:{self.name}", daemon=True)
        self._thread.start()
        while True:
            with self._cond:
                while self._slot is None and not self._done:
                    self._cond.wait(timeout=0.5)
                if self._slot is None and self._done:
                    if self._error is not None:
                        raise self._error
                    return
                frame, self._slot = self._slot, None
            yield frame

    def close(self) -> None:
        """Stop reading and release the device or file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._release is not None:
            self._release()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _capture(target: int | str, what: str) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        raise DataError(f"cannot open {what} {target!r}; check that it exists and that OpenCV can decode it")
    return capture


def _capture_reader(capture: cv2.VideoCapture) -> Callable[[], Frame | None]:
    counter = iter(range(1 << 62))

    def read() -> Frame | None:
        ok, image = capture.read()
        return Frame(image, "bgr", next(counter)) if ok else None

    return read


def open_source(
    source: str | int | Path,
    realtime: bool | None = None,
    max_frames: int | None = None,
    max_short_side: int | None = None,
) -> FrameSource:
    """Open ``source``: a camera index (``0``), a video file, a folder of images or an rtsp/http(s) URL.

    ``realtime`` plays a video file at its own frame rate and drops frames inference cannot keep up with (the
    default for cameras and streams); otherwise every frame is processed. ``max_frames`` stops early.
    ``max_short_side`` reduces a folder's images on decoding (pass :attr:`Cascade.frame_cap
    <visioncascade.runtime.Cascade.frame_cap>`); camera and video frames are passed on as captured.
    """
    text = str(source)
    if isinstance(source, int) or (text.isascii() and text.isdigit()):  # "²" and "٣" are digits to str
        capture = _capture(int(text), "camera")
        src = FrameSource(f"camera {text}", _capture_reader(capture), live=True, release=capture.release)
    elif text.startswith(("rtsp://", "rtmp://", "http://", "https://")):
        capture = _capture(text, "stream")
        src = FrameSource(text, _capture_reader(capture), live=True, release=capture.release)
    else:
        path = Path(text).expanduser()
        if path.is_dir():
            files = sorted(
                p
                for p in path.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
            )
            if not files:
                raise DataError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            decoded = read_images(files, max_short_side)  # the next photos decode while this one runs
            index = iter(range(len(files)))

            def read_folder() -> Frame | None:
                for file, image, why in decoded:
                    number = next(index)
                    if image is not None:
                        return Frame(image, "rgb", number)
                    src.unreadable.append((file, why))
                return None

            def stop_decoding() -> None:
                with contextlib.suppress(ValueError):  # "generator already executing": a reader still in it
                    decoded.close()

            src = FrameSource(
                str(path),
                read_folder,
                live=bool(realtime),
                fps=30.0,
                pace=bool(realtime),
                release=stop_decoding,
            )
        elif path.is_file():
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                raise DataError(
                    f"{path} is not a video file ({', '.join(VIDEO_SUFFIXES)}) or a folder of images"
                )
            capture = _capture(str(path), "video file")
            fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
            src = FrameSource(
                str(path),
                _capture_reader(capture),
                live=bool(realtime),
                fps=fps,
                release=capture.release,
                pace=bool(realtime),
            )
        else:
            raise ConfigError(
                f"source {text!r} is not a camera index, an existing video file or folder, or an rtsp/http URL"
            )
    if max_frames is not None:
        inner = src._read

        def limited() -> Frame | None:
            return inner() if src.read_frames < max_frames else None

        src._read = limited
    return src
