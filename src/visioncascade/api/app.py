"""The FastAPI application: ``create_app(settings)`` wires storage, rules, auth, limits and routes.

``uvicorn --factory visioncascade.api.app:create_app_from_env`` (what ``visioncascade serve`` runs) builds
the app from ``VISIONCASCADE_*`` environment variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from visioncascade import __version__
from visioncascade.api.auth import Authenticator, RateLimiter
from visioncascade.api.deps import AppState
from visioncascade.api.fastpath import PATHS as INGEST_PATHS
from visioncascade.api.fastpath import IngestFastPath
from visioncascade.api.live import LiveCascades
from visioncascade.api.metrics import Metrics, MetricsMiddleware
from visioncascade.api.routes import admin, events, health, live, pages, stats
from visioncascade.api.rules import RulesHolder
from visioncascade.api.settings import Settings, load_settings
from visioncascade.api.storage import Database, GroupCommitter
from visioncascade.errors import StorageError

__all__ = ["BodyLimitMiddleware", "create_app", "create_app_from_env"]

log = logging.getLogger("visioncascade.api")


class BodyLimitMiddleware:
    """Pure ASGI middleware: 413 for bodies over ``max_bytes`` before any route reads them."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Any) -> None:
        body = (
            b'{"detail":"request body larger than '
            + str(self.max_bytes).encode()
            + b' bytes; send fewer events per batch","errors":[]}'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
                break
        if length is not None:
            if length > self.max_bytes:
                await self._reject(send)
                return
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read up to the limit first, then replay.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay_receive() -> dict[str, Any]:
            return replay.pop() if replay else await receive()

        await self.app(scope, replay_receive, send)


def _loc(loc: Any) -> str:
    parts = [str(p) for p in loc if p != "body"] if len(loc) > 1 else [str(p) for p in loc]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def _friendly(error: dict[str, Any]) -> str:
    if error.get("type") == "string_pattern_mismatch" and "\\x00" in str(
        (error.get("ctx") or {}).get("pattern")
    ):
        return "must not contain NUL characters (\\u0000)"
    return str(error.get("msg", "")).removeprefix("Value error, ")


async def _validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {
            "loc": list(e.get("loc", ())),
            "msg": _friendly(e),
            "type": e.get("type", ""),
        }
        for e in exc.errors()
    ]
    if any(e["type"] == "json_invalid" for e in errors):
        first = next(e for e in errors if e["type"] == "json_invalid")
        return JSONResponse(
            {
                "detail": f"the body is not valid JSON ({first['msg']}); send one JSON object",
                "errors": errors,
            },
            status_code=400,
        )
    if any(e["type"] in ("model_attributes_type", "model_type") and e["loc"] == ["body"] for e in errors):
        return JSONResponse(
            {
                "detail": "the body must be one JSON object sent with Content-Type: application/json",
                "errors": errors,
            },
            status_code=422,
        )
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    summary = f"{_loc(first['loc'])}: {first['msg']}"
    if len(errors) > 1:
        summary += f" (and {len(errors) - 1} more problem(s), see errors)"
    return JSONResponse({"detail": summary, "errors": errors}, status_code=422)


