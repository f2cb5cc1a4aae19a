"""``Cascade``: a domain model, then the specialist routed by the user's context, then an event.

A frame passes stage 1 when the domain model's top probability is strictly above its threshold (and its
top label may continue); the context picks the specialist (possibly restricted by the domain label); the
frame becomes an *event* when the specialist's top probability is strictly above its threshold. Events
carry every stage's model name, version, labels and full probability vector.
"""

from __future__ import annotations

import datetime as _dt
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from visioncascade.data.datasets import load_cap
from visioncascade.data.images import prepare_image
from visioncascade.errors import VisionCascadeError
from visioncascade.runtime.config import CascadeConfig, StageConfig, load_cascade_config
from visioncascade.runtime.predictors import Predictor, find_spec, load_predictor

__all__ = ["Cascade", "CascadeResult", "Decision", "StageResult"]

Decision = Literal["no_domain", "filtered", "no_specialist", "event"]


@dataclass
class StageResult:
    """One model's answer on one frame."""

    stage: str  # "domain" or the specialist's context key
    model: str
    version: str
    labels: list[str]
    probabilities: list[float]
    top_label: str
    top_probability: float
    threshold: float
    passed: bool
    latency_ms: float

    def as_event_stage(self) -> dict[str, Any]:
        """The stage as the API's event payload expects it (probabilities renormalised to sum to 1)."""
        total = sum(self.probabilities) or 1.0
        return {
            "model": self.model,
            "version": self.version,
            "labels": self.labels,
            "probabilities": [p / total for p in self.probabilities],
        }


@dataclass
class CascadeResult:
    """What the cascade did with one frame."""

    context: str
    decision: Decision
    stages: list[StageResult]
    latency_ms: float
    specialist: str | None = None
    event: dict[str, Any] | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def is_event(self) -> bool:
        """True when the frame passed both stages."""
        return self.decision == "event"

    @property
    def labels(self) -> tuple[str | None, str | None]:
        """(domain top label, specialist top label or None)."""
        domain = self.stages[0].top_label if self.stages else None
        special = self.stages[1].top_label if len(self.stages) > 1 else None
        return domain, special

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class Cascade:
    """Runs a :class:`CascadeConfig` on frames. Specialists load on first use and stay cached."""

    def __init__(self, config: CascadeConfig):
        self.config = config
        self.domain = self._load(config.domain)
        self._specialists: dict[Path, Predictor] = {}

    @classmethod
    def from_file(cls, path: str | Path) -> Cascade:
        """Load and validate a cascade YAML file, then open its domain model."""
        return cls(load_cascade_config(path))

    @staticmethod
    def _load(stage: StageConfig) -> Predictor:
        return load_predictor(stage.model, backend=stage.backend or "auto")

    def specialist(self, context: str) -> tuple[str, StageConfig, Predictor]:
        """The routed specialist for ``context``, loading it on first use (unknown context: ConfigError)."""
        key, stage = self.config.specialist_for(context)
        predictor = self._specialists.get(stage.model)
        if predictor is None:
            predictor = self._specialists[stage.model] = self._load(stage)
        return key, stage, predictor

    def warm_up(self, contexts: list[str] | None = None) -> None:
        """Load the specialists of ``contexts`` (all when None) now instead of on their first frame."""
        for context in contexts or list(self.config.specialists):
            self.specialist(context)

    @property
    def frame_cap(self) -> int:
        """The shorter side to decode image files at for this cascade (``read_image(path, frame_cap)``).

        :func:`~visioncascade.data.load_cap` of every model's input size: training keeps a folder's photos
        reduced the same way, so a photo gives the cascade the input it gave training, and a 12-megapixel
        photo decodes in a fraction of the time and memory. A specialist whose spec cannot be found yet is
        left out (it fails with that error when its context first comes).
        """
        sizes = [self.domain.spec.input_size]
        for stage in self.config.specialists.values():
            loaded = self._specialists.get(stage.model)
            try:
                sizes.append(loaded.spec.input_size if loaded else find_spec(stage.model).input_size)
            except VisionCascadeError:
                continue
        return load_cap([side for size in sizes for side in size])

    @property
    def loaded_specialists(self) -> int:
        """How many specialist models are open."""
        return len(self._specialists)

    def run(
        self,
        frame: np.ndarray,
        context: str,
        *,
        channel_order: str = "rgb",
        captured_at: _dt.datetime | None = None,
    ) -> CascadeResult:
        """Run the cascade on one raw uint8 frame (any size, RGB or OpenCV BGR, or grayscale)."""
        start = time.perf_counter()
        key, stage_cfg, specialist = self.specialist(context)  # unknown contexts fail before any work
        prepared: dict[tuple, np.ndarray] = {}

        def run_stage(name: str, predictor: Predictor, cfg: StageConfig) -> StageResult:
            t0 = time.perf_counter()
            spec = predictor.spec
            cache_key = (spec.input_size, spec.color_mode)
            x = prepared.get(cache_key)
            if x is None:
                x = prepared[cache_key] = prepare_image(
                    frame, spec.input_size, spec.color_mode, channel_order
                )[None].astype(np.float32)
            probs = np.asarray(predictor.predict_batch(x)[0], dtype=np.float64)
            top = int(np.argmax(probs))
            return StageResult(
                stage=name,
                model=spec.name,
                version=spec.version,
                labels=list(spec.labels),
                probabilities=[float(p) for p in probs],
                top_label=spec.labels[top],
                top_probability=float(probs[top]),
                threshold=cfg.threshold,
                passed=bool(probs[top] > cfg.threshold),
                latency_ms=(time.perf_counter() - t0) * 1000.0,
            )

        domain = run_stage("domain", self.domain, self.config.domain)
        stages = [domain]
        decision: Decision
        allowed = self.config.domain.continue_on
        if not domain.passed:
            decision = "no_domain"
        elif (allowed is not None and domain.top_label not in allowed) or (
            stage_cfg.domain_labels is not None and domain.top_label not in stage_cfg.domain_labels
        ):
            decision = "filtered"
        else:
            special = run_stage(key, specialist, stage_cfg)
            stages.append(special)
            decision = "event" if special.passed else "no_specialist"
        result = CascadeResult(
            context=context,
            decision=decision,
            stages=stages,
            latency_ms=(time.perf_counter() - start) * 1000.0,
            specialist=key if len(stages) > 1 else None,
            timings_ms={s.stage if s.stage == "domain" else "specialist": s.latency_ms for s in stages},
        )
        if decision == "event":
            when = captured_at or _dt.datetime.now(_dt.UTC)
            result.event = {
                "event_id": str(uuid.uuid4()),
                "context": context,
                "captured_at": when.isoformat(),
                "stages": [s.as_event_stage() for s in stages],
            }
        return result
