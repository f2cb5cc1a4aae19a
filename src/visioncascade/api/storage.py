"""Storage of the prediction API: SQLAlchemy 2 models, the group-commit writer, queries.

One schema serves SQLite and PostgreSQL (Alembic migrations in ``migrations/``). Functions here return
values or raise :class:`visioncascade.errors.StorageError`; only the routes turn outcomes into HTTP errors.

Writes go through :class:`GroupCommitter`: one writer task per process takes every pending event, writes
them in **one** transaction and resolves each request's future only after ``COMMIT`` returned. So many
small requests share one fsync, and "acknowledged" always means "committed".

SQLite runs in WAL mode with ``synchronous=FULL`` by default: a committed transaction survives power loss,
not only a crash of the server process (``NORMAL`` is allowed and faster but may lose the last commits on
power loss, so it is opt-in). Group commit makes the extra fsync cheap. Writes take ``BEGIN IMMEDIATE`` so
two worker processes never interleave their check-then-insert; on PostgreSQL ``INSERT ... ON CONFLICT DO
NOTHING`` settles races between workers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import math
import os
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic_core import to_json
from sqlalchemy import (
    BigInteger,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    and_,
    case,
    create_engine,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from visioncascade.api.rules import Observation, RuleSet, entropy, evaluate, top_of
from visioncascade.api.schemas import EventIn
from visioncascade.errors import StorageError

try:
    import fcntl
except ImportError:  # Windows: SQLite's own locking only
    fcntl = None  # type: ignore[assignment]


__all__ = [
    "SCOPES",
    "ApiKey",
    "Base",
    "Database",
    "Event",
    "EventStage",
    "GroupCommitter",
    "KeyListing",
    "KeyRecord",
    "StoredResult",
    "create_api_key",
    "find_api_key",
    "hash_key",
    "list_api_keys",
    "list_events",
    "payload_hash",
    "stats",
    "upgrade_database",
    "write_events",
]

SCOPES = ("ingest", "read", "admin")
Status = Literal["created", "duplicate", "conflict"]


_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite: INTEGER PRIMARY KEY is the rowid


class Base(DeclarativeBase):
    """Declarative base of the API's tables."""


