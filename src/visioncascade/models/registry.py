"""The architecture registry: ``create_model(name, ...)`` over named builder functions.

Importing it (and the built-in architectures' modules) does not import Keras: the builders import it when
they build, so that the CLI can check ``--arch`` and its parameters before TensorFlow loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visioncascade.errors import ConfigError

if TYPE_CHECKING:
    import keras

__all__ = ["Architecture", "create_model", "get_architecture", "list_architectures", "register_architecture"]


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: its builder, default parameters and a one-line description."""

    name: str
    builder: Callable[..., keras.Model]
    defaults: dict[str, Any]
    description: str
    default_image_size: int
    min_image_size: int
    default_learning_rate: float
    default_average_epochs: int
    check: Callable[[dict[str, Any]], None] | None = None


_REGISTRY: dict[str, Architecture] = {}


def register_architecture(
    name: str,
    *,
    defaults: dict[str, Any],
    description: str,
    default_image_size: int,
    min_image_size: int = 8,
    default_learning_rate: float = 1e-3,
    default_average_epochs: int = 20,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> Callable[[Callable[..., keras.Model]], Callable[..., keras.Model]]:
    """Decorator registering ``builder(input_shape, num_classes, edges, **params)`` under ``name``.

    ``default_learning_rate`` and ``default_average_epochs`` (epochs of weight averaging after each fit)
    are what a run of this architecture uses unless told otherwise. ``check(params)``, if given, raises a
    :class:`~visioncascade.errors.VisionCascadeError` for parameters the builder would refuse, without
    building (:func:`resolve_params` calls it: a bad value fails before anything slow starts).
    """

    def decorator(builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        _REGISTRY[name] = Architecture(
            name,
            builder,
            dict(defaults),
            description,
            default_image_size,
            min_image_size,
            default_learning_rate,
            default_average_epochs,
            check,
        )
        return builder

    return decorator


def list_architectures() -> list[str]:
    """Names of the registered architectures."""
    return sorted(_REGISTRY)


def get_architecture(name: str) -> Architecture:
    """Look up an architecture; unknown names raise :class:`ConfigError` listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown architecture {name!r}; choose one of {', '.join(list_architectures())}"
        ) from None


def resolve_params(name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The architecture's defaults updated with ``params``; unknown parameter names are an error, and so
    are values the architecture's ``check`` refuses."""
    arch = get_architecture(name)
    params = dict(params or {})
    unknown = sorted(set(params) - set(arch.defaults))
    if unknown:
        raise ConfigError(
            f"architecture {name!r} has no parameter(s) {unknown}; it takes {sorted(arch.defaults)}"
        )
    resolved = {**arch.defaults, **params}
    if arch.check is not None:
        arch.check(resolved)
    return resolved


def create_model(
    name: str,
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    edges: bool = False,
    **params: Any,
) -> keras.Model:
    """Build architecture ``name`` for ``input_shape`` (H, W, C) raw 0..255 pixels and ``num_classes``.

    The model ends in a :class:`~visioncascade.models.layers.TemperatureSoftmax` and outputs probabilities.
    """
    arch = get_architecture(name)
    height, width, channels = input_shape
    if channels not in (1, 3):
        raise ConfigError(f"models take 1 (grayscale) or 3 (RGB) channels, got {channels}")
    if min(height, width) < arch.min_image_size:
        raise ConfigError(
            f"architecture {name!r} needs images of at least {arch.min_image_size} px, got {height}x{width}; "
            f"pass --image-size {max(arch.min_image_size, arch.default_image_size)}"
        )
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    return arch.builder(
        input_shape=tuple(input_shape), num_classes=num_classes, edges=edges, **resolve_params(name, params)
    )
