"""FastAPI dependencies: the application state, the caller's key (401/403) and its rate limit (429)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from visioncascade.api.auth import Authenticator, Principal, RateLimiter, allows
from visioncascade.api.live import LiveCascades
from visioncascade.api.metrics import Metrics
from visioncascade.api.rules import RulesHolder
from visioncascade.api.settings import Settings
from visioncascade.api.storage import Database, GroupCommitter

__all__ = [
    "SECURITY",
    "AppState",
    "authorize",
    "check_key",
    "get_state",
    "query_error",
    "raw_key",
    "require_scope",
]


@dataclass
class AppState:
    """Everything the routes share, built by :func:`visioncascade.api.app.create_app`."""

    settings: Settings
    db: Database
    rules: RulesHolder
    committer: GroupCommitter
    authenticator: Authenticator
    limiter: RateLimiter
    metrics: Metrics
    live: LiveCascades | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def get_state(request: Request) -> AppState:
    """The application's shared state."""
    return request.app.state.vc


_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same key as `X-API-Key`.")
_ANONYMOUS = Principal(0, "anonymous", "admin")


def raw_key(headers: Mapping[str, str]) -> str | None:
    """The API key a request carries: ``Authorization: Bearer <key>``, else ``X-API-Key`` (or None)."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return headers.get("x-api-key") or None


async def authorize(request: Request, scope: str) -> Principal:
    """The caller's principal; raises 401 without a valid key, 403 for the wrong scope, 429 over the limit.

    A plain function (not a FastAPI dependency) so the event-ingest path stays cheap; the routes declare
    the security schemes in OpenAPI themselves.
    """
    state: AppState = request.app.state.vc
    return await check_key(state, raw_key(request.headers), scope)


async def check_key(state: AppState, raw: str | None, scope: str, *, rate_limit: bool = True) -> Principal:
    """The principal of the raw key ``raw``; raises HTTPException 401/403/429 like :func:`authorize`.

    Also used by the live page's WebSocket, whose key arrives in its first message (browsers cannot set
    headers on a WebSocket) and is checked again for every frame (a revoked key stops within
    ``key_cache_seconds``); ``rate_limit=False`` skips the rate limit there (frames have their own).
    """
    if not state.settings.auth_enabled:
        return _ANONYMOUS
    if not raw:
        raise HTTPException(
            401,
            "missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>` "
            "(create one with `visioncascade keys create`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    hit, principal = state.authenticator.lookup_cached(raw)
    if not hit:
        principal = await asyncio.to_thread(state.authenticator.lookup, raw)
    if principal is None:
        raise HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    if not allows(principal.scope, scope):
        raise HTTPException(
            403,
            f"this key has scope {principal.scope!r}; this operation needs scope {scope!r} (or admin)",
        )
    wait = state.limiter.acquire(principal.key_id) if rate_limit else 0.0
    if wait > 0:
        state.metrics.inc("visioncascade_rate_limited_total", help="Requests answered 429.")
        raise HTTPException(
            429,
            f"rate limit of {state.settings.rate_limit_per_second:g} requests/s for this key exceeded; "
            "retry after the Retry-After seconds",
            headers={"Retry-After": RateLimiter.retry_after_header(wait)},
        )
    return principal


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency running :func:`authorize` (the security schemes appear in OpenAPI through it)."""

    async def dependency(
        request: Request,
        _bearer_credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        _api_key_header: Annotated[str | None, Depends(_api_key)],
    ) -> Principal:
        return await authorize(request, scope)

    return dependency


def query_error(status: int, name: str, message: str) -> HTTPException:
    """A 400/422 about the query parameter ``name``, in the documented shape: ``detail`` is ``message``
    and ``errors`` names the parameter (``[{"loc": ["query", name], "msg": message, "type":
    "value_error"}]``), as pydantic's own query errors do."""
    return HTTPException(
        status,
        {"detail": message, "errors": [{"loc": ["query", name], "msg": message, "type": "value_error"}]},
    )


#: OpenAPI ``security`` of routes that call :func:`authorize` directly.
SECURITY = [{"HTTPBearer": []}, {"APIKeyHeader": []}]
