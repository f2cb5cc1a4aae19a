"""The baseline of the API benchmark: a minimal FastAPI + SQLite insert endpoint.

One INSERT and one COMMIT per request (WAL, ``synchronous=FULL``: the same durability as the real API),
a small pydantic body, no auth, no rules, no idempotency. Run by ``benchmarks/api_load.py``::

    VC_BASELINE_DB=/tmp/base.db uvicorn --factory benchmarks.api_baseline_app:create_app
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel


class Stage(BaseModel):
    """A stage as posted."""

    model: str
    version: str
    labels: list[str]
    probabilities: list[float]


class Event(BaseModel):
    """An event as posted (no validation beyond types)."""

    event_id: str
    device_id: str
    session_id: str
    context: str
    captured_at: str
    stages: list[Stage]


def create_app() -> FastAPI:
    """The baseline app writing to ``$VC_BASELINE_DB``."""
    path = os.environ["VC_BASELINE_DB"]
    local = threading.local()
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute(
        "CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, device_id TEXT, session_id TEXT, "
        "context TEXT, captured_at TEXT, stages TEXT)"
    )
    setup.commit()
    setup.close()

    def conn() -> sqlite3.Connection:
        c = getattr(local, "conn", None)
        if c is None:
            c = local.conn = sqlite3.connect(path, timeout=30)
            c.execute("PRAGMA synchronous=FULL")
        return c

    app = FastAPI()

    @app.post("/events")
    def insert(event: Event) -> dict[str, Any]:
        c = conn()
        c.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
            (
                event.event_id,
                event.device_id,
                event.session_id,
                event.context,
                event.captured_at,
                json.dumps([s.model_dump() for s in event.stages]),
            ),
        )
        c.commit()
        return {"event_id": event.event_id}

    return app
