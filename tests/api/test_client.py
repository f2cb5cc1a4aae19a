"""visioncascade.client against a live server: answers, retries, idempotency, the on-disk queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from visioncascade.client import ApiRequestError, AsyncClient, Client, DiskQueue, make_event

from .conftest import count_rows, free_port, make_stage


def _event(**kw: Any) -> dict[str, Any]:
    return make_event("phone-1", "session-1", "clinic", [make_stage()], **kw)


@contextlib.contextmanager
def _stand_in(answer: Callable[[dict[str, Any]], tuple[int, Any, dict[str, str]]]) -> Iterator[str]:
    """A plain HTTP server on a free port (a stand-in for a proxy or a broken server in front of the API)
    that answers each POST with ``answer(json_body)`` = (status, JSON payload, extra headers); its URL."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            status, payload, headers = answer(
                json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            )
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_send_and_read_back(sqlite_url: str, server_factory: Any) -> None:
    server = server_factory(sqlite_url)
    with Client(server.base_url, server.key("admin")) as client:
        event = _event()
        answer = client.send(event)
        assert answer == {
            "event_id": event["event_id"],
            "output": {"label": "malignant", "probability": 0.8, "model": "lesion"},
            "rule": None,
        }
        assert client.send(event) == answer  # idempotent by event_id
        results = client.send_batch([_event(), event])
        assert [r["status"] for r in results] == ["created", "duplicate"]
        assert len(client.events()["events"]) == 2
        assert client.stats()["groups"][0]["count"] == 2
        with pytest.raises(ApiRequestError) as info:
            client.send({**_event(), "stages": []})
    assert info.value.status == 422 and "at least 1 item" in str(info.value)
    assert "at least 1 item" in info.value.detail  # the server's detail and per-field errors, as documented
    assert info.value.errors and info.value.errors[0]["loc"] == ["body", "stages"]
    assert count_rows(sqlite_url) == 2


def test_make_event_converts_numbers_and_requires_a_timezone() -> None:
    from datetime import datetime

    import numpy as np

    e = make_event(
        "d",
        "s",
        "c",
        [
            {
                "model": "m",
                "version": 1,
                "labels": ["a", "b"],
                "probabilities": np.array([0.25, 0.75], dtype=np.float32),
            }
        ],
    )
    assert e["stages"][0]["probabilities"] == [0.25, 0.75] and e["stages"][0]["version"] == "1"
    with pytest.raises(Exception, match="timezone"):
        make_event("d", "s", "c", [], captured_at=datetime(2026, 1, 1))


def test_unreachable_without_queue_raises_after_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        Client(url, "k", retries=2, backoff=0.01) as client,
        pytest.raises(ApiRequestError, match="after 3 tries"),
    ):
        client.send(_event())


def test_offline_queue_survives_a_restart_and_flushes_in_batches(
    sqlite_url: str, server_factory: Any, tmp_path: Path
) -> None:
    queue = tmp_path / "queue.db"
    port = free_port()
    offline = f"http://127.0.0.1:{port}"
    events = [_event() for _ in range(620)]
    with Client(offline, "k", retries=1, backoff=0.01, queue_path=queue) as client:
        assert all(client.send(e) is None for e in events[:3])  # server down: queued
        client.queue.put(events[3:])  # type: ignore[union-attr]
        assert len(client.queue) == 620  # type: ignore[arg-type]
    # the app restarts (a new Client on the same file); the server is up now
    server = server_factory(sqlite_url)
    with Client(server.base_url, server.key("ingest"), queue_path=queue) as client:
        assert len(client.queue) == 620  # type: ignore[arg-type]
        answer = client.send(_event())  # success triggers a flush of the queue
        assert answer is not None
        assert len(client.queue) == 0  # type: ignore[arg-type]
    assert count_rows(sqlite_url) == 621
    assert server.state.committer.commits >= 3  # 500 + 120 in batches, plus the single send


