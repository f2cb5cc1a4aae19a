"""``ModelSpec``: everything needed to feed a model correctly, travelling with every artifact.

A spec is written as ``spec.json`` beside ``model.keras`` in a run folder and beside every exported
artifact. Runtimes read labels and preprocessing from it, never from the caller.

The input contract of every visioncascade model:

* the caller resizes the frame to ``input_size`` (height, width) with :func:`resize_image` semantics
  (``preprocessing.resize``), converts it to ``color_mode`` (``"grayscale"``: 1 channel, ``"rgb"``: 3
  channels in R, G, B order) and passes raw pixel values ``0..255`` as float32, shape ``(N, H, W, C)``;
* everything after that (rescaling, channel repetition, the Sobel edge channel, calibration) happens
  inside the model, so exported models carry it.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from visioncascade.errors import ConfigError

__all__ = ["SPEC_FORMAT_VERSION", "ColorMode", "ModelSpec"]

SPEC_FORMAT_VERSION = 1
ColorMode = Literal["grayscale", "rgb"]
_COLOR_MODES = ("grayscale", "rgb")


@dataclass(frozen=True)
class ModelSpec:
    """The description of a trained classifier's inputs and outputs.

    Attributes:
        name: Short model name (used for artifact file names).
        labels: Class labels, in output order.
        input_size: ``(height, width)`` the model takes.
        color_mode: ``"grayscale"`` (1 channel) or ``"rgb"`` (3 channels, RGB order).
        architecture: Registry name of the architecture (``"scratch"``, ``"mobilenet_v2"``).
        architecture_params: The resolved keyword arguments the architecture was built with.
        edges: Whether the model adds a Sobel edge-magnitude channel internally.
        temperature: Calibration temperature; already applied inside the model's softmax.
        logit_offsets: Calibration offsets added to ``logits / temperature``, one per label (the prior
            correction of a class-weighted model; empty: none); already applied inside the softmax.
        preprocessing: How a frame becomes the model input (resize method, value range); informative
            for app developers, applied by :func:`visioncascade.data.images.prepare_image`.
        version: Model version (free text, default "1").
        data_fingerprint: SHA-256 prefix of the training data, to tell which data a model saw.
        visioncascade_version: Version of visioncascade that wrote the spec.
        extra: Free-form metadata (author, license, description...).
    """

    name: str
    labels: tuple[str, ...]
    input_size: tuple[int, int]
    color_mode: ColorMode
    architecture: str
    architecture_params: dict[str, Any] = field(default_factory=dict)
    edges: bool = False
    temperature: float = 1.0
    logit_offsets: tuple[float, ...] = ()
    preprocessing: dict[str, Any] = field(
        default_factory=lambda: {
            "resize": "area",
            "input_range": [0, 255],
            "input_dtype": "float32",
            "layout": "NHWC",
        }
    )
    version: str = "1"
    data_fingerprint: str = ""
    visioncascade_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = SPEC_FORMAT_VERSION

    def __post_init__(self) -> None:
        labels = tuple(str(label) for label in self.labels)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        if len(labels) < 2:
            raise ConfigError(f"a ModelSpec needs at least 2 labels, got {list(labels)}")
        if len(set(labels)) != len(labels):
            raise ConfigError(f"ModelSpec labels must be unique, got {list(labels)}")
        if self.color_mode not in _COLOR_MODES:
            raise ConfigError(f"color_mode must be one of {_COLOR_MODES}, got {self.color_mode!r}")
        if len(self.input_size) != 2 or min(self.input_size) < 8:
            raise ConfigError(f"input_size must be (height, width) of at least 8 px, got {self.input_size}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        offsets = tuple(float(v) for v in self.logit_offsets)
        object.__setattr__(self, "logit_offsets", offsets)
        if offsets and (len(offsets) != len(labels) or not all(math.isfinite(v) for v in offsets)):
            raise ConfigError(
                f"logit_offsets must be one finite number per label ({len(labels)}) or empty, got {list(offsets)}"
            )

    @property
    def channels(self) -> int:
        """Number of input channels the model takes (1 for grayscale, 3 for RGB)."""
        return 1 if self.color_mode == "grayscale" else 3

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)`` of one input image."""
        return (self.input_size[0], self.input_size[1], self.channels)

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return len(self.labels)

    def replace(self, **changes: Any) -> ModelSpec:
        """Return a copy with ``changes`` applied (specs are immutable)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the spec."""
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["input_size"] = list(self.input_size)
        data["logit_offsets"] = list(self.logit_offsets)
        return data

    def to_json(self) -> str:
        """The spec as pretty JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Build a spec from :meth:`to_dict` output; unknown or missing keys, and values of the wrong type,
        are a :class:`ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"a spec must be a JSON object, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown ModelSpec fields {unknown}; known fields are {sorted(known)}")
        version = data.get("format_version", SPEC_FORMAT_VERSION)
        if not isinstance(version, int) or isinstance(version, bool):
            raise ConfigError(f"spec format_version must be a whole number, got {version!r}")
        if version > SPEC_FORMAT_VERSION:
            raise ConfigError(
                f"spec format_version {version} is newer than this visioncascade understands "
                f"({SPEC_FORMAT_VERSION}); upgrade visioncascade"
            )
        missing = sorted(
            name
            for name, f in cls.__dataclass_fields__.items()
            if name not in data and f.default is MISSING and f.default_factory is MISSING
        )
        if missing:
            raise ConfigError(f"spec lacks the fields {missing}")
        labels, size = data["labels"], data["input_size"]
        if not isinstance(labels, list | tuple) or not all(isinstance(v, str | int | float) for v in labels):
            raise ConfigError(f"spec labels must be a list of names, got {labels!r}")
        if not isinstance(size, list | tuple):
            raise ConfigError(f"spec input_size must be [height, width] in pixels, got {size!r}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:  # a field of another type (a number for a list, say)
            raise ConfigError(f"spec has a field of the wrong type: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Parse :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"spec is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("spec JSON must be an object")
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        """Write the spec as JSON to ``path`` and return it."""
        path = Path(path)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelSpec:
        """Read a spec from a JSON file (or from ``spec.json`` in a folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / "spec.json"
        if not path.is_file():
            raise ConfigError(f"no spec at {path}: expected the spec.json that visioncascade writes")
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except ConfigError as exc:  # say which file, so that it can be mended or written again
            raise ConfigError(f"{path}: {exc}") from None
