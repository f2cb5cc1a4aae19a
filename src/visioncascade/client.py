"""Python client of the visioncascade prediction API (sync and async). Depends only on httpx + stdlib.

::

    from visioncascade.client import Client, make_event

    with Client("http://127.0.0.1:8000", api_key, queue_path="~/.cache/vc-queue.db") as client:
        event = make_event("phone-42", "session-1", "clinic",
                           [{"model": "breastmnist", "version": "1",
                             "labels": ["benign", "malignant"], "probabilities": [0.2, 0.8]}])
        answer = client.send(event)    # {"event_id", "output", "rule"}, or None when queued offline

* Retries connection errors, timeouts, 5xx and 429 (honouring a ``Retry-After`` in seconds on any of them,
  up to ``max_backoff``) with exponential backoff
  and jitter. Every retry resends the same ``event_id``, so the server stores an event once.
* With ``queue_path``, events that cannot be delivered are kept in an on-disk SQLite queue that survives
  restarts; :meth:`Client.flush` (also run after every successful send) posts them in batches of up to 500.
  Events the server rejects as invalid (400/422, or 413 for an event too large on its own) are moved to a
  ``rejected`` table instead of blocking the queue; a batch too large for the server is sent in halves.
  Any other refusal (401/403: a wrong or revoked key) raises and leaves the queue as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from visioncascade.errors import ApiError

__all__ = ["ApiRequestError", "AsyncClient", "Client", "DiskQueue", "make_event"]

MAX_BATCH = 500
_RETRY_STATUS = {429, 500, 502, 503, 504}


class ApiRequestError(ApiError):
    """The API refused a request for a reason retrying cannot fix (4xx), or retries ran out.

    Attributes:
        status: HTTP status (None when the server was never reached).
        body: The decoded JSON error body, when there was one.
        detail: The server's ``detail`` sentence (what was wrong and how to fix it), when it sent one.
        errors: The server's per-field ``errors`` (``[{"loc", "msg", "type"}]``; empty when it sent none).
    """

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body

    @property
    def detail(self) -> str | None:
        """The server's ``detail``, or None (no JSON body, or not the API's error shape)."""
        detail = self.body.get("detail") if isinstance(self.body, dict) else None
        return detail if isinstance(detail, str) else None

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The server's per-field ``errors``; ``[]`` where it sent none."""
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        return errors if isinstance(errors, list) else []


def make_event(
    device_id: str,
    session_id: str,
    context: str,
    stages: Sequence[Mapping[str, Any]],
    *,
    captured_at: datetime | None = None,
    event_id: str | uuid.UUID | None = None,
) -> dict[str, Any]:
    """Build an event dict with a fresh UUID ``event_id`` and ``captured_at`` = now (UTC).

    ``stages`` are ``{"model", "version", "labels", "probabilities"}`` mappings; probabilities may be any
    numeric sequence (numpy arrays included); they are converted to floats.
    """
    at = captured_at or datetime.now(UTC)
    if at.tzinfo is None:
        raise ApiError("captured_at must carry a timezone (e.g. datetime.now(UTC))")
    return {
        "event_id": str(event_id or uuid.uuid4()),
        "device_id": device_id,
        "session_id": session_id,
        "context": context,
        "captured_at": at.isoformat(),
        "stages": [
            {
                "model": str(s["model"]),
                "version": str(s["version"]),
                "labels": [str(x) for x in s["labels"]],
                "probabilities": [float(p) for p in s["probabilities"]],
            }
            for s in stages
        ],
    }


