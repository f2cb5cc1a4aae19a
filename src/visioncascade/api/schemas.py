"""Request and response bodies of the prediction API (pydantic; they are the OpenAPI schema).

Limits are module constants so the OpenAPI document states them: :data:`MAX_STAGES` stages per event,
:data:`MAX_LABELS` labels per stage, :data:`MAX_ID_LENGTH` characters per string, :data:`MAX_BATCH`
events per batch, probabilities summing to 1 within :data:`SUM_TOLERANCE`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

__all__ = [
    "MAX_BATCH",
    "MAX_ID_LENGTH",
    "MAX_LABELS",
    "MAX_STAGES",
    "SUM_TOLERANCE",
    "BatchIn",
    "BatchItem",
    "BatchOut",
    "CascadeOut",
    "DriftOut",
    "ErrorOut",
    "EventIn",
    "EventOut",
    "EventPage",
    "EventResult",
    "LiveContext",
    "LiveStageOut",
    "LiveStart",
    "StageIn",
    "StatsGroup",
    "StatsOut",
    "UtcDatetime",
]

MAX_STAGES = 16
MAX_LABELS = 1000
MAX_ID_LENGTH = 128
MAX_BATCH = 500
SUM_TOLERANCE = 1e-3


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("is out of the supported date range (years 1-9999 in UTC)") from exc


_NOT_ISO = (
    "must be an ISO-8601 timestamp with a timezone, e.g. 2026-01-02T03:04:05Z or "
    "2026-01-02T04:04:05+01:00; Unix timestamps (numbers) are not accepted: send the time as ISO-8601"
)


def _capture_utc(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
    """``captured_at`` as ISO-8601 text (a datetime in Python), in UTC and not before
    :data:`EARLIEST_CAPTURE` (one validator call per event).

    Refused before parsing: numbers and numeric strings (``1767225600``, ``"1.7e9"``), which pydantic would
    otherwise read as Unix timestamps. An ISO-8601 date starts with its four-digit year and a dash.
    """
    if not isinstance(value, datetime) and not (isinstance(value, str) and value[4:5] == "-"):
        raise ValueError(_NOT_ISO)
    value = _to_utc(handler(value))
    if value < EARLIEST_CAPTURE:
        raise ValueError(f"is before {EARLIEST_CAPTURE.date()}; check the device clock")
    return value


#: An ISO-8601 timestamp with a timezone, converted to UTC.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
EARLIEST_CAPTURE = datetime(2000, 1, 1, tzinfo=UTC)

# No NUL characters (PostgreSQL cannot store them). Lone surrogates never get here: the JSON parser
# refuses them (400). The pattern runs in pydantic-core, far cheaper than a Python validator.
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=NO_NUL)]
Version = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]
Probability = Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageIn(_Strict):
    """One stage of the cascade: a model's probability distribution over its labels."""

    model: Text = Field(description="Model name, e.g. from its spec.json.")
    version: Version = Field(description="Model version.")
    labels: list[Text] = Field(min_length=1, max_length=MAX_LABELS, description="Unique class labels.")
    probabilities: list[Probability] = Field(
        min_length=1, max_length=MAX_LABELS, description="One probability per label, summing to 1 (± 1e-3)."
    )

    @model_validator(mode="after")
    def _check_distribution(self) -> StageIn:
        labels, probabilities = self.labels, self.probabilities
        n = len(labels)
        if n != len(probabilities):
            raise ValueError(
                f"labels has {n} entries but probabilities has {len(probabilities)}; "
                "send exactly one probability per label"
            )
        if n > 1 and len(set(labels)) != n:
            seen: set[str] = set()
            dupes = sorted({x for x in labels if x in seen or seen.add(x)})  # type: ignore[func-returns-value]
            raise ValueError(f"duplicate labels {dupes}; each label may appear once")
        total = math.fsum(probabilities)
        if abs(total - 1.0) > SUM_TOLERANCE:
            raise ValueError(
                f"probabilities sum to {total:.6g}, not 1 (± {SUM_TOLERANCE:g}); send the softmax output"
            )
        return self


