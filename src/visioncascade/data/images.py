"""Decoding, colour conversion and resizing of single images.

:func:`prepare_image` is *the* definition of how a frame becomes model input; the training pipeline,
evaluation and every runtime backend call it, so they cannot drift apart.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import struct
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visioncascade.errors import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageTooLargeError",
    "decode_image",
    "prepare_image",
    "read_image",
    "read_images",
    "reduce_image",
    "to_color_mode",
]

IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".heic",
    ".heif",
    ".avif",
)
#: An iPhone's own photo format; Pillow reads it with the optional pi-heif plugin (``visioncascade[heic]``).
HEIF_SUFFIXES = (".heic", ".heif")


def read_image(path: str | Path, max_short_side: int | None = None) -> np.ndarray:
    """Decode an image file to ``uint8`` HxW (grayscale) or HxWx3 (RGB) pixels.

    Palette, 16-bit and alpha images are converted (alpha is dropped; 16-bit grayscale is scaled by the
    type's range, ``round(v / 257)``, never by the image's own maximum). An EXIF orientation tag (phone
    cameras store portrait photos as rotated landscape pixels plus such a tag) is applied, so the pixels
    are upright as every image viewer, OpenCV's decoder (the live page's frames) and Apple's Vision
    framework show them. With ``max_short_side``, an image whose shorter side is longer is reduced to that
    shorter side, aspect ratio kept (see :func:`reduce_image`; a JPEG is decoded at 1/2, 1/4 or 1/8 scale
    where that still leaves enough pixels, which is much faster). Raises :class:`DataError` when the file
    is not a readable image.
    """
    return _read(Path(path), None, max_short_side)


class ImageTooLargeError(DataError):
    """An image larger than allowed, found from its header before its pixels were decoded.

    ``size`` is its (width, height), or None when Pillow refused it as a decompression bomb (more than
    twice ``PIL.Image.MAX_IMAGE_PIXELS`` pixels) before telling its size.
    """

    def __init__(self, message: str, size: tuple[int, int] | None) -> None:
        super().__init__(message)
        self.size = size


def decode_image(data: bytes, name: str = "image", max_side: int | None = None) -> np.ndarray:
    """Decode an encoded image (its file's bytes) exactly as :func:`read_image` decodes the file: same
    colour modes, 16-bit scaling and EXIF orientation. ``name`` is what :class:`DataError` calls it.

    With ``max_side``, an image longer than that on a side raises :class:`ImageTooLargeError` from its
    header alone, before any pixel is decoded (a small PNG can hold a 30000×30000 image of 900 MB).
    """
    return _read(Path(name), data, None, max_side)


def read_images(
    paths: Iterable[str | Path], max_short_side: int | None = None, workers: int | None = None
) -> Iterator[tuple[Path, np.ndarray | None, str]]:
    """``(path, image, "")`` for each of ``paths`` in order, or ``(path, None, why)`` for one that cannot be
    read, each as :func:`read_image` reads it.

    The next images are decoded by ``workers`` threads (default: one per core, at most 4) while the caller
    works on this one; decoders release the GIL, so a folder of photos decodes on every core. At most twice
    ``workers`` images are decoded ahead. Closing the iterator early cancels the decodes not yet started.
    """
    workers = workers or min(4, os.cpu_count() or 1)
    upcoming = iter(paths)
    pending: deque[tuple[Path, Future[np.ndarray]]] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")

    def fill() -> None:
        while len(pending) < 2 * workers:
            path = next(upcoming, None)
            if path is None:
                return
            pending.append((Path(path), pool.submit(read_image, path, max_short_side)))

    try:
        fill()
        while pending:
            path, future = pending.popleft()
            fill()
            try:
                image = future.result()
            except DataError as exc:
                yield path, None, str(exc)
                continue
            yield path, image, ""
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _read(
    path: Path, data: bytes | None, max_short_side: int | None, max_side: int | None = None
) -> np.ndarray:
    """:func:`read_image` of ``path``, or of ``data`` (its bytes, already read) when given; ``max_side``: see
    :func:`decode_image`."""
    if path.suffix.lower() in HEIF_SUFFIXES and not _heif_plugin():
        raise DataError(
            f"cannot read image {path}: HEIC/HEIF images need the optional pi-heif package; install it "
            "with pip install 'visioncascade[heic]', or convert the images to JPEG"
        )
    source = path if data is None else io.BytesIO(data)
    try:
        with Image.open(source) as img:  # reads the header only: the size is known, no pixel decoded yet
            if max_side is not None and max(img.size) > max_side:
                raise ImageTooLargeError(
                    f"cannot read image {path}: it is {img.size[0]}×{img.size[1]} px, more than {max_side} px "
                    "a side",
                    img.size,
                )
            if max_short_side is not None and min(img.size) > max_short_side:
                scale = max_short_side / min(img.size)
                img.draft(None, (math.ceil(img.size[0] * scale), math.ceil(img.size[1] * scale)))
            img.load()
            _apply_orientation(img)
            array = _to_array(img)
    except Image.DecompressionBombError as exc:
        if max_side is None:
            raise DataError(f"cannot read image {path}: {exc}") from exc
        raise ImageTooLargeError(
            f"cannot read image {path}: it has more than {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels, more "
            f"than {max_side} px a side",
            None,
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        # Pillow's messages often name the file again ("cannot identify image file 'a/b.jpg'"), or the
        # in-memory copy of its bytes ("... <_io.BytesIO object at 0x...>").
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)  # "[Errno 2] ..."
        for named in (repr(str(path)), str(path), repr(source)):
            reason = reason.replace(named, "")
        reason = reason.strip(" :") or type(exc).__name__
        raise DataError(f"cannot read image {path}: {reason}") from exc
    return array if max_short_side is None else reduce_image(array, max_short_side)


def reduce_image(image: np.ndarray, max_short_side: int) -> np.ndarray:
    """``image`` with its shorter side reduced to ``max_short_side`` (area interpolation, aspect ratio
    kept), or ``image`` itself when that side is not longer.

    Datasets keep their images this way (:func:`~visioncascade.data.load_dataset`), so that a folder of
    12-megapixel phone photos fits in memory. A model's input is far smaller: after a reduction to at
    least four times the input size, :func:`prepare_image` gives the input it gives from the full photo
    to within 2 levels of 255 (0.1 on average; BENCHMARKS.md, "Phone photos").
    """
    height, width = image.shape[:2]
    if min(height, width) <= max_short_side:
        return image
    scale = max_short_side / min(height, width)
    size = (max(max_short_side, round(width * scale)), max(max_short_side, round(height * scale)))
    reduced = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return reduced.reshape(size[1], size[0], *image.shape[2:])


def _unreadable(bad: list[tuple[Path, str]], limit: int = 5) -> str:
    """The unreadable files, grouped by why: ``cannot read image a.png: why; 7 more like it (b.heic...)``."""
    groups: dict[str, list[Path]] = {}
    for file, message in bad:
        groups.setdefault(message.removeprefix(f"cannot read image {file}: "), []).append(file)
    parts = []
    for reason, files in list(groups.items())[:limit]:
        more = f" ({len(files) - 1} more like it, e.g. {files[1]})" if len(files) > 1 else ""
        parts.append(f"cannot read image {files[0]}: {reason}{more}")
    if len(groups) > limit:
        parts.append(f"and {sum(len(f) for f in list(groups.values())[limit:])} more")
    return "; ".join(parts)


@functools.cache
def _heif_plugin() -> bool:
    """Register pi-heif's Pillow plugin, once; ``False`` when pi-heif is not installed."""
    try:
        import pi_heif
    except ImportError:
        return False
    pi_heif.register_heif_opener()
    return True


def _to_array(img: Image.Image) -> np.ndarray:
    if img.mode.startswith("I;16") or img.mode == "I":
        # 16-bit grayscale (Pillow opens some as 32-bit "I"): scaled by the type's range, 0..65535 to 0..255
        # (65535 / 255 = 257), the same for every image, so a dark image stays dark as a camera shows it.
        arr = np.asarray(img, dtype=np.float64)
        return np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
    if img.mode in ("L", "1"):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if img.mode == "LA":
        return np.asarray(img.convert("L"), dtype=np.uint8)
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8)  # no needless copy


