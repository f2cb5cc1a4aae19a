"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse

from visioncascade.api.deps import AppState, get_state

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    """Always ``{"status": "ok"}`` while the server runs."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database is reachable",
    responses={503: {"description": "The database is unreachable or not migrated."}},
)
async def readyz(state: Annotated[AppState, Depends(get_state)]) -> JSONResponse:
    """200 when the database answers (and is migrated), else 503."""
    if await asyncio.to_thread(state.db.ping):
        return JSONResponse({"status": "ready"})
    return JSONResponse(
        {
            "detail": "database unreachable or not migrated; check --db and run `visioncascade db upgrade`",
            "errors": [],
        },
        status_code=503,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(state: Annotated[AppState, Depends(get_state)]) -> PlainTextResponse:
    """Request counts and durations, events stored, group commits, rule reloads (this process)."""
    return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")
