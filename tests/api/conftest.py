"""Fixtures of the API tests: real databases (SQLite files; PostgreSQL at 127.0.0.1:5432 in a schema of
its own per test run), real uvicorn servers on 127.0.0.1 random ports, real HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from visioncascade.api.background import BackgroundServer, free_port
from visioncascade.api.settings import load_settings
from visioncascade.api.storage import Database, create_api_key, upgrade_database

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_available() -> str | None:
    """None when PostgreSQL answers at 127.0.0.1:5432 (database test), else the reason it does not."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"no PostgreSQL server at 127.0.0.1:5432 database test ({exc.__class__.__name__}: {exc})"
    return None


_PG_REASON = _postgres_available()


@pytest.fixture(scope="session")
def pg_schema_factory() -> Iterator[Callable[[], str]]:
    """Makes PostgreSQL URLs, each with a fresh schema of its own; drops them all at the end."""
    if _PG_REASON is not None:
        pytest.skip(_PG_REASON)
    import psycopg

    made: list[str] = []

    def make() -> str:
        schema = f"vc_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        made.append(schema)
        return f"{PG_URL}?options=-csearch_path%3D{schema}"

    yield make
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        for schema in made:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: SQLite file or PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'api.db'}"
    else:
        url = request.getfixturevalue("pg_schema_factory")()
    upgrade_database(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated, empty SQLite database file."""
    url = f"sqlite:///{tmp_path / 'api.db'}"
    upgrade_database(url)
    return url


class LiveServer(BackgroundServer):
    """The app served in a thread on 127.0.0.1 (a random port), with helpers for tests."""

    def __init__(self, url: str, port: int | None = None, **settings: Any) -> None:
        self.db_url = url
        super().__init__(load_settings(database_url=url, **settings), port)

    @property
    def state(self) -> Any:
        return self.app.state.vc

    def key(self, scope: str, name: str = "") -> str:
        """A new API key with ``scope`` in this server's database."""
        db = Database(self.db_url)
        try:
            return create_api_key(db, scope, name)[0]
        finally:
            db.dispose()

    def query(self, sql: str) -> list[Any]:
        """The rows of ``sql`` run on this server's database."""
        return run_sql(self.db_url, sql)

    def client(self, key: str | None = None, header: str = "bearer") -> httpx.Client:
        headers = {}
        if key is not None:
            headers = {"Authorization": f"Bearer {key}"} if header == "bearer" else {"X-API-Key": key}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)


@pytest.fixture
def server_factory() -> Iterator[Callable[..., LiveServer]]:
    """Starts live servers (``server_factory(db_url, **settings)``) and stops them after the test."""
    servers: list[LiveServer] = []

    def make(url: str, port: int | None = None, **settings: Any) -> LiveServer:
        settings.setdefault("environment", "development")
        settings.setdefault("rate_limit_per_second", 100000.0)
        settings.setdefault("rate_limit_burst", 100000)
        server = LiveServer(url, port, **settings).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def server(db_url: str, server_factory: Callable[..., LiveServer]) -> LiveServer:
    """A live server on each database backend."""
    return server_factory(db_url)


def make_stage(
    model: str = "lesion",
    labels: tuple[str, ...] = ("benign", "malignant"),
    probs: tuple[float, ...] = (0.2, 0.8),
) -> dict[str, Any]:
    """A valid stage."""
    return {"model": model, "version": "1", "labels": list(labels), "probabilities": list(probs)}


def make_event(**overrides: Any) -> dict[str, Any]:
    """A valid event with a fresh event_id; ``overrides`` replace fields."""
    event = {
        "event_id": str(uuid.uuid4()),
        "device_id": "phone-1",
        "session_id": "session-1",
        "context": "clinic",
        "captured_at": datetime.now(UTC).isoformat(),
        "stages": [make_stage()],
    }
    event.update(overrides)
    return event


def run_sql(url: str, sql: str) -> list[Any]:
    """The rows of ``sql`` run on the database at ``url`` (through a fresh connection)."""
    from sqlalchemy import text

    db = Database(url)
    try:
        with db.reader.connect() as conn:
            return list(conn.execute(text(sql)).all())
    finally:
        db.dispose()


def count_rows(url: str, table: str = "events") -> int:
    """Rows in ``table`` of the database at ``url`` (read through a fresh connection)."""
    return int(run_sql(url, f"SELECT count(*) FROM {table}")[0][0])


class ServerProcess:
    """``visioncascade serve`` in a child process (for signals and kill -9), on 127.0.0.1."""

    def __init__(
        self, db_url: str, *args: str, env: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        import os
        import subprocess
        import sys

        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.db_url = db_url
        src = str(Path(__file__).resolve().parents[2] / "src")
        full_env = {
            **os.environ,
            "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "VISIONCASCADE_BOOTSTRAP_ADMIN_KEY": BOOTSTRAP_KEY,
            "VISIONCASCADE_RATE_LIMIT_PER_SECOND": "100000",
            "VISIONCASCADE_RATE_LIMIT_BURST": "100000",
            **(env or {}),
        }
        cmd = [
            sys.executable,
            "-m",
            "visioncascade.cli",
            "serve",
            "--db",
            db_url,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            *args,
        ]
        self.proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise RuntimeError(f"server exited with {self.proc.returncode}: {out}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not start")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"X-API-Key": BOOTSTRAP_KEY}, timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except Exception:
                self.proc.kill()
                self.proc.wait()


BOOTSTRAP_KEY = "test-bootstrap-admin-key-0123456789abcdef"