class DiskQueue:
    """An on-disk FIFO of events (SQLite, ``synchronous=FULL``): what is put survives crashes and restarts."""

    def __init__(self, path: str | Path) -> None:
        """Open (or create) the queue file at ``path``.

        Raises:
            ApiError: the file exists but is not a queue SQLite can open (corrupt, or another kind of
                file); the message names it and says to move it aside. The file is left as it is.
        """
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                "event_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL)"
            )
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS rejected (event_id TEXT PRIMARY KEY, body TEXT NOT NULL, "
                "error TEXT NOT NULL, rejected_at TEXT NOT NULL)"
            )
        except sqlite3.DatabaseError as exc:  # OperationalError (e.g. locked) is one too
            self._conn.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise ApiError(
                    f"cannot open the offline queue file {self.path}: {exc}; check that the path is a "
                    "writable file and that no other program holds it, or pass another queue_path"
                ) from exc
            raise ApiError(
                f"the offline queue file {self.path} is not a usable SQLite queue ({exc}): it is corrupt "
                f"or another kind of file. Move it aside (e.g. rename it to {self.path.name}.broken; "
                "its events may still be recoverable from it) or pass another queue_path, and a new "
                "queue is started"
            ) from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back (nothing kept) if it raises."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                    self._conn.execute("ROLLBACK")
                raise

    def put(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Append events (an event already queued is kept once); all of them, or none if it raises."""
        rows = [(str(e["event_id"]), json.dumps(e, separators=(",", ":"))) for e in events]
        with self._transaction() as conn:
            conn.executemany("INSERT OR IGNORE INTO queue (event_id, body) VALUES (?, ?)", rows)

    def peek(self, n: int) -> list[dict[str, Any]]:
        """The oldest ``n`` events, still queued."""
        with self._lock:
            rows = self._conn.execute("SELECT body FROM queue ORDER BY seq LIMIT ?", (n,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def remove(self, event_ids: Iterable[str]) -> int:
        """Drop delivered events (``event_ids`` as they were put); how many were still queued."""
        with self._transaction() as conn:
            cur = conn.executemany("DELETE FROM queue WHERE event_id = ?", [(str(e),) for e in event_ids])
            return max(cur.rowcount, 0)

    def reject(self, event: Mapping[str, Any], error: str) -> None:
        """Move an event the server refused as invalid to the ``rejected`` table."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO rejected VALUES (?, ?, ?, ?)",
                (str(event["event_id"]), json.dumps(event), error, datetime.now(UTC).isoformat()),
            )
            conn.execute("DELETE FROM queue WHERE event_id = ?", (str(event["event_id"]),))

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM queue").fetchone()[0])

    def rejected(self) -> list[tuple[dict[str, Any], str]]:
        """Events the server refused, with its error message."""
        with self._lock:
            rows = self._conn.execute("SELECT body, error FROM rejected ORDER BY rejected_at").fetchall()
        return [(json.loads(b), e) for b, e in rows]

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._conn.close()


class _Base:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float,
        retries: int,
        backoff: float,
        max_backoff: float,
        queue_path: str | Path | None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.queue = DiskQueue(queue_path) if queue_path is not None else None

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds to wait before retry ``attempt + 1``: the answer's ``Retry-After`` seconds when it has
        one (any retried status: 429, 503 from the API or a proxy...; 1 s for a 429 without it), else
        exponential backoff with jitter; never more than ``max_backoff``."""
        if response is not None:
            default = "1" if response.status_code == 429 else None
            retry_after = response.headers.get("Retry-After", default)
            if retry_after is not None:
                try:
                    seconds = float(retry_after)
                except ValueError:  # an HTTP date, or garbage: back off as usual
                    pass
                else:
                    if math.isfinite(seconds):
                        return min(self.max_backoff, max(0.0, seconds))
        base = min(self.max_backoff, self.backoff * (2**attempt))
        return base * (0.5 + random.random() / 2)

    @staticmethod
    def _error(response: httpx.Response) -> ApiRequestError:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        detail = body.get("detail") if isinstance(body, dict) else body
        return ApiRequestError(f"API answered {response.status_code}: {detail}", response.status_code, body)

    @staticmethod
    def _bad_events(err: ApiRequestError, size: int) -> dict[int, str]:
        """The events of a batch of ``size`` that a 400/422 names (``loc`` = body, events, i, ...), each
        with the server's reasons for it."""
        found: dict[int, list[str]] = {}
        body = err.body if isinstance(err.body, dict) else {}
        for e in body.get("errors") or []:
            loc = (e.get("loc") or []) if isinstance(e, dict) else []
            if len(loc) < 3 or loc[:2] != ["body", "events"] or not isinstance(loc[2], int):
                continue
            if 0 <= loc[2] < size:
                where = ".".join(str(p) for p in loc[3:]) or "event"
                found.setdefault(loc[2], []).append(f"{where}: {e.get('msg', 'invalid')}")
        return {i: f"API answered {err.status}: " + "; ".join(msgs) for i, msgs in found.items()}

    def _after_refusal(
        self, batch: list[dict[str, Any]], err: ApiRequestError
    ) -> tuple[list[tuple[dict[str, Any], str]], list[list[dict[str, Any]]]] | None:
        """What to do with a queued ``batch`` the server did not accept: None to stop flushing (the server
        is unreachable or busy; everything stays queued), else the events to set aside with their reasons
        and the parts of the batch to send again.

        Only events the server refused as invalid are set aside: those a 400/422 names, or a lone event
        it refused with 400/422 or as too large (413). A larger batch that is too large, or refused as
        invalid without naming events, is split in halves.

        Raises:
            ApiRequestError: any other refusal (401/403: a wrong or revoked key, 404: a wrong URL...);
                the queue is left as it was.
        """
        if err.status is None or err.status in _RETRY_STATUS:
            return None
        if err.status in (400, 422):
            bad = self._bad_events(err, len(batch))
            if bad:
                rest = [e for i, e in enumerate(batch) if i not in bad]
                return [(batch[i], reason) for i, reason in sorted(bad.items())], [rest] if rest else []
        if err.status in (400, 413, 422):
            if len(batch) > 1:
                half = len(batch) // 2
                return [], [batch[:half], batch[half:]]
            reason = str(err)
            if err.status == 413:
                reason = f"the event alone is larger than the server accepts: {err}"
            return [(batch[0], reason)], []
        raise ApiRequestError(f"queued events not delivered, they stay queued: {err}", err.status, err.body)


