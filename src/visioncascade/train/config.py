"""``TrainConfig``: the resolved settings of one training run (written to ``config.yaml``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from visioncascade.errors import ConfigError
from visioncascade.train.workers import auto_jobs

__all__ = ["DEFAULT_WEIGHT_DECAY", "QUICK", "TrainConfig", "arm_configs"]

#: What ``--quick`` changes (options given explicitly still win).
QUICK = {
    "folds": 2,
    "epochs": 12,
    "patience": 4,
    "average_epochs": 3,
    "image_size": {"scratch": 28, "mobilenet_v2": 48},
}

_DEFAULTS = {"folds": 5, "epochs": 300, "patience": 10}  # and the architecture's average_epochs

#: AdamW's decoupled weight decay unless told otherwise (see BENCHMARKS.md: five seeds of the scratch CNN on
#: BreastMNIST, test accuracy 0.854 → 0.872 on average, ROC-AUC unchanged).
DEFAULT_WEIGHT_DECAY = 0.05


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run. Build it with :meth:`build` to get validation and defaults.

    ``image_size`` ``None`` means the architecture's default; ``learning_rate`` ``None`` likewise.
    ``weight_decay``: AdamW's decoupled weight decay (0 for plain Adam).
    ``average_epochs``: after each fit, train that many epochs more at the initial learning rate and
    keep the average of their weights (stochastic weight averaging; 0 turns it off; ``build`` gives the
    architecture's default: 20 for ``scratch``, 5 for ``mobilenet_v2``).
    ``folds`` 0 skips cross-validation. ``refit``: after early stopping on val, train the final model
    again on train + val for the best epoch count (``build`` turns it off for ``--quick``). ``jobs``: worker
    processes that train the final model and the folds side by side (1: one after the other in this
    process; ``build`` picks one per CPU core, at most ``folds + 1``). Results are reproducible for a given
    seed and ``jobs``; a different ``jobs`` changes TensorFlow's threads and so the last digits of a fit.
    """

    arch: str = "scratch"
    arch_params: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None
    color_mode: str = "auto"
    edges: bool = True
    augment: bool = True
    augmentation: dict[str, Any] = field(default_factory=dict)
    class_weight: str = "auto"
    folds: int = 5
    epochs: int = 300
    patience: int = 10
    batch_size: int = 32
    learning_rate: float | None = None
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    average_epochs: int = 0  # what runs before weight averaging did; build() gives the arch's default
    seed: int = 0
    quick: bool = False
    refit: bool = True
    jobs: int = 1

    @classmethod
    def build(
        cls,
        *,
        arch: str = "scratch",
        weights: str | None = None,
        freeze: int | None = None,
        alpha: float | None = None,
        image_size: int | None = None,
        color_mode: str = "auto",
        edges: bool = True,
        augment: bool = True,
        class_weight: str = "auto",
        folds: int | None = None,
        epochs: int | None = None,
        patience: int | None = None,
        batch_size: int = 32,
        learning_rate: float | None = None,
        weight_decay: float | None = None,
        average_epochs: int | None = None,
        seed: int = 0,
        quick: bool = False,
        arch_params: dict[str, Any] | None = None,
        refit: bool | None = None,
        jobs: int | None = None,
    ) -> TrainConfig:
        """Validate options (as the CLI passes them) and fill in defaults and ``--quick`` values."""
        from visioncascade.models import get_architecture, resolve_params

        architecture = get_architecture(arch)
        params = dict(arch_params or {})
        for key, value in (("weights", weights), ("freeze", freeze), ("alpha", alpha)):
            if value is None:
                continue
            if key not in architecture.defaults:
                raise ConfigError(f"--{key} applies to mobilenet_v2 only, not to architecture {arch!r}")
            params[key] = value
        resolve_params(arch, params)  # unknown parameters fail here
        defaults = {**_DEFAULTS, "average_epochs": architecture.default_average_epochs}
        chosen = {"folds": folds, "epochs": epochs, "patience": patience, "average_epochs": average_epochs}
        for key, value in chosen.items():
            if value is None:
                chosen[key] = QUICK[key] if quick else defaults[key]
        if image_size is None and quick:
            image_size = QUICK["image_size"].get(arch)
        config = cls(
            arch=arch,
            arch_params=params,
            image_size=image_size,
            color_mode=color_mode,
            edges=edges,
            augment=augment,
            class_weight=class_weight,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=DEFAULT_WEIGHT_DECAY if weight_decay is None else weight_decay,
            seed=seed,
            quick=quick,
            refit=not quick if refit is None else refit,
            jobs=auto_jobs(1 + chosen["folds"]) if jobs is None else jobs,
            **chosen,
        )
        config.validate()
        return config

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        if self.color_mode not in ("auto", "grayscale", "rgb"):
            raise ConfigError(f"--color-mode must be auto, grayscale or rgb, got {self.color_mode!r}")
        if self.class_weight not in ("auto", "none"):
            raise ConfigError(f"--class-weight must be auto or none, got {self.class_weight!r}")
        if self.folds != 0 and self.folds < 2:
            raise ConfigError(f"--folds must be 0 (no cross-validation) or at least 2, got {self.folds}")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        if self.patience < 1:
            raise ConfigError(f"--patience must be at least 1, got {self.patience}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            raise ConfigError(f"--learning-rate must be in (0, 1), got {self.learning_rate}")
        if not 0 <= self.weight_decay < 1:
            raise ConfigError(f"--weight-decay must be in [0, 1) (0 turns it off), got {self.weight_decay}")
        if self.average_epochs < 0:
            raise ConfigError(
                f"--average-epochs must be 0 (no weight averaging) or more, got {self.average_epochs}"
            )
        if self.jobs < 1:
            raise ConfigError(f"--jobs must be at least 1 (1 trains in this process), got {self.jobs}")
        if self.image_size is not None and self.image_size < 8:
            raise ConfigError(f"--image-size must be at least 8 pixels, got {self.image_size}")

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with ``changes``."""
        config = replace(self, **changes)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``config.yaml``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown training settings {unknown}")
        config = cls(**data)
        config.validate()
        return config


def arm_configs(
    *, weights: str | None = None, freeze: int | None = None, **common: Any
) -> dict[str, TrainConfig]:
    """The validated :class:`TrainConfig` of each arm of ``compare``, ``scratch`` and ``transfer``
    (MobileNetV2): the same ``common`` options (:meth:`TrainConfig.build`'s but ``arch``) for both;
    ``weights`` and ``freeze`` for the transfer arm."""
    return {
        "scratch": TrainConfig.build(arch="scratch", **common),
        "transfer": TrainConfig.build(arch="mobilenet_v2", weights=weights, freeze=freeze, **common),
    }
