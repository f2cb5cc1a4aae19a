"""Event routes: post one, post a batch, list with filters and cursor pagination."""

from __future__ import annotations

import asyncio
import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from visioncascade.api.auth import Principal
from visioncascade.api.deps import (
    SECURITY,
    AppState,
    check_key,
    get_state,
    query_error,
    raw_key,
    require_scope,
)
from visioncascade.api.schemas import (
    MAX_ID_LENGTH,
    BatchIn,
    BatchOut,
    ErrorOut,
    EventIn,
    EventPage,
    EventResult,
    UtcDatetime,
)
from visioncascade.api.storage import StoredResult, decode_cursor, list_events
from visioncascade.errors import StorageError

router = APIRouter(prefix="/v1", tags=["events"])
_M = TypeVar("_M", bound=BaseModel)

_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or invalid API key."},
    403: {"model": ErrorOut, "description": "The key's scope does not allow this."},
    429: {"model": ErrorOut, "description": "Rate limit exceeded; see Retry-After."},
}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_AUTH_ERRORS,
    400: {"model": ErrorOut, "description": "The body is not valid JSON."},
    413: {"model": ErrorOut, "description": "The body is too large."},
    422: {"model": ErrorOut, "description": "The event breaks the schema; `errors` says where."},
    503: {"model": ErrorOut, "description": "The database failed; nothing was stored, retry."},
}


def _check_clock(state: AppState, events: list[EventIn], prefix: tuple[Any, ...]) -> None:
    limit = datetime.now(UTC) + timedelta(seconds=state.settings.max_future_seconds)
    errors = [
        {
            "loc": [*prefix, i, "captured_at"]
            if len(events) > 1 or prefix != ("body",)
            else ["body", "captured_at"],
            "msg": f"captured_at {ev.captured_at.isoformat()} is more than "
            f"{state.settings.max_future_seconds:g} s in the future; check the device clock",
            "type": "future_timestamp",
        }
        for i, ev in enumerate(events)
        if ev.captured_at > limit
    ]
    if errors:
        raise HTTPException(422, {"detail": errors[0]["msg"], "errors": errors})


async def submit_events(state: AppState, events: list[EventIn], principal: Principal) -> list[StoredResult]:
    key_id = principal.key_id or None
    try:
        results = await state.committer.submit([(ev, key_id) for ev in events])
    except StorageError as exc:
        state.metrics.inc("visioncascade_write_failures_total", help="Group commits that failed.")
        raise HTTPException(
            503,
            f"the event(s) could not be stored, nothing was kept; retry later ({exc})",
            headers={"Retry-After": "1"},
        ) from exc
    created = sum(1 for r in results if r.status == "created")
    if created:
        state.metrics.inc("visioncascade_events_stored_total", created, help="Events committed.")
    return results


def _body_schema(model: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
        },
        "security": SECURITY,
    }


