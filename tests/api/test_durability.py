"""kill -9 the server during a load: every acknowledged event is in the database afterwards."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest
from sqlalchemy import text

from visioncascade.api.storage import Database

from .conftest import BOOTSTRAP_KEY, ServerProcess, make_event

pytestmark = pytest.mark.slow


def test_every_acknowledged_event_survives_kill_9(db_url: str) -> None:
    server = ServerProcess(db_url, "--environment", "development")
    acked: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []

    def single() -> None:
        with httpx.Client(base_url=server.base_url, headers={"X-API-Key": BOOTSTRAP_KEY}, timeout=10) as c:
            while not stop.is_set():
                event = make_event()
                try:
                    r = c.post("/v1/events", json=event)
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    with lock:
                        acked.add(r.json()["event_id"])
                else:
                    errors.append(r.text)

    def batches() -> None:
        with httpx.Client(base_url=server.base_url, headers={"X-API-Key": BOOTSTRAP_KEY}, timeout=10) as c:
            while not stop.is_set():
                events = [make_event() for _ in range(50)]
                try:
                    r = c.post("/v1/events:batch", json={"events": events})
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    with lock:
                        acked.update(x["event_id"] for x in r.json()["results"])
                else:
                    errors.append(r.text)

    threads = [threading.Thread(target=single) for _ in range(12)] + [
        threading.Thread(target=batches) for _ in range(2)
    ]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while len(acked) < 1500 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(server.proc.pid, signal.SIGKILL)  # mid-load, no chance to flush anything
        server.proc.wait(10)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        server.stop()
    assert not errors, errors[:3]
    assert len(acked) >= 100, "the load did not get going"

    db = Database(db_url)
    try:
        with db.reader.connect() as conn:
            stored = {r[0] for r in conn.execute(text("SELECT event_id FROM events"))}
            orphans = conn.execute(
                text(
                    "SELECT count(*) FROM events e WHERE NOT EXISTS "
                    "(SELECT 1 FROM event_stages s WHERE s.event_pk = e.id)"
                )
            ).scalar_one()
            if db.is_sqlite:
                assert conn.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
    finally:
        db.dispose()
    missing = acked - stored
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged events are not in the database"
    assert orphans == 0  # an event and its stages are committed together or not at all

    again = ServerProcess(
        db_url, "--environment", "development"
    )  # the database opens cleanly after the crash
    try:
        with again.client() as c:
            assert c.get("/readyz").status_code == 200
            assert c.post("/v1/events", json=make_event()).status_code == 200
    finally:
        again.stop()


def _race(base_url: str, event: dict, n: int = 20) -> list[tuple[int, str]]:
    """Post ``event`` from ``n`` threads at once; the (status, body) of each."""
    barrier = threading.Barrier(n)
    answers: list[tuple[int, str]] = []

    def post() -> None:
        with httpx.Client(base_url=base_url, headers={"X-API-Key": BOOTSTRAP_KEY}, timeout=60) as c:
            barrier.wait()
            r = c.post("/v1/events", json=event)
            answers.append((r.status_code, r.text))

    threads = [threading.Thread(target=post) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_identical_posts_racing_across_two_worker_processes_store_one_row(db_url: str) -> None:
    """Retries racing on different worker processes: SQLite serialises the writers (BEGIN IMMEDIATE);
    PostgreSQL settles it with ON CONFLICT DO NOTHING and answers the loser with the winner's answer."""
    server = ServerProcess(db_url, "--environment", "development", "--workers", "2")
    try:
        for _ in range(3):
            answers = _race(server.base_url, make_event())
            assert {status for status, _ in answers} == {200}
            assert len({body for _, body in answers}) == 1
    finally:
        server.stop()
    db = Database(db_url)
    try:
        with db.reader.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM events")).scalar_one() == 3
            assert conn.execute(text("SELECT count(*) FROM event_stages")).scalar_one() == 3
    finally:
        db.dispose()