class Client(_Base):
    """Synchronous client. Use as a context manager or call :meth:`close`.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000``.
        api_key: A key with scope ``ingest`` (``read`` for :meth:`events`/:meth:`stats`).
        timeout: Seconds per request.
        retries: Retries after the first try for connection errors, timeouts, 5xx and 429.
        backoff: First retry delay in seconds, doubled each retry (with jitter), at most ``max_backoff``.
        queue_path: An SQLite file for the offline queue; None disables queueing.
        transport: An httpx transport (tests, custom TLS).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
        queue_path: str | Path | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            queue_path=queue_path,
        )
        self._http = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool and the queue file."""
        self._http.close()
        if self.queue is not None:
            self.queue.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            response = None
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                last = exc
            else:
                if response.status_code < 400:
                    return response.json()
                if response.status_code not in _RETRY_STATUS:
                    raise self._error(response)
                last = self._error(response)
            if attempt < self.retries:
                time.sleep(self._delay(attempt, response))
        if isinstance(last, ApiRequestError):
            raise last
        raise ApiRequestError(f"cannot reach {self.base_url}{path} after {self.retries + 1} tries: {last!r}")

    def send(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        """Post one event; the answer ``{event_id, output, rule}``, or None when it was queued offline.

        Raises:
            ApiRequestError: the server refused the event (4xx), or it is unreachable and there is no queue.
        """
        try:
            answer = self._request("POST", "/v1/events", json=dict(event))
        except ApiRequestError as exc:
            if self.queue is not None and (exc.status is None or exc.status in _RETRY_STATUS):
                self.queue.put([event])
                return None
            raise
        if self.queue is not None and len(self.queue):
            self.flush()
        return answer

    def send_batch(self, events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Post up to 500 events in one request; per-event results (``status`` created/duplicate/conflict)."""
        if len(events) > MAX_BATCH:
            raise ApiError(f"a batch holds at most {MAX_BATCH} events, got {len(events)}")
        return self._request("POST", "/v1/events:batch", json={"events": [dict(e) for e in events]})[
            "results"
        ]

    def flush(self) -> int:
        """Deliver queued events in batches; return how many were delivered.

        Stops when the server is unreachable or busy, and when a round takes nothing off the queue, so it
        never sends the same events in a loop. Delivered events leave the queue by the ``event_id`` they
        were queued with (the server answers with the canonical lowercase form).

        Raises:
            ApiRequestError: the server refused the batch for a reason other than invalid events (e.g. 401
                or 403 for a wrong or revoked key); the undelivered events stay queued.
        """
        if self.queue is None:
            return 0
        sent = 0
        while True:
            parts = [self.queue.peek(MAX_BATCH)]
            if not parts[0]:
                return sent
            while parts:
                batch = parts.pop()
                try:
                    results = self.send_batch(batch)
                except ApiRequestError as exc:
                    step = self._after_refusal(batch, exc)
                    if step is None:
                        return sent
                    set_aside, again = step
                    for event, reason in set_aside:
                        self.queue.reject(event, reason)
                    parts += reversed(again)  # the first part is sent first
                    continue
                answered, conflicts = batch[: len(results)], 0
                for event, r in zip(answered, results, strict=True):
                    if r.get("status") == "conflict":
                        self.queue.reject(
                            event, r.get("detail") or "event_id reused with a different payload"
                        )
                        conflicts += 1
                # by the ids as queued, not as answered: the server answers with canonical (lowercase) ids
                removed = self.queue.remove(e["event_id"] for e in answered)
                sent += len(results)
                if removed + conflicts == 0:  # nothing left the queue: stop rather than send it again
                    return sent

    def events(self, **filters: Any) -> dict[str, Any]:
        """``GET /v1/events`` with filters (device_id, context, model, label, since, until, cursor, limit)."""
        return self._request("GET", "/v1/events", params={k: v for k, v in filters.items() if v is not None})

    def stats(self, **params: Any) -> dict[str, Any]:
        """``GET /v1/stats`` (since, until, confidence, model, context, reference_since, reference_until)."""
        return self._request("GET", "/v1/stats", params={k: v for k, v in params.items() if v is not None})


class AsyncClient(_Base):
    """Asynchronous client with the same behaviour as :class:`Client` (``await client.send(event)``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
        queue_path: str | Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            queue_path=queue_path,
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool and the queue file."""
        await self._http.aclose()
        if self.queue is not None:
            self.queue.close()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            response = None
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                last = exc
            else:
                if response.status_code < 400:
                    return response.json()
                if response.status_code not in _RETRY_STATUS:
                    raise self._error(response)
                last = self._error(response)
            if attempt < self.retries:
                await asyncio.sleep(self._delay(attempt, response))
        if isinstance(last, ApiRequestError):
            raise last
        raise ApiRequestError(f"cannot reach {self.base_url}{path} after {self.retries + 1} tries: {last!r}")

    async def send(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        """Post one event (see :meth:`Client.send`)."""
        try:
            answer = await self._request("POST", "/v1/events", json=dict(event))
        except ApiRequestError as exc:
            if self.queue is not None and (exc.status is None or exc.status in _RETRY_STATUS):
                await asyncio.to_thread(self.queue.put, [event])
                return None
            raise
        if self.queue is not None and await asyncio.to_thread(len, self.queue):
            await self.flush()
        return answer

    async def send_batch(self, events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Post up to 500 events in one request (see :meth:`Client.send_batch`)."""
        if len(events) > MAX_BATCH:
            raise ApiError(f"a batch holds at most {MAX_BATCH} events, got {len(events)}")
        body = {"events": [dict(e) for e in events]}
        return (await self._request("POST", "/v1/events:batch", json=body))["results"]

    async def flush(self) -> int:
        """Deliver queued events in batches (see :meth:`Client.flush`).

        Raises:
            ApiRequestError: as :meth:`Client.flush`; the undelivered events stay queued.
        """
        if self.queue is None:
            return 0
        sent = 0
        while True:
            parts = [await asyncio.to_thread(self.queue.peek, MAX_BATCH)]
            if not parts[0]:
                return sent
            while parts:
                batch = parts.pop()
                try:
                    results = await self.send_batch(batch)
                except ApiRequestError as exc:
                    step = self._after_refusal(batch, exc)
                    if step is None:
                        return sent
                    set_aside, again = step
                    for event, reason in set_aside:
                        await asyncio.to_thread(self.queue.reject, event, reason)
                    parts += reversed(again)  # the first part is sent first
                    continue
                answered, conflicts = batch[: len(results)], 0
                for event, r in zip(answered, results, strict=True):
                    if r.get("status") == "conflict":
                        detail = r.get("detail") or "event_id reused with a different payload"
                        await asyncio.to_thread(self.queue.reject, event, detail)
                        conflicts += 1
                removed = await asyncio.to_thread(self.queue.remove, [e["event_id"] for e in answered])
                sent += len(results)
                if removed + conflicts == 0:  # nothing left the queue: stop rather than send it again
                    return sent

    async def events(self, **filters: Any) -> dict[str, Any]:
        """``GET /v1/events`` with filters."""
        return await self._request(
            "GET", "/v1/events", params={k: v for k, v in filters.items() if v is not None}
        )

    async def stats(self, **params: Any) -> dict[str, Any]:
        """``GET /v1/stats``."""
        return await self._request(
            "GET", "/v1/stats", params={k: v for k, v in params.items() if v is not None}
        )