def test_invalid_queued_events_are_set_aside_not_blocking(
    sqlite_url: str, server_factory: Any, tmp_path: Path
) -> None:
    server = server_factory(sqlite_url)
    good, bad = _event(), {**_event(), "context": "x" * 500}
    with Client(server.base_url, server.key("ingest"), queue_path=tmp_path / "q.db") as client:
        client.queue.put([good, bad])  # type: ignore[union-attr]
        assert client.flush() == 1
        assert len(client.queue) == 0  # type: ignore[arg-type]
        rejected = client.queue.rejected()  # type: ignore[union-attr]
    assert [e["event_id"] for e, _ in rejected] == [bad["event_id"]]
    assert "at most 128 characters" in rejected[0][1]
    assert count_rows(sqlite_url) == 1


def _flush_queue(
    mode: str, url: str, key: str, path: Path, events: list[dict[str, Any]]
) -> tuple[int | ApiRequestError, int, list[tuple[dict[str, Any], str]]]:
    """Queue ``events`` and flush them with the sync or the async client: (how many were delivered or
    the error flush raised, how many are still queued, the events set aside with their reasons)."""
    if mode == "sync":
        with Client(url, key, queue_path=path) as client:
            assert client.queue is not None
            client.queue.put(events)
            try:
                outcome: int | ApiRequestError = client.flush()
            except ApiRequestError as exc:
                outcome = exc
            return outcome, len(client.queue), client.queue.rejected()

    async def main() -> tuple[int | ApiRequestError, int, list[tuple[dict[str, Any], str]]]:
        async with AsyncClient(url, key, queue_path=path) as client:
            assert client.queue is not None
            client.queue.put(events)
            try:
                outcome: int | ApiRequestError = await client.flush()
            except ApiRequestError as exc:
                outcome = exc
            return outcome, len(client.queue), client.queue.rejected()

    return asyncio.run(main())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_refused_key_raises_and_keeps_the_whole_queue(
    mode: str, sqlite_url: str, server_factory: Any, tmp_path: Path
) -> None:
    """401 (a revoked key) and 403 (a key without the ingest scope) say nothing about the events."""
    from visioncascade.api.storage import Database, revoke_api_key

    server = server_factory(sqlite_url, key_cache_seconds=0)
    revoked = server.key("ingest")
    db = Database(sqlite_url)
    assert revoke_api_key(db, revoked.split("_")[1]) == 1
    db.dispose()
    events = [_event() for _ in range(3)]
    for key, status in ((revoked, 401), (server.key("read"), 403)):
        outcome, queued, rejected = _flush_queue(mode, server.base_url, key, tmp_path / "q.db", events)
        assert isinstance(outcome, ApiRequestError) and outcome.status == status
        assert "queued events not delivered, they stay queued" in str(outcome)
        assert queued == 3 and rejected == []
    assert count_rows(sqlite_url) == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_queue_too_large_for_one_request_is_delivered_in_parts(
    mode: str, sqlite_url: str, server_factory: Any, tmp_path: Path
) -> None:
    """413: the batch is halved until the parts fit; an event too large on its own is set aside."""
    server = server_factory(sqlite_url, max_body_bytes=16 * 1024)
    labels = [f"label-{i:04d}-of-a-very-large-model" for i in range(1000)]
    huge = make_event(
        "phone-1",
        "session-1",
        "clinic",
        [{"model": "m", "version": "1", "labels": labels, "probabilities": [0.001] * 1000}],
    )
    events = [_event() for _ in range(200)]
    assert len(json.dumps({"events": events})) > 3 * 16 * 1024 and len(json.dumps(huge)) > 16 * 1024
    outcome, queued, rejected = _flush_queue(
        mode, server.base_url, server.key("ingest"), tmp_path / "q.db", [*events[:100], huge, *events[100:]]
    )
    assert outcome == 200 and queued == 0
    assert [e["event_id"] for e, _ in rejected] == [huge["event_id"]]
    assert "larger than the server accepts" in rejected[0][1] and "16384 bytes" in rejected[0][1]
    stored = {r[0] for r in server.query("SELECT event_id FROM events")}
    assert stored == {e["event_id"] for e in events}
    assert server.state.committer.commits >= 4  # no request over 16 KiB: at least four parts


