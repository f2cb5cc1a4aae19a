"""The live camera page's server side: the cascades of ``visioncascade serve --cascade``, run on frames.

The browser sends small JPEG frames over a WebSocket (``/v1/live``); the server decodes them and runs the
very :class:`~visioncascade.runtime.Cascade` that ``visioncascade watch`` runs (same preprocessing, same
exported models, same thresholds), and stores events through the same group commit and rules as
``POST /v1/events``. Why the server and not the browser: see the README ("The browser page").
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visioncascade.errors import ConfigError, DataError

if TYPE_CHECKING:
    from visioncascade.runtime.cascade import Cascade, CascadeResult
    from visioncascade.runtime.config import CascadeConfig

__all__ = ["MAX_FRAME_BYTES", "LiveCascades", "check_cascade_files", "decode_frame"]

#: The largest frame the live page may send (a 640×480 JPEG is ~30–60 kB).
MAX_FRAME_BYTES = 2 * 1024 * 1024
_MAX_SIDE = 4096


def decode_frame(data: bytes) -> np.ndarray:
    """An encoded image (JPEG, PNG or WebP bytes) as a BGR uint8 array; DataError says what was wrong.

    Decoded by :func:`~visioncascade.data.images.decode_image`, the reader of ``watch``, ``predict`` and
    training, so a file gives the live page the pixels it gives them (EXIF orientation, 16-bit scaling).
    """
    import cv2  # here, with the reader that needs it too

    from visioncascade.data.images import ImageTooLargeError, decode_image

    if not data:
        raise DataError("the frame is empty; send one JPEG, PNG or WebP image per binary message")
    if len(data) > MAX_FRAME_BYTES:
        raise DataError(
            f"the frame is {len(data):,} bytes, more than {MAX_FRAME_BYTES:,}; send a smaller JPEG "
            "(the page sends at most 640 px wide)"
        )
    try:
        image = decode_image(data, "frame", max_side=_MAX_SIDE)  # the size checked from the header first
    except ImageTooLargeError as exc:
        what = f"is {exc.size[0]}×{exc.size[1]} px" if exc.size else "has more pixels than Pillow decodes"
        raise DataError(f"the frame {what}; send at most {_MAX_SIDE} px a side") from None
    except DataError:
        raise DataError("the frame is not a decodable JPEG, PNG or WebP image") from None
    # OpenCV's conversions: a tenth of the time of NumPy's strided copies on a 640x480 frame.
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR)


def check_cascade_files(paths: list[Path]) -> dict[str, CascadeConfig]:
    """Each cascade file validated (without opening its models), by its ``name``.

    Raises :class:`ConfigError` for a broken file or two files with the same ``name``.
    """
    from visioncascade.runtime.config import load_cascade_config

    configs: dict[str, CascadeConfig] = {}
    where: dict[str, Path] = {}
    for path in paths:
        config = load_cascade_config(path)
        if config.name in configs:
            raise ConfigError(
                f"cascade files {where[config.name]} and {path} are both named {config.name!r}; "
                "give each cascade file a unique `name`"
            )
        configs[config.name], where[config.name] = config, Path(path)
    return configs


def _stage(predictor: Any, threshold: float) -> dict[str, Any]:
    spec = predictor.spec
    return {"model": spec.name, "version": spec.version, "labels": list(spec.labels), "threshold": threshold}


def _describe(cascade: Cascade) -> dict[str, Any]:
    config = cascade.config
    return {
        "name": config.name,
        "contexts": list(config.specialists),
        "domain": _stage(cascade.domain, config.domain.threshold),
        "specialists": {
            context: _stage(cascade.specialist(context)[2], stage.threshold)
            for context, stage in config.specialists.items()
        },
        "min_interval_s": config.api.min_interval_s if config.api else 1.0,
    }


class LiveCascades:
    """Cascade files opened once, every specialist loaded, each cascade guarded by a lock.

    Raises :class:`ConfigError` for a broken cascade file or two files with the same ``name``.
    """

    def __init__(self, paths: list[Path]) -> None:
        from visioncascade.runtime.cascade import Cascade

        self._cascades: dict[str, Cascade] = {}
        self._locks: dict[str, threading.Lock] = {}
        for name, config in check_cascade_files(paths).items():
            cascade = Cascade(config)
            cascade.warm_up()  # a dozen specialists load now, not on a user's first frame
            self._cascades[name] = cascade
            self._locks[name] = threading.Lock()
        self._descriptions = {name: _describe(c) for name, c in self._cascades.items()}

    def __len__(self) -> int:
        return len(self._cascades)

    @property
    def names(self) -> list[str]:
        """The cascades' names, in the order given."""
        return list(self._cascades)

    def get(self, name: str) -> Cascade | None:
        """The cascade called ``name`` (None when there is none)."""
        return self._cascades.get(name)

    def describe(self, name: str) -> dict[str, Any]:
        """Cascade ``name``'s contexts, models, labels and thresholds (what the page offers)."""
        return self._descriptions[name]

    def describe_all(self) -> list[dict[str, Any]]:
        """:meth:`describe` of every cascade, in the order given."""
        return list(self._descriptions.values())

    def run(self, name: str, frame: bytes, context: str) -> CascadeResult:
        """Decode ``frame`` and run cascade ``name`` on it for ``context`` (blocking; call in a thread)."""
        image = decode_frame(frame)
        with self._locks[name]:  # LiteRT interpreters are not thread-safe; ONNX sessions cost ~1 ms
            return self._cascades[name].run(image, context, channel_order="bgr")
