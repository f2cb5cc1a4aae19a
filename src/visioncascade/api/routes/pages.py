"""The browser pages: ``/`` (the live camera) and ``/dashboard`` (charts of ``/v1/stats``).

Plain HTML, CSS and JavaScript shipped inside the package (``visioncascade/api/static``): no CDN, no web
fonts, no build step. A Content-Security-Policy lets the pages load nothing from anywhere but this server.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "mount_static", "router"]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


_HOST = re.compile(r"^[A-Za-z0-9.:\[\]-]{1,255}$")


def _page(request: Request, name: str) -> FileResponse:
    host = request.headers.get("host", "")
    host = host if _HOST.match(host) else "localhost"
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"media-src 'self' blob: mediastream:; connect-src 'self' ws://{host} wss://{host}; "
        "font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return FileResponse(
        STATIC_DIR / name,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


@router.get("/")
async def live_page(request: Request) -> FileResponse:
    """The live camera page."""
    return _page(request, "live.html")


@router.get("/dashboard")
async def dashboard_page(request: Request) -> FileResponse:
    """Charts of the logged distributions."""
    return _page(request, "dashboard.html")


def mount_static(app: FastAPI) -> None:
    """Serve the pages' scripts and styles under ``/static``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