def _parse(model: type[_M], body: bytes) -> _M:
    """Validate the raw body with pydantic's JSON parser (faster than json.loads + validation)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_input=False)]
        ) from None


@router.post(
    "/events",
    response_model=EventResult,
    summary="Store one event and answer with the rule-chosen output",
    openapi_extra=_body_schema("EventIn"),
    responses={
        **_WRITE_ERRORS,
        409: {"model": ErrorOut, "description": "This event_id was used for a different payload."},
    },
)
async def post_event(request: Request) -> Response:
    """Answers only after the event is committed. Retrying with the same ``event_id`` (and payload)
    returns the same answer, with header ``Idempotent-Replayed: true``, and stores nothing twice."""
    content, headers = await ingest(
        request.app.state.vc, raw_key(request.headers), await request.body(), batch=False
    )
    return Response(content=content, media_type="application/json", headers=headers)


@router.post(
    "/events:batch",
    response_model=BatchOut,
    summary="Store up to 500 events (an offline queue flushing)",
    openapi_extra=_body_schema("BatchIn"),
    responses=_WRITE_ERRORS,
)
async def post_batch(request: Request) -> Response:
    """All events are validated first (one bad event rejects the batch with its index in ``errors``);
    then they are committed together and each gets its own result."""
    content, headers = await ingest(
        request.app.state.vc, raw_key(request.headers), await request.body(), batch=True
    )
    return Response(content=content, media_type="application/json", headers=headers)


async def ingest(
    state: AppState, key: str | None, body: bytes, *, batch: bool
) -> tuple[str, dict[str, str] | None]:
    """Authorise, validate and store one event (``batch=False``) or a batch; the answer's JSON and headers.

    The whole ingest path, shared by the routes above and by the ASGI fast path
    (:class:`visioncascade.api.fastpath.IngestFastPath`) that serves the same URLs without the router.
    Raises ``HTTPException`` (401/403/409/422/429/503) or ``RequestValidationError`` (400/422), which the
    app's exception handlers turn into answers; nothing is stored when it raises before the commit.
    """
    principal = await check_key(state, key, "ingest")
    if batch:
        parsed = _parse(BatchIn, body)
        _check_clock(state, parsed.events, ("body", "events"))
        return _batch_body(await submit_events(state, parsed.events, principal)), None
    event = _parse(EventIn, body)
    _check_clock(state, [event], ("body",))
    (res,) = await submit_events(state, [event], principal)
    if res.status == "conflict":
        raise HTTPException(
            409,
            f"event_id {res.event_id} was already stored with a different payload; "
            "make a new UUID for a new event",
        )
    headers = {"Idempotent-Replayed": "true"} if res.status == "duplicate" else None
    return (
        f'{{"event_id":"{res.event_id}","output":{res.output_json},"rule":{_rule_json(res.rule)}}}',
        headers,
    )


_CONFLICT_DETAIL = json.dumps("event_id already stored with a different payload")


@functools.lru_cache(maxsize=1024)
def _rule_json(rule: str | None) -> str:
    """A rule name as JSON (rule names are few: cached)."""
    return json.dumps(rule, ensure_ascii=False)


def _batch_body(results: list[StoredResult]) -> str:
    """The batch answer ``{"results": [{event_id, status, output, rule, detail}, ...]}`` as compact JSON.

    Assembled from each result's stored output JSON instead of encoding every output again; the text is
    what ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)`` of the same dict gives. Event ids
    are canonical UUID strings (hex digits and dashes), so they need no escaping.
    """
    items = [
        f'{{"event_id":"{r.event_id}","status":"{r.status}","output":{r.output_json},'
        f'"rule":{_rule_json(r.rule)},"detail":{_CONFLICT_DETAIL if r.status == "conflict" else "null"}}}'
        for r in results
    ]
    return '{"results":[' + ",".join(items) + "]}"


OptText = Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH)]


@router.get(
    "/events",
    response_model=EventPage,
    summary="List events, newest first",
    responses={
        **_AUTH_ERRORS,
        400: {"model": ErrorOut},
        422: {"model": ErrorOut},
        503: {"model": ErrorOut, "description": "The database failed; retry after Retry-After."},
    },
)
async def get_events(
    state: Annotated[AppState, Depends(get_state)],
    _: Annotated[Principal, Depends(require_scope("read"))],
    device_id: OptText = None,
    session_id: OptText = None,
    context: OptText = None,
    model: Annotated[
        str | None, Query(min_length=1, max_length=MAX_ID_LENGTH, description="A stage's model.")
    ] = None,
    label: Annotated[
        str | None, Query(min_length=1, max_length=MAX_ID_LENGTH, description="A stage's top label.")
    ] = None,
    since: Annotated[UtcDatetime | None, Query(description="captured_at >= since")] = None,
    until: Annotated[UtcDatetime | None, Query(description="captured_at < until")] = None,
    cursor: Annotated[
        str | None, Query(max_length=400, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Filters combine with AND; ``model`` + ``label`` match the same stage."""
    after = None
    if cursor is not None:
        after = decode_cursor(cursor)
        if after is None:
            raise query_error(
                400, "cursor", "cursor is not valid; pass next_cursor from a previous page unchanged"
            )
    for name, value in (
        ("device_id", device_id),
        ("session_id", session_id),
        ("context", context),
        ("model", model),
        ("label", label),
    ):
        if value is not None and "\x00" in value:
            raise query_error(422, name, f"{name} must not contain NUL characters")
    events, nxt = await asyncio.to_thread(
        list_events,
        state.db,
        device_id=device_id,
        session_id=session_id,
        context=context,
        model=model,
        label=label,
        since=since,
        until=until,
        after=after,
        limit=limit,
    )
    return {"events": events, "next_cursor": nxt}
