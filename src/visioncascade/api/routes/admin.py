"""Admin routes: the rules in use and the last reload's outcome."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from visioncascade.api.auth import Principal
from visioncascade.api.deps import AppState, get_state, require_scope
from visioncascade.api.schemas import ErrorOut

router = APIRouter(prefix="/v1", tags=["admin"])


@router.get(
    "/rules",
    summary="The rules in use",
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 429: {"model": ErrorOut}},
)
async def get_rules(
    state: Annotated[AppState, Depends(get_state)],
    _: Annotated[Principal, Depends(require_scope("admin"))],
) -> dict[str, Any]:
    """Rule names in order, the file, reload counts, and the last reload error (null after a good one)."""
    holder = state.rules
    rules = holder.rules
    return {
        "source": rules.source,
        "rules": [r.name for r in rules.rules],
        "reloads": holder.reloads,
        "failures": holder.failures,
        "last_error": holder.last_error,
    }
