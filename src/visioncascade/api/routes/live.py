"""The live camera page's API: ``GET /v1/cascades`` and the ``/v1/live`` WebSocket.

Protocol of ``/v1/live`` (JSON text messages, frames as binary messages):

1. client → ``{"type": "start", "key": "…", "cascade": "demo", "context": "shapes",
   "device_id": "…", "session_id": "…"}``; server → ``{"type": "ready", "cascade": {…}}`` or
   ``{"type": "error", "detail": "…", "status": 401}`` and a close with code 4000 + status.
2. client → one JPEG/PNG/WebP frame; server → ``{"type": "result", "decision": …, "stages": […],
   "event": {"event_id", "output", "rule"} | null, "output": …, "rule": …, …}``. An event is stored
   (committed, rules applied, exactly as ``POST /v1/events``) when the cascade's decision is an event and
   it differs from the last stored one or ``min_interval_s`` has passed.
3. client → ``{"type": "context", "context": "colours"}``; server → ``{"type": "context", …}``.

A bad frame or an unknown context answers ``{"type": "error", …}`` and the socket stays open. The key is
checked again for every frame (cached for ``key_cache_seconds``, as for HTTP requests): once it is revoked
the server answers ``{"type": "error", "status": 401, …}`` and closes with code 4401 (4403 for 403).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from visioncascade.api.auth import Principal
from visioncascade.api.deps import AppState, check_key, get_state, require_scope
from visioncascade.api.live import LiveCascades
from visioncascade.api.routes.events import submit_events
from visioncascade.api.schemas import CascadeOut, ErrorOut, EventIn, LiveContext, LiveStart
from visioncascade.errors import ConfigError, DataError

router = APIRouter(prefix="/v1", tags=["live"])

_START_TIMEOUT_S = 30.0


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@router.get(
    "/cascades",
    response_model=list[CascadeOut],
    summary="The cascades this server runs for the live camera page",
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 429: {"model": ErrorOut}},
)
async def list_cascades(
    state: Annotated[AppState, Depends(get_state)],
    _: Annotated[Principal, Depends(require_scope("ingest"))],
) -> list[dict[str, Any]]:
    """Each cascade given to ``visioncascade serve --cascade``: its contexts, models, labels, thresholds."""
    return state.live.describe_all() if state.live is not None else []


def _error_detail(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "message"
    return f"{where}: {first['msg']}"


class _LiveSession:
    """One page's connection: its key, cascade, context, posting policy and counters."""

    def __init__(self, state: AppState, principal: Principal, start: LiveStart, cascade: str) -> None:
        self.state = state
        self.live: LiveCascades = state.live  # type: ignore[assignment]  # checked by _start
        self.principal = principal
        self.key = start.key  # checked again for every frame
        self.cascade = cascade
        self.context = start.context
        self.device_id = start.device_id
        self.session_id = start.session_id
        from visioncascade.runtime.sender import PostPolicy  # the runtime loads only with cascades

        self.policy = PostPolicy(self.live.describe(cascade)["min_interval_s"])
        self.frames = 0
        self.events_stored = 0
        self.last_output: Any = None
        self.last_rule: str | None = None

    def set_context(self, text: str) -> dict[str, Any]:
        try:
            message = LiveContext.model_validate_json(text)
        except ValidationError as exc:
            return {"type": "error", "status": 422, "detail": _error_detail(exc)}
        try:
            self.live.get(self.cascade).config.specialist_for(message.context)  # type: ignore[union-attr]
        except ConfigError as exc:
            return {"type": "error", "status": 422, "detail": str(exc)}
        self.context = message.context
        return {"type": "context", "context": self.context}

    async def frame(self, data: bytes) -> dict[str, Any]:
        """Run one frame (and store its event); raises _Refused when the key is no longer accepted."""
        state = self.state
        try:
            self.principal = await check_key(state, self.key, "ingest", rate_limit=False)
        except HTTPException as exc:
            raise _Refused(exc.status_code, str(exc.detail)) from None
        wait = state.limiter.acquire(self.principal.key_id)
        if wait > 0:
            return {
                "type": "error",
                "status": 429,
                "detail": f"rate limit of {state.settings.rate_limit_per_second:g} frames/s for this key "
                "exceeded; send fewer frames",
                "retry_after": wait,
            }
        try:
            result = await asyncio.to_thread(self.live.run, self.cascade, data, self.context)
        except (DataError, ConfigError) as exc:
            return {"type": "error", "status": 422, "detail": str(exc)}
        self.frames += 1
        state.metrics.inc("visioncascade_live_frames_total", help="Frames run for the live camera page.")
        event_out = None
        domain, special = result.labels
        if result.event is not None and self.policy.admit((result.context, domain, special)):
            event = EventIn.model_validate(
                {**result.event, "device_id": self.device_id, "session_id": self.session_id}
            )
            try:
                (stored,) = await submit_events(state, [event], self.principal)
            except HTTPException as exc:
                return {**self._result(result, None), "type": "result", "error": exc.detail}
            self.events_stored += 1
            self.last_output, self.last_rule = stored.output, stored.rule
            event_out = {"event_id": stored.event_id, "output": stored.output, "rule": stored.rule}
        return self._result(result, event_out)

    def _result(self, result: Any, event: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "type": "result",
            "frame": self.frames,
            "cascade": self.cascade,
            "context": result.context,
            "decision": result.decision,
            "specialist": result.specialist,
            "latency_ms": result.latency_ms,
            "stages": [
                {
                    "stage": s.stage,
                    "model": s.model,
                    "labels": s.labels,
                    "probabilities": s.probabilities,
                    "top_label": s.top_label,
                    "top_probability": s.top_probability,
                    "threshold": s.threshold,
                    "passed": s.passed,
                }
                for s in result.stages
            ],
            "event": event,
            "output": self.last_output,
            "rule": self.last_rule,
            "events_stored": self.events_stored,
        }


