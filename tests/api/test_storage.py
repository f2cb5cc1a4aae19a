"""The write path's stored form against real databases: payload hashes and stages JSON stay what earlier
versions stored, so retries of events stored before an upgrade are still recognised."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter
from sqlalchemy import event, text

from visioncascade.api.rules import RuleSet
from visioncascade.api.schemas import EventIn, StageIn
from visioncascade.api.storage import SQLITE_ROWS_PER_INSERT, Database, payload_hash, write_events

from .conftest import count_rows, make_event, make_stage, run_sql

TRICKY = 'a,"stages":[{"x":1}]\\"é\u2028'


def _event(**overrides: object) -> EventIn:
    return EventIn.model_validate(
        make_event(
            device_id=TRICKY,
            session_id='s,"stages":',
            context="ctx\\",
            captured_at="2026-01-02T04:04:05.250+01:00",
            stages=[
                make_stage("gate", (TRICKY, "other"), (0.9, 0.1)),
                make_stage("lesion", ("benign", 'mal"ignant'), (1e-05, 1 - 1e-05)),
            ],
            **overrides,
        )
    )


def test_payload_hash_is_the_sha256_of_the_events_json_as_before() -> None:
    ev = _event()
    assert payload_hash(ev) == hashlib.sha256(ev.model_dump_json().encode("utf-8")).hexdigest()
    utc = EventIn.model_validate({**ev.model_dump(mode="json"), "captured_at": "2026-01-02T03:04:05.25Z"})
    assert payload_hash(utc) == payload_hash(ev)
    changed = ev.model_dump(mode="json")
    changed["stages"][1]["probabilities"] = [2e-05, 1 - 2e-05]
    assert payload_hash(EventIn.model_validate(changed)) != payload_hash(ev)


def test_stored_row_keeps_the_hash_and_stages_json_of_earlier_versions(db_url: str) -> None:
    ev = _event()
    db = Database(db_url)
    try:
        (res,) = write_events(db, [(ev, None)], RuleSet(), now=datetime(2026, 1, 2, tzinfo=UTC))
        assert res.status == "created"
        with db.reader.connect() as conn:
            row = conn.execute(
                text("SELECT payload_hash, stages FROM events WHERE event_id = :e"), {"e": str(ev.event_id)}
            ).one()
    finally:
        db.dispose()
    assert row.payload_hash == hashlib.sha256(ev.model_dump_json().encode("utf-8")).hexdigest()
    assert row.stages == TypeAdapter(list[StageIn]).dump_json(ev.stages).decode("utf-8")
    assert json.loads(row.stages)[0]["labels"] == [TRICKY, "other"]


@pytest.mark.parametrize("n", [1, 17, SQLITE_ROWS_PER_INSERT, 2 * SQLITE_ROWS_PER_INSERT + 16 + 3])
def test_every_row_of_a_group_is_stored_with_its_own_values(db_url: str, n: int) -> None:
    """Multi-row INSERTs (full, 16-row and single-row statements): each row keeps its own values."""
    events = [
        EventIn.model_validate(
            make_event(
                device_id=f"d{i}",
                stages=[
                    make_stage("gate", ("skin", "other"), (0.9, 0.1)),
                    make_stage(probs=(i / n, 1 - i / n)),
                ],
            )
        )
        for i in range(n)
    ]
    db = Database(db_url)
    try:
        results = write_events(db, [(ev, None) for ev in events], RuleSet())
        with db.reader.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT e.event_id, e.device_id, s.position, s.model, s.top_probability "
                    "FROM events e JOIN event_stages s ON s.event_pk = e.id"
                )
            ).all()
    finally:
        db.dispose()
    assert [r.status for r in results] == ["created"] * n
    assert len(rows) == 2 * n
    got = {(r.event_id, r.position): (r.device_id, r.model, r.top_probability) for r in rows}
    for i, ev in enumerate(events):
        assert got[(str(ev.event_id), 0)] == (f"d{i}", "gate", 0.9)
        assert got[(str(ev.event_id), 1)] == (f"d{i}", "lesion", max(i / n, 1 - i / n))


def test_sqlite_builds_with_999_parameters_per_statement_store_big_groups(sqlite_url: str) -> None:
    """SQLite before 3.32 allows 999 parameters per statement: the inserts are sized to the limit."""
    db = Database(sqlite_url)

    @event.listens_for(db.writer, "connect")
    def _old_limit(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)

    events = [EventIn.model_validate(make_event()) for _ in range(300)]
    try:
        results = write_events(db, [(ev, None) for ev in events], RuleSet())
    finally:
        db.dispose()
    assert [r.status for r in results] == ["created"] * 300
    assert count_rows(sqlite_url) == 300 and count_rows(sqlite_url, "event_stages") == 300


def test_sqlite_writers_of_different_processes_queue_on_the_writer_lock(
    sqlite_url: str, tmp_path: Any
) -> None:
    """Two Database objects on one SQLite file (as two --workers processes have) take turns on the
    flock-based writer lock: the second waits while the first holds it and gets it when it is released."""
    import threading
    import time

    first, second = Database(sqlite_url), Database(sqlite_url)
    got: list[float] = []
    try:
        with first.write_lock():
            assert (tmp_path / "api.db-writer.lock").exists()
            thread = threading.Thread(target=lambda: got.append(_timed_lock(second)))
            thread.start()
            thread.join(0.3)
            assert thread.is_alive() and not got  # blocked while the first holds the lock
            released = time.monotonic()
        thread.join(10)
        assert got and got[0] >= released
        # The lock is not held across: write_events goes through it, and both still write.
        write_events(first, [(EventIn.model_validate(make_event()), None)], RuleSet())
        write_events(second, [(EventIn.model_validate(make_event()), None)], RuleSet())
        assert count_rows(sqlite_url) == 2
    finally:
        first.dispose()
        second.dispose()


def _timed_lock(db: Database) -> float:
    import time

    with db.write_lock():
        return time.monotonic()


@pytest.mark.postgres
def test_the_writer_lock_is_a_no_op_on_postgresql(pg_schema_factory: Any) -> None:
    db = Database(pg_schema_factory())
    try:
        with db.write_lock(), db.write_lock():  # a real lock taken twice by one thread would deadlock
            pass
    finally:
        db.dispose()


def test_in_memory_sqlite_is_refused_with_the_fix() -> None:
    from visioncascade.errors import StorageError

    with pytest.raises(StorageError, match=r"in-memory SQLite.*use a file"):
        Database("sqlite:///:memory:")


@pytest.mark.postgres
def test_postgresql_tables_are_analyzed_in_the_background_as_they_grow(pg_schema_factory: Any) -> None:
    """After the first 1,000 events the committer runs ANALYZE (fresh planner statistics for a fast-growing
    table) without holding back the answers of the group that crossed the mark."""
    import asyncio
    import time

    from visioncascade.api.storage import GroupCommitter, upgrade_database

    url = pg_schema_factory()
    upgrade_database(url)
    db = Database(url)

    class Holder:
        rules = RuleSet()

    async def run() -> None:
        committer = GroupCommitter(db, Holder())
        committer.start()
        results = await committer.submit([(EventIn.model_validate(make_event()), None) for _ in range(1000)])
        assert [r.status for r in results] == ["created"] * 1000
        assert committer._analyzing is not None  # scheduled, not awaited by the writer
        await committer.close()
        assert committer._analyzing.done()

    try:
        asyncio.run(run())
        deadline = time.monotonic() + 10
        while True:  # statistics are published asynchronously
            ((analyzed,),) = run_sql(
                url,
                "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = current_schema() "
                "AND relname IN ('events', 'event_stages') AND analyze_count > 0",
            )
            if analyzed == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert analyzed == 2
    finally:
        db.dispose()


_UPGRADE_WHEN_TOLD = """
import os, sys, time
from visioncascade.api.storage import upgrade_database
url, ready, go = sys.argv[1:]
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
upgrade_database(url)
"""


@pytest.mark.postgres
def test_concurrent_upgrades_of_a_fresh_postgresql_schema_all_succeed(
    pg_schema_factory: Any, tmp_path: Any
) -> None:
    """Four `db upgrade` processes (e.g. replicas starting together) released at once on an empty schema:
    one migrates, the others wait for it (advisory lock) and find the schema at head."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    url = pg_schema_factory()
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(4)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _UPGRADE_WHEN_TOLD, url, str(r), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in ready
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()
        outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0, 0, 0], "\n".join(outputs)
    assert len(run_sql(url, "SELECT version_num FROM alembic_version")) == 1
    assert count_rows(url) == 0  # the schema is there and usable