class EventIn(_Strict):
    """One cascade run on one frame, as the phone app or the cascade runtime sends it."""

    event_id: UUID = Field(description="Client-made UUID; the idempotency key (retries reuse it).")
    device_id: Text
    session_id: Text
    context: Text = Field(description="Where/why the frame was taken, e.g. 'clinic'.")
    captured_at: Annotated[AwareDatetime, WrapValidator(_capture_utc)] = Field(
        description="ISO-8601 with a timezone, e.g. 2026-01-02T03:04:05Z; not before 2000 and not more than "
        "max_future_seconds (default 300) in the future."
    )
    stages: list[StageIn] = Field(min_length=1, max_length=MAX_STAGES)

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "event_id": "0b6f1c1e-5d0a-4c43-9a59-6f1f3c2b7a10",
                    "device_id": "phone-42",
                    "session_id": "s-2026-01-02-a",
                    "context": "clinic",
                    "captured_at": "2026-01-02T03:04:05Z",
                    "stages": [
                        {
                            "model": "breastmnist",
                            "version": "1",
                            "labels": ["benign", "malignant"],
                            "probabilities": [0.2, 0.8],
                        }
                    ],
                }
            ]
        },
    )


class BatchIn(_Strict):
    """Up to :data:`MAX_BATCH` events (an offline queue flushing)."""

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class EventResult(BaseModel):
    """The rules' answer for one event."""

    event_id: UUID
    output: Any = Field(description="The custom output rendered by the matching rule (or the default).")
    rule: str | None = Field(description="Name of the matching rule; null when the default output was used.")


class BatchItem(BaseModel):
    """One event's result in a batch."""

    event_id: UUID
    status: Literal["created", "duplicate", "conflict"] = Field(
        description="created: stored now; duplicate: stored before (same answer); conflict: the event_id "
        "was already used for a different payload (nothing stored, output is null)."
    )
    output: Any = None
    rule: str | None = None
    detail: str | None = None


class BatchOut(BaseModel):
    """Per-event results, in the order of the request."""

    results: list[BatchItem]


class EventOut(BaseModel):
    """A stored event."""

    event_id: UUID
    device_id: str
    session_id: str
    context: str
    captured_at: datetime
    received_at: datetime
    stages: list[dict[str, Any]]
    output: Any
    rule: str | None


class EventPage(BaseModel):
    """One page of events, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    events: list[EventOut]
    next_cursor: str | None


class StatsGroup(BaseModel):
    """Statistics of one (model, context, top label) group in the window."""

    model: str
    context: str
    label: str
    count: int
    mean_top_probability: float
    mean_entropy: float = Field(description="Mean Shannon entropy of the distributions, in nats.")
    share_below_confidence: float = Field(description="Share of stages whose top probability < confidence.")


class DriftOut(BaseModel):
    """How far the top-label distribution of a (model, context) moved from the reference window."""

    model: str
    context: str
    count: int
    reference_count: int
    total_variation: float | None = Field(description="½·Σ|p−q| in [0, 1]; null without reference data.")
    js_divergence: float | None = Field(description="Jensen–Shannon divergence in bits, in [0, 1].")


class StatsOut(BaseModel):
    """Per model/label/context statistics over a time window, and drift against a reference window."""

    since: datetime
    until: datetime
    reference_since: datetime
    reference_until: datetime
    confidence: float
    groups: list[StatsGroup]
    drift: list[DriftOut]


class ErrorOut(BaseModel):
    """Every error answer: a sentence saying what was wrong and how to fix it, and details per field."""

    detail: str
    errors: list[dict[str, Any]] = []  # one entry per field for 400/422, empty for the other statuses


class LiveStageOut(BaseModel):
    """One model of a cascade offered by the live camera page."""

    model: str
    version: str
    labels: list[str]
    threshold: float = Field(description="The top probability must be strictly above it to go on.")


class CascadeOut(BaseModel):
    """A cascade that ``visioncascade serve --cascade`` runs for the live camera page (``/v1/live``)."""

    name: str
    contexts: list[str] = Field(description="Contexts routed to a specialist ('default' catches the rest).")
    domain: LiveStageOut
    specialists: dict[str, LiveStageOut]
    min_interval_s: float = Field(description="The same decision is stored at most this often per page.")


class LiveStart(_Strict):
    """The first message on ``/v1/live``: who is calling, which cascade, which context."""

    type: Literal["start"]
    key: str | None = Field(None, max_length=512, description="An ingest key (browsers cannot set headers).")
    cascade: Text | None = Field(None, description="The cascade's name; may be left out when there is one.")
    context: Text
    device_id: Text
    session_id: Text


class LiveContext(_Strict):
    """A later text message on ``/v1/live``: switch the context."""

    type: Literal["context"]
    context: Text
