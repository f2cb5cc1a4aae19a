"""HTTP routes of the prediction API."""

from __future__ import annotations

from fastapi import APIRouter

from visioncascade.api.routes import admin, events, health, stats

__all__ = ["api_router"]

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(events.router)
api_router.include_router(stats.router)
api_router.include_router(admin.router)