def _apply_orientation(img: Image.Image) -> None:
    """Turn ``img`` upright in place by its EXIF orientation tag, if it has one other than 1.

    An unreadable EXIF block leaves the pixels as stored, as OpenCV does: the image itself is fine.
    """
    with contextlib.suppress(OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error):
        ImageOps.exif_transpose(img, in_place=True)


def to_color_mode(image: np.ndarray, color_mode: str) -> np.ndarray:
    """Return ``image`` (HxW, HxWx1, HxWx3 or HxWx4 uint8) as HxWxC with C=1 (grayscale) or 3 (rgb)."""
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise DataError(f"expected an HxW or HxWxC image with 1, 3 or 4 channels, got shape {image.shape}")
    if image.shape[-1] == 4:
        image = image[..., :3]
    channels = image.shape[-1]
    if color_mode == "grayscale":
        if channels == 1:
            return image
        gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        return gray[..., None]
    if color_mode == "rgb":
        if channels == 3:
            return image
        return np.repeat(image, 3, axis=-1)
    raise DataError(f"unknown colour mode {color_mode!r}; use 'grayscale' or 'rgb'")


def prepare_image(
    image: np.ndarray, size: tuple[int, int], color_mode: str, channel_order: str = "rgb"
) -> np.ndarray:
    """Convert one uint8 image to model input: ``size`` = (height, width), ``color_mode`` channels.

    ``channel_order`` says how a 3-channel ``image`` is laid out: ``"rgb"`` (PIL, camera APIs) or ``"bgr"``
    (OpenCV's ``imread`` and ``VideoCapture``); the model always receives RGB.

    Resizing uses OpenCV's area interpolation when shrinking (no aliasing) and bilinear when enlarging;
    this is the ``"area"`` resize named in every :class:`~visioncascade.spec.ModelSpec`. Returns uint8
    HxWxC; the model itself rescales pixel values.
    """
    image = np.asarray(image)
    if channel_order not in ("rgb", "bgr"):
        raise DataError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    if channel_order == "bgr" and image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., 2::-1]
    image = to_color_mode(image, color_mode)
    height, width = int(size[0]), int(size[1])
    if image.shape[:2] != (height, width):
        shrink = image.shape[0] >= height and image.shape[1] >= width
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        resized = cv2.resize(image, (width, height), interpolation=interp)
        image = resized.reshape(height, width, image.shape[-1])
    return np.ascontiguousarray(image, dtype=np.uint8)