async def _http_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # Every error answer has the one documented shape, {"detail", "errors"}: a client reads both always.
    content = exc.detail if isinstance(exc.detail, dict) else {"detail": exc.detail}
    content = {**content, "errors": content.get("errors") or []}
    return JSONResponse(content, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _storage_handler(request: Request, exc: StorageError) -> JSONResponse:
    return JSONResponse(
        {"detail": f"database error, retry later: {exc}", "errors": []},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def _document_raw_bodies(app: FastAPI) -> None:
    """Add the bodies the ingest routes parse themselves (EventIn, BatchIn) to the OpenAPI components."""
    from fastapi.openapi.utils import get_openapi
    from pydantic.json_schema import models_json_schema

    from visioncascade.api.schemas import BatchIn, EventIn

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        _, defs = models_json_schema(
            [(EventIn, "validation"), (BatchIn, "validation")], ref_template="#/components/schemas/{model}"
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for ``settings`` (default: from the environment).

    The rules file and the cascade files are loaded now (a broken file raises
    :class:`visioncascade.errors.RulesError` or :class:`~visioncascade.errors.ConfigError`); the
    database is checked and the writer started when the app starts (lifespan).
    """
    settings = settings or load_settings()
    db = Database(settings.database_url, settings.sqlite_synchronous)
    holder = RulesHolder(settings.rules_path)
    metrics = Metrics()
    bootstrap = settings.bootstrap_admin_key.get_secret_value() if settings.bootstrap_admin_key else None
    state = AppState(
        settings=settings,
        db=db,
        rules=holder,
        committer=GroupCommitter(db, holder, settings.commit_max_events),
        authenticator=Authenticator(db, bootstrap, settings.key_cache_seconds),
        limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        metrics=metrics,
        live=LiveCascades(settings.cascade_paths) if settings.cascade_paths else None,
    )
    metrics.gauge(
        "visioncascade_group_commits", "Group commits done by this process.", lambda: state.committer.commits
    )
    metrics.gauge(
        "visioncascade_group_commit_events",
        "Events written by this process's group commits (duplicates included).",
        lambda: state.committer.committed_events,
    )
    metrics.gauge(
        "visioncascade_group_commit_seconds",
        "Seconds spent in group-commit transactions (rules included).",
        lambda: state.committer.commit_seconds,
    )
    metrics.gauge("visioncascade_rules_reloads", "Successful rules reloads.", lambda: holder.reloads)
    metrics.gauge(
        "visioncascade_rules_reload_failures",
        "Failed rules reloads (old rules kept).",
        lambda: holder.failures,
    )
    metrics.gauge("visioncascade_rules_count", "Rules in use.", lambda: len(holder.rules.rules))

    def reload_rules() -> None:
        if holder.reload():
            log.info("rules reloaded from %s (%d rules)", holder.path, len(holder.rules.rules))
        else:
            log.error("rules reload failed, keeping the old rules: %s", holder.last_error)

    async def watch_rules() -> None:
        while True:
            await asyncio.sleep(settings.rules_poll_seconds)
            try:
                if holder.changed():
                    await asyncio.to_thread(reload_rules)
            except Exception:  # keep polling: a later good file must still be picked up
                holder.failures += 1
                log.exception("rules reload failed, keeping the old rules")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not await asyncio.to_thread(db.ping):
            raise StorageError(
                f"the database {settings.database_url.split('@')[-1]} is unreachable or not migrated; "
                "run `visioncascade db upgrade --db ...` first"
            )
        # Garbage collection was the p99 latency: full collections walked every object of the loaded
        # libraries. Freeze what startup made (never collected, never walked again) and collect the
        # young generation less often; reference counting still frees almost everything at once.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        state.committer.start()
        loop = asyncio.get_running_loop()
        if holder.path is not None:
            state.tasks.append(loop.create_task(watch_rules()))
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
                loop.add_signal_handler(
                    signal.SIGHUP, lambda: loop.create_task(asyncio.to_thread(reload_rules))
                )
        try:
            yield
        finally:
            if holder.path is not None:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
                    loop.remove_signal_handler(signal.SIGHUP)
            for task in state.tasks:
                task.cancel()
            await state.committer.close()
            db.dispose()

    docs = settings.docs_enabled
    app = FastAPI(
        title="visioncascade prediction API",
        version=__version__,
        description="Stores every cascade's probability distributions and answers with a rule-chosen output.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.vc = state
    _document_raw_bodies(app)
    for module in (health, events, stats, admin, live, pages):  # on the app: one routing level, not two
        app.include_router(module.router)
    pages.mount_static(app)
    app.add_exception_handler(RequestValidationError, _validation_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StorageError, _storage_handler)  # type: ignore[arg-type]
    ingest_routes = {
        r.path: r
        for r in events.router.routes
        if isinstance(r, APIRoute) and r.path in INGEST_PATHS and "POST" in r.methods
    }
    app.add_middleware(
        IngestFastPath,
        state=state,
        routes=ingest_routes,
        handlers={
            RequestValidationError: _validation_handler,
            StarletteHTTPException: _http_handler,
            StorageError: _storage_handler,
        },
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def create_app_from_env() -> FastAPI:
    """The app configured from ``VISIONCASCADE_*`` environment variables (for uvicorn ``--factory``)."""
    return create_app(load_settings())
