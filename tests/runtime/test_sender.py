"""Events from a real cascade to the real API: down, then up, nothing lost, nothing twice."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.conftest import LiveServer, count_rows, free_port
from visioncascade.api.storage import upgrade_database
from visioncascade.runtime import Cascade
from visioncascade.runtime.sender import EventSender, HttpEventPoster

from .test_cascade import bar, write_cascade


@pytest.fixture
def cascade(tmp_path: Path, cascade_runs) -> Cascade:
    return Cascade.from_file(
        write_cascade(tmp_path, cascade_runs, {"hiking": {"model": "models/orientation"}})
    )


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    upgrade_database(url)
    return url


def _events(cascade: Cascade, n: int) -> list[dict]:
    events = []
    for i in range(n):
        result = cascade.run(bar("horizontal" if i % 2 else "vertical", seed=i), "hiking")
        assert result.event is not None
        events.append(result.event)
    return events


def _wait(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_api_down_then_up_loses_nothing_and_stores_nothing_twice(cascade: Cascade, database: str):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = LiveServer(
        database, port, environment="development", rate_limit_per_second=1e5, rate_limit_burst=100000
    )
    key = server.key("ingest")
    sender = EventSender(
        HttpEventPoster(url, key, timeout_s=2.0),
        queue_size=100,
        min_interval_s=0.0,
        max_backoff_s=0.2,
        device_id="test-phone",
    )
    events = _events(cascade, 20)
    started = time.perf_counter()
    for i, event in enumerate(events):
        assert sender.offer(event, key=("hiking", i))
    assert time.perf_counter() - started < 1.0  # offering never waits for the network
    assert _wait(lambda: sender.stats.retries >= 2)
    assert sender.stats.api_up is False and sender.stats.posted == 0 and sender.stats.pending == 20
    server.start()
    try:
        assert sender.flush(timeout=30.0)
        stats = sender.close()
        assert stats.posted == 20 and stats.dropped == 0 and stats.pending == 0 and stats.api_up is True
        assert count_rows(database) == 20
        reader = server.key("read")
        listed = httpx.get(
            f"{url}/v1/events", params={"limit": 100}, headers={"Authorization": f"Bearer {reader}"}
        )
        body = listed.json()
        items = body.get("items", body.get("events", []))
        assert {e["event_id"] for e in items} == {e["event_id"] for e in events}
        # A retry of an already stored event (same event_id) stores nothing new and answers the same.
        poster = HttpEventPoster(url, key)
        payload = {"device_id": "test-phone", "session_id": sender.session_id, **events[0]}
        assert poster(payload) == poster(payload)
        assert count_rows(database) == 20
    finally:
        server.stop()


def test_queue_bound_drops_oldest_and_counts(cascade: Cascade):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    sender = EventSender(
        HttpEventPoster(url, None, timeout_s=0.5), queue_size=5, min_interval_s=0.0, max_backoff_s=0.1
    )
    for i, event in enumerate(_events(cascade, 8)):
        sender.offer(event, key=i)
    stats = sender.close(timeout=0.5)
    assert stats.queued == 8 and stats.dropped == 3 and stats.posted == 0
    assert stats.pending in (4, 5)  # the one in flight may count as pending or not at close


def test_policy_posts_changes_and_throttles_repeats(cascade: Cascade):
    url = f"http://127.0.0.1:{free_port()}"
    sender = EventSender(HttpEventPoster(url, None, timeout_s=0.5), min_interval_s=60.0, max_backoff_s=0.1)
    events = _events(cascade, 6)
    results = [sender.offer(e, key=("hiking", "object", "vertical")) for e in events[:4]]
    assert results == [True, False, False, False]
    assert sender.offer(events[4], key=("hiking", "object", "horizontal"))
    assert sender.offer(events[5], key=("hiking", "object", "vertical"))  # the decision changed back
    stats = sender.close(timeout=0.2)
    assert stats.produced == 6 and stats.skipped == 3 and stats.queued == 3


def test_a_rejected_event_does_not_block_the_queue(cascade: Cascade, database: str):
    server = LiveServer(
        database, environment="development", rate_limit_per_second=1e5, rate_limit_burst=100000
    ).start()
    try:
        key = server.key("ingest")
        sender = EventSender(HttpEventPoster(server.base_url, key), min_interval_s=0.0)
        good = _events(cascade, 2)
        bad = {**good[0], "event_id": "not-a-uuid"}
        sender.offer(bad, key="bad")
        sender.offer(good[1], key="good")
        stats = sender.close(timeout=20)
        assert stats.rejected == 1 and stats.posted == 1 and "422" in (stats.last_error or "")
        assert count_rows(database) == 1
    finally:
        server.stop()


class _StandIn(http.server.BaseHTTPRequestHandler):
    """Answers every POST with its server's current ``reply`` (status, content type, body) and counts them."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.hits += 1  # type: ignore[attr-defined]
        status, content_type, body = self.server.reply  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def _stand_in_api(status: int, content_type: str, body: bytes) -> Iterator[http.server.ThreadingHTTPServer]:
    """A real HTTP server on 127.0.0.1 that answers as told (what the real API never does: HTML, say)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    server.hits = 0  # type: ignore[attr-defined]
    server.reply = (status, content_type, body)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _answer(event: dict) -> bytes:
    return json.dumps({"event_id": event["event_id"], "output": None, "rule": None}).encode()


def test_a_reply_that_is_not_json_is_recorded_and_retried(cascade: Cascade):
    """A 200 with an HTML page (a captive portal, a proxy's login page) does not stop the sender: the error is
    recorded, the event is kept and retried, and it is posted once the API answers properly."""
    (event,) = _events(cascade, 1)
    with _stand_in_api(200, "text/html", b"<html>please log in</html>") as api:
        url = f"http://127.0.0.1:{api.server_port}"
        sender = EventSender(
            HttpEventPoster(url, None, timeout_s=2.0), min_interval_s=0.0, max_backoff_s=0.05
        )
        assert sender.offer(event, key="a")
        assert _wait(lambda: sender.stats.retries >= 2)
        assert sender.stats.api_up is False and sender.stats.posted == 0 and sender.stats.pending == 1
        assert (sender.stats.last_error or "").startswith("JSONDecodeError: ")
        api.reply = (200, "application/json", _answer(event))  # type: ignore[attr-defined]
        stats = sender.close(timeout=20.0)
    assert stats.posted == 1 and stats.pending == 0 and stats.api_up is True
    assert stats.last_answer == {"event_id": event["event_id"], "output": None, "rule": None}


def test_a_failing_on_answer_callback_does_not_stop_the_sender(cascade: Cascade):
    events = _events(cascade, 3)
    seen = []

    def on_answer(event: dict, answer: dict) -> None:
        seen.append(event["event_id"])
        if len(seen) == 1:
            raise RuntimeError("display went away")

    with _stand_in_api(201, "application/json", b'{"output": null}') as api:
        url = f"http://127.0.0.1:{api.server_port}"
        sender = EventSender(HttpEventPoster(url, None), min_interval_s=0.0, on_answer=on_answer)
        for i, event in enumerate(events):
            sender.offer(event, key=i)
        stats = sender.close(timeout=20.0)
    assert stats.posted == 3 and stats.pending == 0 and api.hits == 3  # type: ignore[attr-defined]
    assert seen == [e["event_id"] for e in events]
    assert stats.last_error == "on_answer callback failed: RuntimeError: display went away"


def test_new_events_do_not_cut_the_backoff_short(cascade: Cascade):
    """While the API is down the sender waits out its backoff: new events are queued, not a reason to retry
    at once (which would hit a down API once per event)."""
    events = _events(cascade, 6)
    with _stand_in_api(503, "application/json", b'{"detail": "down"}') as api:
        url = f"http://127.0.0.1:{api.server_port}"
        sender = EventSender(
            HttpEventPoster(url, None), min_interval_s=0.0, initial_backoff_s=60.0, max_backoff_s=60.0
        )
        sender.offer(events[0], key=0)
        assert _wait(lambda: sender.stats.retries == 1)
        for i, event in enumerate(events[1:], start=1):
            sender.offer(event, key=i)
        assert not _wait(lambda: api.hits > 1, timeout=1.0)  # type: ignore[attr-defined]
        assert sender.stats.retries == 1 and sender.stats.pending == 6
        assert "503" in (sender.stats.last_error or "")
        stats = sender.close(timeout=0.0)  # close ends the backoff: the thread stops
        assert not sender._thread.is_alive()
    assert stats.posted == 0 and stats.pending == 6