async def _start(websocket: WebSocket, state: AppState) -> _LiveSession:
    try:
        text = await asyncio.wait_for(websocket.receive_text(), _START_TIMEOUT_S)
    except TimeoutError:
        raise _Refused(400, f"no start message within {_START_TIMEOUT_S:g} s") from None
    except KeyError:  # a binary message first
        raise _Refused(400, "the first message must be the JSON start message, not a frame") from None
    try:
        start = LiveStart.model_validate_json(text)
    except ValidationError as exc:
        raise _Refused(400, f"invalid start message: {_error_detail(exc)}") from None
    if state.settings.auth_enabled and not start.key:
        raise _Refused(
            401,
            "missing API key: put an ingest key in the start message's `key` (on the page: the key field); "
            "create one with `visioncascade keys create --scope ingest`",
        )
    try:
        principal = await check_key(state, start.key, "ingest")
    except HTTPException as exc:
        raise _Refused(exc.status_code, str(exc.detail)) from None
    live = state.live
    if live is None or not len(live):
        raise _Refused(
            404,
            "this server runs no cascades; start it with `visioncascade serve --cascade cascade.yaml`",
        )
    name = start.cascade or (live.names[0] if len(live) == 1 else None)
    if name is None or live.get(name) is None:
        raise _Refused(
            404,
            f"unknown cascade {start.cascade!r}; this server runs: {', '.join(live.names)}",
        )
    try:
        live.get(name).config.specialist_for(start.context)  # type: ignore[union-attr]
    except ConfigError as exc:
        raise _Refused(422, str(exc)) from None
    return _LiveSession(state, principal, start, name)


async def _close(websocket: WebSocket, exc: _Refused) -> None:
    """Say why, then close with code 4000 + the HTTP status."""
    await websocket.send_json({"type": "error", "status": exc.status, "detail": exc.detail})
    await websocket.close(code=4000 + exc.status, reason=exc.detail[:120])


@router.websocket("/live")
async def live_socket(websocket: WebSocket) -> None:
    """Frames in, cascade results and rule-chosen outputs out (see the module's docstring)."""
    state: AppState = websocket.app.state.vc
    await websocket.accept()
    try:
        try:
            session = await _start(websocket, state)
        except _Refused as exc:
            await _close(websocket, exc)
            return
        description = session.live.describe(session.cascade)
        await websocket.send_json(
            {"type": "ready", "cascade": description, "context": session.context, "started": time.time()}
        )
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                try:
                    reply = await session.frame(message["bytes"])
                except _Refused as exc:  # the key was revoked meanwhile
                    await _close(websocket, exc)
                    return
            else:
                reply = session.set_context(message.get("text") or "")
            await websocket.send_json(reply)
    except WebSocketDisconnect:
        return
