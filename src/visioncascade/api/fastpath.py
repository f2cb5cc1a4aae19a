"""The ingest fast path: ``POST /v1/events`` and ``POST /v1/events:batch`` served as plain ASGI.

Phones post events many times a second, and for a single event FastAPI's routing, dependency and response
machinery cost about as much CPU as validating, storing and answering it. This middleware sits inside the
app's other middleware (metrics, body limit) and answers these two URLs itself, with the very function the
routes call (:func:`visioncascade.api.routes.events.ingest`) and the app's own exception handlers, so the
answers, status codes, headers and OpenAPI description are the same; everything else goes on to the router.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from visioncascade.api.deps import AppState, raw_key
from visioncascade.api.routes.events import ingest
from visioncascade.errors import StorageError

__all__ = ["IngestFastPath"]

Handler = Callable[[Request, Any], Awaitable[Response]]

#: URL path → whether it carries a batch.
PATHS = {"/v1/events": False, "/v1/events:batch": True}


class IngestFastPath:
    """Pure ASGI middleware answering the two ingest URLs without the router (same code, same answers).

    ``routes`` maps each path to its route object (set as ``scope["route"]``, so metrics label the request
    as the router would); ``handlers`` maps the exceptions :func:`ingest` raises to the app's handlers.
    """

    def __init__(
        self,
        app: Any,
        state: AppState,
        routes: dict[str, Any],
        handlers: dict[type[Exception], Handler],
    ) -> None:
        self.app = app
        self.state = state
        self.routes = routes
        self.handlers = handlers

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"] if scope["type"] == "http" and scope["method"] == "POST" else None
        root = scope.get("root_path", "")
        if path is not None and root and path.startswith(root):
            path = path[len(root) :]
        batch = PATHS.get(path) if path is not None else None
        if batch is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.routes[path]
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            content, headers = await ingest(self.state, raw_key(Headers(scope=scope)), body, batch=batch)
        except (HTTPException, RequestValidationError, StorageError) as exc:
            handler = next(h for t, h in self.handlers.items() if isinstance(exc, t))
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        payload = content.encode()
        raw_headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
        if headers:
            raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})