@pytest.mark.timeout(60)  # the old flush looped forever here
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_queued_events_with_non_canonical_ids_leave_the_queue(
    mode: str, sqlite_url: str, server_factory: Any, tmp_path: Path
) -> None:
    """The server answers with canonical lowercase ids; the queue removes the events by the ids it holds
    (uppercase, without dashes) and the flush ends."""
    import uuid

    server = server_factory(sqlite_url)
    ids = [str(uuid.uuid4()).upper(), uuid.uuid4().hex, str(uuid.uuid4())]
    events = [_event(event_id=i) for i in ids]
    outcome, queued, rejected = _flush_queue(
        mode, server.base_url, server.key("ingest"), tmp_path / "q.db", events
    )
    assert outcome == 3 and queued == 0 and rejected == []
    stored = {r[0] for r in server.query("SELECT event_id FROM events")}
    assert stored == {str(uuid.UUID(i)) for i in ids}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_flush_stops_when_a_round_delivers_nothing(mode: str, tmp_path: Path) -> None:
    """A server (a stand-in for a broken proxy) that answers 200 with no results: the flush stops after
    one request instead of sending the same events forever, and they stay queued."""
    posts: list[int] = []

    def empty(body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        posts.append(len(body["events"]))
        return 200, {"results": []}, {}

    with _stand_in(empty) as url:
        outcome, queued, rejected = _flush_queue(mode, url, "k", tmp_path / "q.db", [_event(), _event()])
    assert outcome == 0 and queued == 2 and rejected == []
    assert posts == [2]


def test_a_failed_queue_write_keeps_nothing_and_the_queue_stays_usable(tmp_path: Path) -> None:
    """An event_id SQLite cannot store (a lone surrogate) fails its whole put; later writes still work."""
    queue = DiskQueue(tmp_path / "q.db")
    good, unstorable = _event(), {**_event(), "event_id": "\ud800"}
    try:
        with pytest.raises(UnicodeEncodeError):
            queue.put([good, unstorable])
        assert len(queue) == 0  # nothing half-written
        queue.put([good])
        assert len(queue) == 1
        queue.reject(good, "set aside by the test")
        assert len(queue) == 0 and [e["event_id"] for e, _ in queue.rejected()] == [good["event_id"]]
    finally:
        queue.close()
    reopened = DiskQueue(tmp_path / "q.db")  # and what was committed is on disk
    try:
        assert len(reopened) == 0 and len(reopened.rejected()) == 1
    finally:
        reopened.close()


def test_retries_429_after_the_servers_retry_after_then_succeeds(
    sqlite_url: str, server_factory: Any
) -> None:
    """The real rate limiter (1 request/s, burst 1) answers the second send 429 + Retry-After; the client
    waits as told and resends the same event, which is stored once."""
    server = server_factory(sqlite_url, rate_limit_per_second=1.0, rate_limit_burst=1)
    events = [_event(), _event()]
    with Client(server.base_url, server.key("ingest"), retries=5, backoff=0.01) as client:
        answers = [client.send(e) for e in events]
    assert [a["event_id"] if a else None for a in answers] == [e["event_id"] for e in events]
    with server.client() as c:
        metrics = c.get("/metrics").text
    assert 'visioncascade_http_requests_total{method="POST",route="/v1/events",status="429"}' in metrics
    assert count_rows(sqlite_url) == 2


def test_retries_5xx_with_backoff_then_succeeds() -> None:
    """A server (here a stand-in for a proxy in front of the API) answers 503 twice, then 200."""
    seen: list[str] = []

    def flaky(body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        seen.append(body["event_id"])
        if len(seen) <= 2:
            return 503, {"detail": "busy"}, {}
        return 200, {"event_id": body["event_id"], "output": 1, "rule": None}, {}

    event = _event()
    with _stand_in(flaky) as url, Client(url, "k", retries=3, backoff=0.01) as client:
        assert client.send(event) == {"event_id": event["event_id"], "output": 1, "rule": None}
    assert seen == [event["event_id"]] * 3  # the same event_id every time: the server can deduplicate


def test_a_503_with_retry_after_is_retried_after_that_many_seconds() -> None:
    """A proxy in front of the API answers 503 + Retry-After: 2 (e.g. during a deploy): the client waits
    those 2 s rather than its own 0.01 s backoff, then resends the same event."""
    arrivals: list[float] = []

    def deploying(body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        arrivals.append(time.monotonic())
        if len(arrivals) == 1:
            return 503, {"detail": "deploying"}, {"Retry-After": "2"}
        return 200, {"event_id": body["event_id"], "output": 1, "rule": None}, {}

    with _stand_in(deploying) as url, Client(url, "k", retries=3, backoff=0.01, max_backoff=10) as client:
        assert client.send(_event()) is not None
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 1.5  # a lower bound only: waited as told, not 0.01 s


def test_retries_connection_errors_until_the_server_is_up(sqlite_url: str, server_factory: Any) -> None:
    port = free_port()
    key_holder: dict[str, str] = {}
    ready = threading.Event()

    def start_later() -> None:
        time.sleep(0.5)
        key_holder["server"] = server_factory(sqlite_url, port=port)
        ready.set()

    from visioncascade.api.storage import Database, create_api_key

    db = Database(sqlite_url)
    key = create_api_key(db, "ingest")[0]
    db.dispose()
    threading.Thread(target=start_later, daemon=True).start()
    with Client(f"http://127.0.0.1:{port}", key, retries=10, backoff=0.1, max_backoff=2) as client:
        answer = client.send(_event())
    ready.wait(30)
    assert answer is not None and answer["rule"] is None
    assert count_rows(sqlite_url) == 1


def test_async_client(sqlite_url: str, server_factory: Any, tmp_path: Path) -> None:
    server = server_factory(sqlite_url)
    key = server.key("admin")

    async def main() -> None:
        offline = f"http://127.0.0.1:{free_port()}"
        async with AsyncClient(offline, key, retries=1, backoff=0.01, queue_path=tmp_path / "q.db") as client:
            assert await client.send(_event()) is None
        async with AsyncClient(server.base_url, key, queue_path=tmp_path / "q.db") as client:
            answers = await asyncio.gather(*[client.send(_event()) for _ in range(10)])
            assert all(a is not None and a["rule"] is None for a in answers)
            assert await client.flush() == 0
            assert len((await client.events(limit=100))["events"]) == 11

    asyncio.run(main())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_corrupt_queue_file_is_an_api_error_naming_it_and_is_left_alone(mode: str, tmp_path: Path) -> None:
    from visioncascade.errors import ApiError

    path = tmp_path / "q.db"
    garbage = b"this is not an SQLite file, it was overwritten by something else\n" * 100
    path.write_bytes(garbage)
    with pytest.raises(ApiError) as info:
        if mode == "sync":
            Client("http://127.0.0.1:9", "k", queue_path=path)
        else:
            AsyncClient("http://127.0.0.1:9", "k", queue_path=path)
    message = str(info.value)
    assert str(path) in message and "not a usable SQLite queue" in message
    assert "Move it aside" in message and "q.db.broken" in message
    assert path.read_bytes() == garbage  # the user's file is kept as it was
    path.rename(tmp_path / "q.db.broken")  # the fix the message gives works
    with Client("http://127.0.0.1:9", "k", queue_path=path) as client:
        assert client.queue is not None and len(client.queue) == 0