class ApiKey(Base):
    """An API key: only its SHA-256 is stored; ``prefix`` identifies it in listings and logs."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Event(Base):
    """One stored event with the answer it got (so retries get the same answer)."""

    __tablename__ = "events"
    # An increasing integer key, so the stage rows (and their primary-key index) are appended in order;
    # the random event_id has its own unique index (the idempotency key).
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36))
    device_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(128))
    context: Mapped[str] = mapped_column(String(128))
    captured_at: Mapped[datetime] = mapped_column(DateTime)  # UTC, naive
    received_at: Mapped[datetime] = mapped_column(DateTime)  # UTC, naive
    stages: Mapped[str] = mapped_column(Text)  # JSON list of {model, version, labels, probabilities}
    payload_hash: Mapped[str] = mapped_column(String(64))
    output: Mapped[str] = mapped_column(Text)  # JSON
    rule: Mapped[str | None] = mapped_column(String(128), nullable=True)
    key_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (
        UniqueConstraint("event_id", name="uq_events_event_id"),
        Index("ix_events_captured", "captured_at", "event_id"),
        Index("ix_events_device_captured", "device_id", "captured_at"),
        Index("ix_events_session_captured", "session_id", "captured_at"),
        Index("ix_events_context_captured", "context", "captured_at"),
    )


class EventStage(Base):
    """One stage of an event, with its top label, top probability and entropy for queries and stats."""

    __tablename__ = "event_stages"
    event_pk: Mapped[int] = mapped_column(_ID, ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    top_label: Mapped[str] = mapped_column(String(128))
    top_probability: Mapped[float] = mapped_column(Float)
    entropy: Mapped[float] = mapped_column(Float)
    context: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(128))
    captured_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_stages_model_captured", "model", "captured_at"),
        Index("ix_stages_model_label_captured", "model", "top_label", "captured_at"),
        Index("ix_stages_session_label_captured", "session_id", "top_label", "captured_at"),
        Index("ix_stages_captured", "captured_at"),
    )


EVENTS = Event.__table__
STAGES = EventStage.__table__
KEYS = ApiKey.__table__


def _naive_utc(value: datetime) -> datetime:
    tz = value.tzinfo
    if tz is None:
        return value
    if tz is UTC:  # validated timestamps are in UTC already: one copy, not two
        return value.replace(tzinfo=None)
    return value.astimezone(UTC).replace(tzinfo=None)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _output_json(output: Any) -> str:
    """A rendered output as compact JSON, by pydantic-core's encoder (several times faster than json's).

    Outputs hold only JSON values with finite numbers (rules files are checked when loaded, probabilities
    are validated). The text is ``json.dumps(output, separators=(",", ":"), ensure_ascii=False)``'s
    (what earlier versions stored) except how numbers below 1e-4 are written (``0.00001``, ``1.5e-7``
    for ``1e-05``, ``1.5e-07``): the same values.
    """
    return to_json(output).decode()


# ------------------------------------------------------------------------------------------ database


class Database:
    """The engines of one database: a writer (one connection) and a reader pool.

    Args:
        url: ``sqlite:///path.db`` or ``postgresql+psycopg://...``.
        sqlite_synchronous: ``FULL`` (default) or ``NORMAL``/``OFF`` for SQLite.
    """

    def __init__(self, url: str, sqlite_synchronous: str = "FULL") -> None:
        try:
            parsed = make_url(url)
        except Exception as exc:
            raise StorageError(
                f"database URL {url!r} is not valid; use sqlite:///path.db or "
                "postgresql+psycopg://user:password@host:5432/dbname"
            ) from exc
        self.url = url
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise StorageError(f"unsupported database {self.dialect!r}; use SQLite or PostgreSQL")
        if self.dialect == "sqlite" and parsed.database in (None, "", ":memory:"):
            raise StorageError(
                f"database URL {url!r} is an in-memory SQLite database, which the writer and the readers "
                "cannot share; use a file, e.g. sqlite:///visioncascade.db"
            )
        try:
            if self.dialect == "sqlite":
                _ensure_sqlite_folder(url)
                self.writer = _sqlite_engine(url, sqlite_synchronous, immediate=True, pool_size=1)
                self.reader = _sqlite_engine(url, sqlite_synchronous, immediate=False, pool_size=8)
            else:
                self.writer = create_engine(url, pool_size=2, max_overflow=2, pool_pre_ping=True)
                self.reader = create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError) as exc:
            raise StorageError(f"cannot open database {parsed.render_as_string()}: {exc}") from exc
        self._lock_path: Path | None = None
        if self.dialect == "sqlite" and fcntl is not None:
            self._lock_path = (
                Path(parsed.database).expanduser().with_name(Path(parsed.database).name + "-writer.lock")
            )
        self._lock_fd: int | None = None
        self._thread_lock = threading.Lock()  # flock is per open file: threads of a process queue here

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the database's writer lock (SQLite files on POSIX; a no-op otherwise) for a transaction.

        SQLite lets one writer in at a time; a second one (another ``--workers`` process) that finds the
        database locked polls in SQLite's busy handler with sleeps of up to 100 ms, which left cores idle
        and made p99 latency soar. The group commits of all processes take this kernel lock
        (``flock`` on ``<database>-writer.lock``) first, so a waiting writer wakes the moment the other
        one commits. Call it from a worker thread: it blocks.
        """
        if self._lock_path is None:
            yield
            return
        with self._thread_lock:
            if self._lock_fd is None:
                try:
                    self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
                except OSError as exc:
                    raise StorageError(
                        f"cannot open the writer lock file {self._lock_path} ({exc.strerror}); the folder "
                        "of the SQLite database must be writable"
                    ) from exc
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @property
    def is_sqlite(self) -> bool:
        """Whether this is SQLite."""
        return self.dialect == "sqlite"

    def ping(self) -> bool:
        """Whether the database answers a query and the schema is migrated."""
        try:
            with self.reader.connect() as conn:
                conn.execute(select(func.count()).select_from(KEYS).where(KEYS.c.id < 0)).scalar()
            return True
        except SQLAlchemyError:
            return False

    def analyze(self) -> None:
        """Refresh PostgreSQL's planner statistics of the event tables (no-op on SQLite).

        A table that grows from empty at thousands of rows a second outruns autovacuum's ANALYZE; with
        statistics saying "tiny table" the planner answered the rules' session-history query by scanning
        every stage of the time window. Failures (e.g. not the table owner) are ignored.
        """
        if self.is_sqlite:
            return
        try:
            with self.writer.connect() as conn:
                conn.exec_driver_sql("ANALYZE events")
                conn.exec_driver_sql("ANALYZE event_stages")
                conn.commit()
        except SQLAlchemyError:
            pass

    def dispose(self) -> None:
        """Close every connection."""
        self.writer.dispose()
        self.reader.dispose()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _ensure_sqlite_folder(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _sqlite_engine(url: str, synchronous: str, *, immediate: bool, pool_size: int) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=pool_size,
        max_overflow=0 if immediate else 8,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (SQLAlchemy's pysqlite recipe)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA cache_size=-65536")  # 64 MiB: index pages of a growing table stay in memory
        cur.execute("PRAGMA temp_store=MEMORY")
        # Read pages through a memory map (up to 1 GiB): with --workers N each writer's page cache is
        # dropped whenever another process committed, and refilling it by read() calls cost ~25 % of
        # the CPU per event in batches; mapped pages are shared by every connection of the machine.
        cur.execute("PRAGMA mmap_size=1073741824")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def upgrade_database(url: str, revision: str = "head") -> None:
    """Apply the Alembic migrations shipped in the package to ``url``.

    Raises:
        StorageError: the database cannot be reached or a migration failed.
    """
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["database_url"] = url
    try:
        _ensure_sqlite_folder(url)
        command.upgrade(cfg, revision)
    except (SQLAlchemyError, OSError) as exc:
        raise StorageError(f"cannot migrate {make_url(url).render_as_string()}: {exc}") from exc


# ------------------------------------------------------------------------------------------ api keys


@dataclass(frozen=True)
class KeyRecord:
    """A valid (not revoked) API key."""

    id: int
    name: str
    scope: str
    prefix: str


def hash_key(raw: str) -> str:
    """SHA-256 hex of a key (keys are 256-bit random, so a fast hash is the right tool)."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def create_api_key(db: Database, scope: str, name: str = "") -> tuple[str, KeyRecord]:
    """Make a new random key with ``scope``, store its hash, and return the key (shown once) and record.

    Raises:
        StorageError: unknown scope, or the database is not migrated.
    """
    if scope not in SCOPES:
        raise StorageError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
    if len(name) > 128:
        raise StorageError("key names are at most 128 characters")
    prefix = secrets.token_hex(4)
    raw = f"vc_{prefix}_{secrets.token_urlsafe(32)}"
    try:
        with db.writer.begin() as conn:
            key_id = conn.execute(
                insert(KEYS).returning(KEYS.c.id),
                {
                    "name": name or f"{scope}-{prefix}",
                    "scope": scope,
                    "key_hash": hash_key(raw),
                    "prefix": prefix,
                    "created_at": _naive_utc(datetime.now(UTC)),
                },
            ).scalar_one()
    except SQLAlchemyError as exc:
        raise StorageError(
            f"cannot store the key ({exc.__class__.__name__}); run `visioncascade db upgrade`"
        ) from exc
    return raw, KeyRecord(key_id, name or f"{scope}-{prefix}", scope, prefix)


def _query_failed(what: str, exc: SQLAlchemyError) -> StorageError:
    """The StorageError for a failed query: what failed, the driver's reason, and what to check."""
    return StorageError(
        f"could not {what} ({exc.__class__.__name__}: {str(exc).splitlines()[0]}); check that the "
        "database is reachable and migrated (`visioncascade db upgrade`)"
    )


def find_api_key(db: Database, key_hash: str) -> KeyRecord | None:
    """The non-revoked key with this hash, or None.

    Raises:
        StorageError: the database could not be queried.
    """
    try:
        with db.reader.connect() as conn:
            row = conn.execute(
                select(KEYS.c.id, KEYS.c.name, KEYS.c.scope, KEYS.c.prefix).where(
                    KEYS.c.key_hash == key_hash, KEYS.c.revoked_at.is_(None)
                )
            ).first()
    except SQLAlchemyError as exc:
        raise _query_failed("check the API key", exc) from exc
    return KeyRecord(row.id, row.name, row.scope, row.prefix) if row is not None else None


@dataclass(frozen=True)
class KeyListing:
    """One stored API key as ``visioncascade keys list`` shows it (never the key itself)."""

    prefix: str
    scope: str
    name: str
    created_at: datetime
    revoked_at: datetime | None


def list_api_keys(db: Database) -> list[KeyListing]:
    """Every stored key, revoked ones too, oldest first.

    Raises:
        StorageError: the database could not be queried (unreachable, or not migrated).
    """
    try:
        with db.reader.connect() as conn:
            rows = conn.execute(
                select(
                    KEYS.c.prefix, KEYS.c.scope, KEYS.c.name, KEYS.c.created_at, KEYS.c.revoked_at
                ).order_by(KEYS.c.id)
            ).all()
    except SQLAlchemyError as exc:
        raise _query_failed("list the API keys", exc) from exc
    return [KeyListing(r.prefix, r.scope, r.name, r.created_at, r.revoked_at) for r in rows]


def revoke_api_key(db: Database, prefix: str) -> int:
    """Revoke every key with this prefix; return how many were revoked.

    Raises:
        StorageError: the database could not be updated (nothing was revoked).
    """
    try:
        with db.writer.begin() as conn:
            return conn.execute(
                update(KEYS)
                .where(KEYS.c.prefix == prefix, KEYS.c.revoked_at.is_(None))
                .values(revoked_at=_naive_utc(datetime.now(UTC)))
            ).rowcount
    except SQLAlchemyError as exc:
        raise _query_failed("revoke the key", exc) from exc


# ------------------------------------------------------------------------------------------ writes


class StoredResult(NamedTuple):
    """The outcome of writing one event (a named tuple: one is made for every event)."""

    event_id: str
    status: Status
    output: Any
    rule: str | None
    output_json: str = "null"  # ``output`` as the JSON text stored (the answer is sent as it is)


# Datetimes go to SQLite as SQLAlchemy writes them ("YYYY-MM-DD HH:MM:SS.ffffff", sortable as text).


EVENT_COLUMNS = (
    "id",
    "event_id",
    "device_id",
    "session_id",
    "context",
    "captured_at",
    "received_at",
    "stages",
    "payload_hash",
    "output",
    "rule",
    "key_id",
)
STAGE_COLUMNS = (
    "event_pk",
    "position",
    "model",
    "version",
    "top_label",
    "top_probability",
    "entropy",
    "context",
    "session_id",
    "captured_at",
)
# Plain DB-API executemany with tuples: SQLAlchemy's per-row parameter processing cost a third of the
# write time. Datetimes are passed as SQLAlchemy stores them in SQLite ("YYYY-MM-DD HH:MM:SS.ffffff").
#: Most rows per multi-row INSERT on SQLite (fewer where the build allows fewer parameters per statement).
SQLITE_ROWS_PER_INSERT = 256


def _sqlite_insert(conn: Any, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` with multi-row ``INSERT ... VALUES (...), (...)`` statements on the raw connection.

    One statement step per :data:`SQLITE_ROWS_PER_INSERT` rows instead of one per row: besides SQLite's
    per-statement work, the sqlite3 module releases and re-takes the GIL around every step, which handed
    the GIL to the event loop's thread and back thousands of times per group commit. Builds older than
    3.32 allow only 999 parameters per statement: the statements are sized to the connection's limit.
    Plain DB-API, no SQLAlchemy parameter processing (tuples, datetimes already as text).
    """
    dbapi = conn.connection.dbapi_connection
    limit = dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    one = "(" + ",".join("?" * len(columns)) + ")"
    cur = dbapi.cursor()
    try:
        pos = 0
        # Full statements, then 16-row ones, then single rows: at most 15 + 15 steps for the rest, and
        # three statement texts per table for the sqlite3 module's statement cache.
        most = max(1, min(SQLITE_ROWS_PER_INSERT, limit // len(columns)))
        for size in sorted({most, min(16, most), 1}, reverse=True):
            if len(rows) - pos < size:
                continue
            sql = head + ",".join([one] * size)
            while len(rows) - pos >= size:
                cur.execute(sql, list(chain.from_iterable(rows[pos : pos + size])))
                pos += size
    finally:
        cur.close()


def _sqlite_time(value: datetime) -> str:
    """A UTC time (naive, or aware) as SQLAlchemy stores datetimes in SQLite: ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    tz = value.tzinfo
    if tz is None:
        return value.isoformat(" ", "microseconds")
    if tz is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:-6]  # without "+00:00"


_PG_ARRAY_TYPES = {
    String: "varchar[]",
    Text: "text[]",
    DateTime: "timestamp[]",
    Float: "float8[]",
    SmallInteger: "int2[]",
    Integer: "int4[]",
    BigInteger: "int8[]",
}


def _pg_unnest_insert(
    conn: Any, table: Any, cols: Sequence[str], rows: list[tuple[Any, ...]], returning: str | None
) -> list[Any]:
    if not rows:
        return []
    casts = [_PG_ARRAY_TYPES[type(table.c[c].type)] for c in cols]
    sql = (
        f"INSERT INTO {table.name} ({', '.join(cols)}) "
        f"SELECT * FROM unnest({', '.join(f'%b::{t}' for t in casts)}) "
        + (f"ON CONFLICT (event_id) DO NOTHING RETURNING {returning}" if returning else "")
    )
    params = tuple(list(col) for col in zip(*rows, strict=True))
    # Binary parameters: psycopg's text format escapes every array element with a regex (slow).
    with conn.connection.dbapi_connection.cursor() as cur:
        cur.execute(sql, params, binary=True)  # %b: binary parameters
        return cur.fetchall() if returning else []


def payload_hash(ev: EventIn) -> str:
    """A hash of the event's content (UTC-normalised) to tell a retry from a reused event_id."""
    return _hash_and_stages(ev)[0]


_STAGES_KEY = b',"stages":'


def _hash_and_stages(ev: EventIn) -> tuple[str, str]:
    """The event's :func:`payload_hash` and its stages as stored JSON, from one serialisation.

    The hash is the SHA-256 of the event's JSON (captured_at is already in UTC, schemas.UtcDatetime, so
    equal instants serialise equally; unchanged, so retries of events stored by earlier versions still
    hash equal). ``stages`` is its last field: its JSON is the tail of the event's (a ``,"stages":`` cannot
    occur inside the string fields before it, whose quotes are escaped).
    """
    raw = ev.__pydantic_serializer__.to_json(ev)
    return hashlib.sha256(raw).hexdigest(), raw[raw.index(_STAGES_KEY) + len(_STAGES_KEY) : -1].decode()


class _History:
    """The recent (captured_at, model) per (session, top label) of a batch's sessions, plus the batch.

    Times are aware UTC datetimes, like the rules' (rows come back naive UTC and are tagged once here),
    so counting compares them as they are.
    """

    def __init__(self, rows: Sequence[Any]) -> None:
        self.seen: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
        for r in rows:
            entry = (r.captured_at.replace(tzinfo=UTC), r.model)
            self.seen.setdefault((r.session_id, r.top_label), []).append(entry)

    def counter(self, session_id: str) -> Any:
        seen = self.seen

        def count(label: str, model: str | None, since: datetime, until: datetime) -> int:
            entries = seen.get((session_id, label))
            if not entries:
                return 0
            n = 0
            for at, m in entries:
                if since <= at <= until and (model is None or m == model):
                    n += 1
            return n

        return count

    def add(
        self, session_id: str, at: datetime, stages: Sequence[Any], tops: Sequence[tuple[str, float]]
    ) -> None:
        """Count an event of this batch (``at``: aware UTC) for the later events of its session."""
        seen = self.seen
        for stage, (label, _) in zip(stages, tops, strict=True):
            entries = seen.get((session_id, label))
            if entries is None:
                seen[(session_id, label)] = [(at, stage.model)]
            else:
                entries.append((at, stage.model))


class _StoredRow(NamedTuple):
    event_id: str
    payload_hash: str
    output: str
    rule: str | None


def _existing(conn: Any, ids: Sequence[str]) -> dict[str, Any]:
    """The stored rows (event_id, payload_hash, output, rule) of those of ``ids`` that are stored."""
    found: dict[str, Any] = {}
    if conn.dialect.name == "sqlite":  # plain DB-API: SQLAlchemy's expanding IN costs more than the lookup
        cur = conn.connection.dbapi_connection.cursor()
        try:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                sql = (
                    "SELECT event_id, payload_hash, output, rule FROM events WHERE event_id IN "
                    f"({','.join('?' * len(chunk))})"
                )
                for row in cur.execute(sql, chunk):
                    found[row[0]] = _StoredRow(*row)
        finally:
            cur.close()
        return found
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        for row in conn.execute(
            select(EVENTS.c.event_id, EVENTS.c.payload_hash, EVENTS.c.output, EVENTS.c.rule).where(
                EVENTS.c.event_id.in_(chunk)
            )
        ):
            found[row.event_id] = row
    return found


def _answer(event_id: str, h: str, row: Any) -> StoredResult:
    if row.payload_hash != h:
        return StoredResult(event_id, "conflict", None, None)
    return StoredResult(event_id, "duplicate", json.loads(row.output), row.rule, row.output)


def write_events(
    db: Database, items: Sequence[tuple[EventIn, int | None]], rules: RuleSet, now: datetime | None = None
) -> list[StoredResult]:
    """Store events (with the key id that sent each) in one transaction; answer each with the rules.

    An ``event_id`` already stored with the same content answers ``duplicate`` with its stored output;
    with different content ``conflict``. Returns only after the transaction committed.

    Raises:
        StorageError: the transaction failed; nothing of it was stored.
    """
    now = _naive_utc(now or datetime.now(UTC))
    ids = [str(ev.event_id) for ev, _ in items]
    dumped = [_hash_and_stages(ev) for ev, _ in items]
    hashes = [h for h, _ in dumped]
    results: list[StoredResult | None] = [None] * len(items)
    try:
        with db.write_lock(), db.writer.begin() as conn:
            # SQLite: look the ids up first (we hold the write lock). PostgreSQL without history rules:
            # no lookup; the INSERT's ON CONFLICT DO NOTHING RETURNING tells which ids were stored
            # before, and only those are read back below (retries are rare, and a lookup on a
            # fast-growing table is where stale planner statistics turned index probes into sequential
            # scans). With history rules PostgreSQL looks them up too: an event refused as a conflict
            # (its id stored with other content, maybe in another session) must not enter the history
            # that decides the outputs of the group's other events (a lone event has no others).
            lookup = db.is_sqlite or (rules.needs_history and len(items) > 1)
            existing = _existing(conn, list(dict.fromkeys(ids))) if lookup else {}
            first: dict[str, int] = {}
            new_idx: list[int] = []
            for i, eid in enumerate(ids):
                if eid in existing:
                    results[i] = _answer(eid, hashes[i], existing[eid])
                elif eid in first:
                    continue  # resolved after the first occurrence below
                else:
                    first[eid] = i
                    new_idx.append(i)
            history = None
            stored_before: set[str] = set()
            if rules.needs_history and new_idx:
                sessions = sorted({items[i][0].session_id for i in new_idx})
                times = [items[i][0].captured_at for i in new_idx]
                lo = _naive_utc(min(times)) - timedelta(seconds=rules.max_window_seconds)
                rows = conn.execute(
                    select(
                        STAGES.c.session_id,
                        STAGES.c.model,
                        STAGES.c.top_label,
                        STAGES.c.captured_at,
                        EVENTS.c.event_id,
                    )
                    .join(EVENTS, EVENTS.c.id == STAGES.c.event_pk)
                    .where(  # all three columns of ix_stages_session_label_captured
                        STAGES.c.session_id.in_(sessions),
                        STAGES.c.top_label.in_(sorted(rules.seen_labels)),
                        STAGES.c.captured_at >= lo,
                        STAGES.c.captured_at <= _naive_utc(max(times)),
                    )
                ).all()
                history = _History(rows)
                # stored by another worker between the lookup and the history query (PostgreSQL)
                stored_before = {r.event_id for r in rows}
            to_db = _sqlite_time if db.is_sqlite else _naive_utc
            next_pk = 0
            if db.is_sqlite and new_idx:  # we hold the write lock: the next ids are ours
                next_pk = int(conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM events").scalar_one())
            received = to_db(now)
            event_rows: list[tuple[Any, ...]] = []
            stage_rows: list[tuple[Any, ...]] = []
            answers: dict[str, StoredResult] = {}
            for i in new_idx:
                ev, key_id = items[i]
                eid = ids[i]
                stages = ev.stages
                session = ev.session_id
                context = ev.context
                at_utc = ev.captured_at  # UTC already (schemas), converted only if made otherwise
                if at_utc.tzinfo is not UTC:
                    at_utc = at_utc.astimezone(UTC)
                obs = Observation(eid, ev.device_id, session, context, at_utc, stages)
                tops = [top_of(s) for s in stages]
                decision = evaluate(
                    rules, obs, history.counter(session) if history is not None else None, tops
                )
                if history is not None and eid not in stored_before:
                    history.add(session, at_utc, stages, tops)
                at = to_db(at_utc)
                output_json = _output_json(decision.output)
                next_pk += 1
                event_rows.append(
                    (
                        next_pk,
                        eid,
                        ev.device_id,
                        session,
                        context,
                        at,
                        received,
                        dumped[i][1],
                        hashes[i],
                        output_json,
                        decision.rule,
                        key_id,
                    )
                )
                for pos, (s, (label, prob)) in enumerate(zip(stages, tops, strict=True)):
                    stage_rows.append(
                        (
                            next_pk,
                            pos,
                            s.model,
                            s.version,
                            label,
                            prob,
                            entropy(s.probabilities),
                            context,
                            session,
                            at,
                        )
                    )
                answers[eid] = StoredResult(eid, "created", decision.output, decision.rule, output_json)
            lost: set[str] = set()
            if event_rows:
                if db.is_sqlite:
                    # BEGIN IMMEDIATE holds the write lock since the SELECT above: no other writer can
                    # have inserted these ids, and a conflict would raise (never a false "created").
                    _sqlite_insert(conn, "events", EVENT_COLUMNS, event_rows)
                    _sqlite_insert(conn, "event_stages", STAGE_COLUMNS, stage_rows)
                else:
                    # One INSERT ... SELECT FROM unnest(arrays) per table: a single round trip for the
                    # whole group; ON CONFLICT DO NOTHING settles races with other workers. The ids
                    # come from the sequence: the placeholder numbers map to the returned ones.
                    returned = _pg_unnest_insert(
                        conn, EVENTS, EVENT_COLUMNS[1:], [r[1:] for r in event_rows], "event_id, id"
                    )
                    pk_of = {eid: pk for eid, pk in returned}
                    placeholder = {r[0]: pk_of.get(r[1]) for r in event_rows}
                    lost = set(answers) - set(pk_of)
                    stage_rows = [
                        (placeholder[r[0]], *r[1:]) for r in stage_rows if placeholder[r[0]] is not None
                    ]
                    _pg_unnest_insert(conn, STAGES, STAGE_COLUMNS, stage_rows, None)
        if lost:  # stored before, or by another worker meanwhile: answer as the stored row says
            with db.reader.connect() as conn:
                winners = _existing(conn, sorted(lost))
            for eid in lost:
                i = first[eid]
                answers[eid] = _answer(eid, hashes[i], winners[eid])
    except (SQLAlchemyError, sqlite3.Error) as exc:  # sqlite3: the raw inserts (_sqlite_insert)
        raise StorageError(f"could not store {len(items)} event(s): {exc.__class__.__name__}: {exc}") from exc
    for i, eid in enumerate(ids):
        if results[i] is not None:
            continue
        a = answers[eid]
        if first[eid] == i:
            results[i] = a
        elif a.status == "conflict":
            results[i] = StoredResult(eid, "conflict", None, None)
        elif hashes[i] == hashes[first[eid]]:
            results[i] = StoredResult(eid, "duplicate", a.output, a.rule, a.output_json)
        else:
            results[i] = StoredResult(eid, "conflict", None, None)
    return [r for r in results if r is not None]


class GroupCommitter:
    """One writer task per process: batches pending events into one transaction (group commit).

    :meth:`submit` returns only after the transaction holding the events committed, or raises
    :class:`StorageError` if it failed (then nothing of those events was stored).
    """

    def __init__(self, db: Database, rules: Any, max_events: int = 2000) -> None:
        self.db = db
        self._rules = rules  # has a .rules attribute (RulesHolder) read once per transaction
        self.max_events = max_events
        self._pending: deque[tuple[list[tuple[EventIn, int | None]], asyncio.Future[list[StoredResult]]]] = (
            deque()
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.commits = 0
        self.committed_events = 0
        self.commit_seconds = 0.0
        # PostgreSQL: ANALYZE after 1k, 4k, 16k, ... events written by this process (see Database.analyze)
        self._analyze_at: int | None = None if db.is_sqlite else 1000
        self._analyzing: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the writer task on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="visioncascade-group-commit")

    async def close(self) -> None:
        """Write what is pending, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._analyzing is not None:
            await self._analyzing

    async def submit(self, items: list[tuple[EventIn, int | None]]) -> list[StoredResult]:
        """Queue events for the next group commit and wait until it committed."""
        if self._task is None or self._task.done():
            raise StorageError("the writer is not running")
        fut: asyncio.Future[list[StoredResult]] = asyncio.get_running_loop().create_future()
        self._pending.append((items, fut))
        self._wake.set()
        return await asyncio.shield(fut)

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            group: list[tuple[list[tuple[EventIn, int | None]], asyncio.Future[list[StoredResult]]]] = []
            count = 0
            while self._pending and (not group or count + len(self._pending[0][0]) <= self.max_events):
                items, fut = self._pending.popleft()
                group.append((items, fut))
                count += len(items)
            flat = [it for items, _ in group for it in items]
            started = time.perf_counter()
            try:
                results = await asyncio.to_thread(write_events, self.db, flat, self._rules.rules)
            except Exception as exc:
                if len(group) > 1:
                    # Write each request on its own, so one bad request cannot fail the others.
                    for items, fut in group:
                        await self._write_alone(items, fut)
                    continue
                self._fail(group[0][1], exc)
                continue
            self.commits += 1
            self.committed_events += len(flat)
            self.commit_seconds += time.perf_counter() - started
            pos = 0
            for items, fut in group:
                if not fut.done():
                    fut.set_result(results[pos : pos + len(items)])
                pos += len(items)
            if self._analyze_at is not None and self.committed_events >= self._analyze_at:
                self._analyze_at = self._analyze_at * 4 if self._analyze_at < 50_000_000 else None
                # In the background: ANALYZE of a big table takes a while, and the writer waiting for
                # it was the single-event p99 on PostgreSQL (it blocks no INSERT).
                if self._analyzing is None or self._analyzing.done():
                    self._analyzing = asyncio.get_running_loop().create_task(
                        asyncio.to_thread(self.db.analyze)
                    )

    async def _write_alone(
        self, items: list[tuple[EventIn, int | None]], fut: asyncio.Future[list[StoredResult]]
    ) -> None:
        try:
            results = await asyncio.to_thread(write_events, self.db, items, self._rules.rules)
        except Exception as exc:
            self._fail(fut, exc)
            return
        self.commits += 1
        self.committed_events += len(items)
        if not fut.done():
            fut.set_result(results)

    @staticmethod
    def _fail(fut: asyncio.Future[list[StoredResult]], exc: BaseException) -> None:
        err = exc if isinstance(exc, StorageError) else StorageError(f"write failed: {exc!r}")
        if not fut.done():
            fut.set_exception(err)


# ------------------------------------------------------------------------------------------ reads


def _event_out(row: Any) -> dict[str, Any]:
    return {
        "event_id": row.event_id,
        "device_id": row.device_id,
        "session_id": row.session_id,
        "context": row.context,
        "captured_at": _aware(row.captured_at),
        "received_at": _aware(row.received_at),
        "stages": json.loads(row.stages),
        "output": json.loads(row.output),
        "rule": row.rule,
    }


def encode_cursor(captured_at: datetime, event_id: str) -> str:
    """An opaque cursor for the position after (captured_at, event_id)."""
    raw = f"{_naive_utc(captured_at).isoformat()}|{event_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str] | None:
    """The position in a cursor (naive UTC time, event id), or None when it is not one of ours.

    A cursor whose event id holds a NUL character (PostgreSQL refuses those in text) or whose time is
    outside the supported dates is not one of ours either.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, eid = raw.split("|", 1)
        position = _naive_utc(datetime.fromisoformat(at)), eid
    except (ValueError, UnicodeDecodeError, OverflowError):
        return None
    return None if "\x00" in eid else position


def list_events(
    db: Database,
    *,
    device_id: str | None = None,
    session_id: str | None = None,
    context: str | None = None,
    model: str | None = None,
    label: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], str | None]:
    """Events matching the filters, newest first, and the cursor of the next page (None: last page).

    ``model`` and ``label`` match events with a stage of that model / with that top label (both: the
    same stage). ``since`` is inclusive, ``until`` exclusive.

    Raises:
        StorageError: the database could not be queried.
    """
    q = select(EVENTS)
    conds = []
    if device_id is not None:
        conds.append(EVENTS.c.device_id == device_id)
    if session_id is not None:
        conds.append(EVENTS.c.session_id == session_id)
    if context is not None:
        conds.append(EVENTS.c.context == context)
    if since is not None:
        conds.append(EVENTS.c.captured_at >= _naive_utc(since))
    if until is not None:
        conds.append(EVENTS.c.captured_at < _naive_utc(until))
    if model is not None or label is not None:
        sub = [STAGES.c.event_pk == EVENTS.c.id]
        if model is not None:
            sub.append(STAGES.c.model == model)
        if label is not None:
            sub.append(STAGES.c.top_label == label)
        conds.append(exists().where(*sub))
    if after is not None:
        at, eid = _naive_utc(after[0]), after[1]
        conds.append(
            or_(EVENTS.c.captured_at < at, and_(EVENTS.c.captured_at == at, EVENTS.c.event_id < eid))
        )
    q = q.where(*conds).order_by(EVENTS.c.captured_at.desc(), EVENTS.c.event_id.desc()).limit(limit + 1)
    try:
        with db.reader.connect() as conn:
            rows = conn.execute(q).all()
    except SQLAlchemyError as exc:
        raise _query_failed("list the events", exc) from exc
    page = rows[:limit]
    nxt = encode_cursor(page[-1].captured_at, page[-1].event_id) if len(rows) > limit else None
    return [_event_out(r) for r in page], nxt


def _js_bits(p: dict[str, float], q: dict[str, float]) -> float:
    keys = set(p) | set(q)
    m = {k: (p.get(k, 0.0) + q.get(k, 0.0)) / 2 for k in keys}

    def kl(a: dict[str, float]) -> float:
        return sum(a[k] * math.log2(a[k] / m[k]) for k in a if a[k] > 0)

    return max(0.0, min(1.0, (kl(p) + kl(q)) / 2))


def stats(
    db: Database,
    *,
    since: datetime,
    until: datetime,
    reference_since: datetime,
    reference_until: datetime,
    confidence: float = 0.5,
    model: str | None = None,
    context: str | None = None,
) -> dict[str, Any]:
    """Per (model, context, top label) statistics of stages captured in ``[since, until)``, and drift.

    Drift compares each (model, context)'s top-label distribution with the reference window:
    total variation distance and Jensen–Shannon divergence (bits); both None without reference data.

    Raises:
        StorageError: the database could not be queried.
    """
    filters = []
    if model is not None:
        filters.append(STAGES.c.model == model)
    if context is not None:
        filters.append(STAGES.c.context == context)
    below = func.sum(case((STAGES.c.top_probability < confidence, 1), else_=0))
    keys = (STAGES.c.model, STAGES.c.context, STAGES.c.top_label)
    q = (
        select(
            *keys,
            func.count().label("n"),
            func.avg(STAGES.c.top_probability).label("p"),
            func.avg(STAGES.c.entropy).label("h"),
            below.label("below"),
        )
        .where(STAGES.c.captured_at >= _naive_utc(since), STAGES.c.captured_at < _naive_utc(until), *filters)
        .group_by(*keys)
        .order_by(*keys)
    )
    ref_q = (
        select(*keys, func.count().label("n"))
        .where(
            STAGES.c.captured_at >= _naive_utc(reference_since),
            STAGES.c.captured_at < _naive_utc(reference_until),
            *filters,
        )
        .group_by(*keys)
    )
    try:
        with db.reader.connect() as conn:
            rows = conn.execute(q).all()
            ref_rows = conn.execute(ref_q).all()
    except SQLAlchemyError as exc:
        raise _query_failed("compute the statistics", exc) from exc
    groups = [
        {
            "model": r.model,
            "context": r.context,
            "label": r.top_label,
            "count": int(r.n),
            "mean_top_probability": float(r.p),
            "mean_entropy": float(r.h),
            "share_below_confidence": int(r.below) / int(r.n),
        }
        for r in rows
    ]
    cur: dict[tuple[str, str], dict[str, int]] = {}
    ref: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        cur.setdefault((r.model, r.context), {})[r.top_label] = int(r.n)
    for r in ref_rows:
        ref.setdefault((r.model, r.context), {})[r.top_label] = int(r.n)
    drift = []
    for key in sorted(set(cur) | set(ref)):
        c, rf = cur.get(key, {}), ref.get(key, {})
        nc, nr = sum(c.values()), sum(rf.values())
        tv = js = None
        if nc and nr:
            p = {k: v / nc for k, v in c.items()}
            q2 = {k: v / nr for k, v in rf.items()}
            tv = 0.5 * sum(abs(p.get(k, 0.0) - q2.get(k, 0.0)) for k in set(p) | set(q2))
            js = _js_bits(p, q2)
        drift.append(
            {
                "model": key[0],
                "context": key[1],
                "count": nc,
                "reference_count": nr,
                "total_variation": tv,
                "js_divergence": js,
            }
        )
    return {
        "since": _aware(since),
        "until": _aware(until),
        "reference_since": _aware(reference_since),
        "reference_until": _aware(reference_until),
        "confidence": confidence,
        "groups": groups,
        "drift": drift,
    }


def count_events(db: Database) -> int:
    """How many events are stored.

    Raises:
        StorageError: the database could not be queried.
    """
    try:
        with db.reader.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(EVENTS)).scalar_one())
    except SQLAlchemyError as exc:
        raise _query_failed("count the events", exc) from exc
