"""Decoding, colour conversion and resizing of single images.

:func:`prepare_image` is *the* definition of how a frame becomes model input; the training pipeline,
evaluation and every runtime backend call it, so they cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from visioncascade.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "prepare_image", "read_image", "to_color_mode"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to ``uint8`` HxW (grayscale) or HxWx3 (RGB) pixels.

    Palette, 16-bit and alpha images are converted (alpha is dropped). Raises :class:`DataError` when the
    file is not a readable image.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("L", "1", "I;16", "I"):
                if img.mode in ("I;16", "I"):
                    arr = np.asarray(img, dtype=np.float64)
                    top = arr.max() or 1.0
                    return np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
                return np.asarray(img.convert("L"), dtype=np.uint8)
            if img.mode == "LA":
                return np.asarray(img.convert("L"), dtype=np.uint8)
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        # Pillow's messages often name the file again ("cannot identify image file 'a/b.jpg'").
        reason = (
            str(exc).replace(repr(str(path)), "").replace(str(path), "").strip(" :") or type(exc).__name__
        )
        raise DataError(f"cannot read image {path}: {reason}") from exc


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
