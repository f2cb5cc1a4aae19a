"""Statistics per model/label/context over a time window, with drift against a reference window."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from visioncascade.api.auth import Principal
from visioncascade.api.deps import AppState, get_state, query_error, require_scope
from visioncascade.api.schemas import MAX_ID_LENGTH, ErrorOut, StatsOut, UtcDatetime
from visioncascade.api.storage import stats

router = APIRouter(prefix="/v1", tags=["stats"])


@router.get(
    "/stats",
    response_model=StatsOut,
    summary="Counts, confidence, entropy and drift per model/label/context",
    responses={
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        422: {"model": ErrorOut},
        429: {"model": ErrorOut},
        503: {"model": ErrorOut, "description": "The database failed; retry after Retry-After."},
    },
)
async def get_stats(
    state: Annotated[AppState, Depends(get_state)],
    _: Annotated[Principal, Depends(require_scope("read"))],
    since: Annotated[UtcDatetime | None, Query(description="Window start (default: until − 24 h).")] = None,
    until: Annotated[UtcDatetime | None, Query(description="Window end, exclusive (default: now).")] = None,
    reference_since: Annotated[
        UtcDatetime | None, Query(description="Reference window start (default: the window before).")
    ] = None,
    reference_until: Annotated[UtcDatetime | None, Query(description="Reference window end.")] = None,
    confidence: Annotated[float, Query(ge=0, le=1, description="share_below_confidence's level.")] = 0.5,
    model: Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH)] = None,
    context: Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH)] = None,
) -> dict[str, Any]:
    """Stages captured in ``[since, until)`` grouped by (model, context, top label): count, mean top
    probability, mean entropy (nats), share below ``confidence``; drift per (model, context)."""
    beyond = "reaches beyond the supported dates (years 1-9999)"
    until = until or datetime.now(UTC)
    try:
        since = since or until - timedelta(days=1)
    except OverflowError:
        raise query_error(422, "until", f"the default since (until - 24 h) {beyond}; give since") from None
    if since >= until:
        raise query_error(422, "since", "since must be earlier than until")
    reference_until = reference_until or since
    try:
        reference_since = reference_since or reference_until - (until - since)
    except OverflowError:
        raise query_error(
            422,
            "reference_since",
            f"the default reference window (as long as the window, ending at reference_until) {beyond}; "
            "give reference_since",
        ) from None
    if reference_since >= reference_until:
        raise query_error(422, "reference_since", "reference_since must be earlier than reference_until")
    for name, value in (("model", model), ("context", context)):
        if value is not None and "\x00" in value:
            raise query_error(422, name, f"{name} must not contain NUL characters")
    return await asyncio.to_thread(
        stats,
        state.db,
        since=since,
        until=until,
        reference_since=reference_since,
        reference_until=reference_until,
        confidence=confidence,
        model=model,
        context=context,
    )
