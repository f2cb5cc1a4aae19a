"""Every bad input is refused with a 4xx and a precise message, and nothing is stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from .conftest import LiveServer, count_rows, make_event, make_stage


def _raw(event: dict[str, Any], **replace: str) -> bytes:
    """JSON text of ``event`` with the JSON of some values replaced verbatim (NaN, Infinity)."""
    text = json.dumps(event)
    for old, new in replace.items():
        text = text.replace(old, new)
    return text.encode()


CASES: list[tuple[str, Any, int, str]] = [
    ("malformed JSON", b'{"event_id": ', 400, "not valid JSON"),
    ("not an object", b"[1, 2]", 422, "JSON object"),
    ("unknown field", make_event(extra_field=1), 422, "extra_field: Extra inputs are not permitted"),
    ("unknown stage field", make_event(stages=[{**make_stage(), "logits": [1, 2]}]), 422, "stages[0].logits"),
    (
        "missing field",
        {k: v for k, v in make_event().items() if k != "session_id"},
        422,
        "session_id: Field required",
    ),
    (
        "NaN",
        _raw(make_event(stages=[make_stage(probs=(0.25, 0.75))]), **{"0.25": "NaN"}),
        422,
        "finite number",
    ),
    (
        "Infinity",
        _raw(make_event(stages=[make_stage(probs=(0.25, 0.75))]), **{"0.25": "Infinity"}),
        422,
        "finite",
    ),
    (
        "probability > 1",
        make_event(stages=[make_stage(probs=(-0.5, 1.5))]),
        422,
        "greater than or equal to 0",
    ),
    (
        "probability above 1",
        make_event(stages=[make_stage(probs=(1.2, 0.0))]),
        422,
        "less than or equal to 1",
    ),
    ("sum not 1", make_event(stages=[make_stage(probs=(0.5, 0.6))]), 422, "sum to 1.1, not 1"),
    ("sum just outside", make_event(stages=[make_stage(probs=(0.5, 0.5011))]), 422, "not 1 (± 0.001)"),
    (
        "lengths differ",
        make_event(stages=[make_stage(labels=("a", "b", "c"), probs=(0.5, 0.5))]),
        422,
        "labels has 3 entries but probabilities has 2",
    ),
    (
        "duplicate labels",
        make_event(stages=[make_stage(labels=("a", "a"), probs=(0.5, 0.5))]),
        422,
        "duplicate labels ['a']",
    ),
    (
        "too many labels",
        make_event(stages=[make_stage(labels=tuple(f"l{i}" for i in range(1001)), probs=(1 / 1001,) * 1001)]),
        422,
        "at most 1000 items",
    ),
    ("too many stages", make_event(stages=[make_stage()] * 17), 422, "at most 16 items"),
    ("no stages", make_event(stages=[]), 422, "at least 1 item"),
    ("oversized string", make_event(device_id="x" * 129), 422, "at most 128 characters"),
    ("empty string", make_event(context=""), 422, "at least 1 character"),
    ("NUL in string", make_event(session_id="a\x00b"), 422, "NUL"),
    ("naive timestamp", make_event(captured_at="2026-01-02T03:04:05"), 422, "timezone"),
    ("not a timestamp", make_event(captured_at="yesterday"), 422, "captured_at"),
    ("unix timestamp", make_event(captured_at=1767225600), 422, "Unix timestamps (numbers) are not accepted"),
    ("unix timestamp as text", make_event(captured_at="1767225600.5"), 422, "send the time as ISO-8601"),
    ("exponent as text", make_event(captured_at="1.7e9"), 422, "ISO-8601 timestamp with a timezone"),
    (
        "far future",
        make_event(captured_at=(datetime.now(UTC) + timedelta(days=2)).isoformat()),
        422,
        "in the future; check the device clock",
    ),
    (
        "before 2000",
        make_event(captured_at="1999-12-31T23:59:59Z"),
        422,
        "before 2000-01-01; check the device clock",
    ),
    (
        "out of range",
        make_event(captured_at="0001-01-01T00:00:00+01:00"),
        422,
        "out of the supported date range",
    ),
    ("bad uuid", make_event(event_id="1234"), 422, "event_id"),
    ("probability as text", make_event(stages=[make_stage(probs=("0.2", 0.8))]), 422, "valid number"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("name", "body", "status", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_events_are_refused_precisely_and_not_stored(
    server: LiveServer, name: str, body: Any, status: int, message: str
) -> None:
    key = server.key("ingest")
    with server.client(key) as c:
        if isinstance(body, bytes):
            r = c.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
        else:
            r = c.post("/v1/events", json=body)
        batch = (
            c.post("/v1/events:batch", json={"events": [make_event(), body]})
            if isinstance(body, dict)
            else None
        )
    assert r.status_code == status, r.text
    assert message in r.text, r.text
    assert r.json()["detail"]
    if batch is not None:
        assert batch.status_code == status, batch.text
    assert count_rows(server.db_url) == 0
    assert count_rows(server.db_url, "event_stages") == 0


def test_oversized_body_is_413(sqlite_url: str, server_factory: Any) -> None:
    server = server_factory(sqlite_url, max_body_bytes=64 * 1024)
    key = server.key("ingest")
    big = {"events": [make_event() for _ in range(400)]}
    with server.client(key) as c:
        r = c.post("/v1/events:batch", json=big)

        def chunks() -> Any:
            data = json.dumps(big).encode()
            for i in range(0, len(data), 8192):
                yield data[i : i + 8192]

        chunked = c.post("/v1/events:batch", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "larger than 65536 bytes" in r.json()["detail"]
    assert r.json()["errors"] == []
    assert chunked.status_code == 413
    assert count_rows(sqlite_url) == 0


def test_empty_and_too_big_batches(server: LiveServer) -> None:
    key = server.key("ingest")
    with server.client(key) as c:
        empty = c.post("/v1/events:batch", json={"events": []})
        unknown = c.post("/v1/events:batch", json={"events": [make_event()], "more": 1})
    assert empty.status_code == 422 and "at least 1 item" in empty.text
    assert unknown.status_code == 422 and "more" in unknown.json()["detail"]
    assert count_rows(server.db_url) == 0
