"""POST/GET /v1/events and POST /v1/events:batch over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from visioncascade.api.routes.events import _batch_body
from visioncascade.api.storage import StoredResult

from .conftest import LiveServer, count_rows, make_event, make_stage


def test_post_event_answers_with_the_output_after_storing(server: LiveServer) -> None:
    key = server.key("admin")
    event = make_event()
    with server.client(key) as c:
        r = c.post("/v1/events", json=event)
        assert r.status_code == 200, r.text
        assert r.json() == {
            "event_id": event["event_id"],
            "output": {"label": "malignant", "probability": 0.8, "model": "lesion"},
            "rule": None,
        }
        assert "idempotent-replayed" not in r.headers
        stored = c.get("/v1/events").json()["events"]
    assert [e["event_id"] for e in stored] == [event["event_id"]]
    assert stored[0]["stages"] == event["stages"]
    assert stored[0]["output"] == r.json()["output"]
    assert count_rows(server.db_url, "event_stages") == 1


def test_retry_returns_the_same_answer_and_stores_once(server: LiveServer) -> None:
    key = server.key("ingest")
    event = make_event()
    with server.client(key) as c:
        first = c.post("/v1/events", json=event)
        again = c.post("/v1/events", json=event)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.text == first.text == json.dumps(first.json(), separators=(",", ":"), ensure_ascii=False)
    assert again.headers["idempotent-replayed"] == "true"
    assert count_rows(server.db_url) == 1


def test_same_event_id_with_other_content_is_a_conflict(server: LiveServer) -> None:
    key = server.key("ingest")
    event = make_event()
    with server.client(key) as c:
        assert c.post("/v1/events", json=event).status_code == 200
        r = c.post("/v1/events", json={**event, "context": "home"})
    assert r.status_code == 409
    assert "different payload" in r.json()["detail"] and r.json()["errors"] == []
    assert count_rows(server.db_url) == 1


def test_same_instant_in_another_timezone_is_a_retry_not_a_conflict(server: LiveServer) -> None:
    key = server.key("ingest")
    event = make_event(captured_at="2026-01-02T03:04:05+00:00")
    with server.client(key) as c:
        assert c.post("/v1/events", json=event).status_code == 200
        r = c.post("/v1/events", json={**event, "captured_at": "2026-01-02T04:04:05+01:00"})
    assert r.status_code == 200
    assert r.headers["idempotent-replayed"] == "true"


def test_twenty_concurrent_identical_posts_store_exactly_one_row(server: LiveServer) -> None:
    key = server.key("ingest")
    event = make_event()
    barrier = threading.Barrier(20)
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def post() -> None:
        with httpx.Client(base_url=server.base_url, headers={"X-API-Key": key}, timeout=60) as c:
            barrier.wait()
            r = c.post("/v1/events", json=event)
            with lock:
                answers.append((r.status_code, r.json()))

    threads = [threading.Thread(target=post) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 20
    assert {status for status, _ in answers} == {200}
    assert len({json.dumps(body, sort_keys=True) for _, body in answers}) == 1
    assert count_rows(server.db_url) == 1
    assert count_rows(server.db_url, "event_stages") == 1


COMPACT: dict[str, Any] = {"separators": (",", ":"), "ensure_ascii": False}


def test_batch_gives_per_event_results_in_order(server: LiveServer) -> None:
    key = server.key("ingest")
    old = make_event()
    with server.client(key) as c:
        c.post("/v1/events", json=old)
        fresh = [make_event(session_id=f"s{i}") for i in range(3)]
        conflicting = {**old, "device_id": "someone-else"}
        repeated = fresh[0]
        r = c.post("/v1/events:batch", json={"events": [*fresh, old, conflicting, repeated]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["event_id"] for x in results] == [e["event_id"] for e in [*fresh, old, conflicting, repeated]]
    assert [x["status"] for x in results] == ["created"] * 3 + ["duplicate", "conflict", "duplicate"]
    assert results[0]["output"] == results[5]["output"]
    assert results[4]["output"] is None and "different payload" in results[4]["detail"]
    assert r.text == json.dumps(r.json(), separators=(",", ":"), ensure_ascii=False)  # compact, as before
    assert count_rows(server.db_url) == 4


def test_answers_are_the_compact_json_of_the_results() -> None:
    created = StoredResult(str(uuid.uuid4()), "created", {"a": 'é "q"\n', "p": 1e-05}, 'r "1" ü')
    created = created._replace(output_json=json.dumps(created.output, **COMPACT))
    dup = created._replace(event_id=str(uuid.uuid4()), status="duplicate", rule=None)
    conflict = StoredResult(str(uuid.uuid4()), "conflict", None, None)
    expected = {
        "results": [
            {
                "event_id": x.event_id,
                "status": x.status,
                "output": x.output,
                "rule": x.rule,
                "detail": "event_id already stored with a different payload" if x is conflict else None,
            }
            for x in (created, dup, conflict)
        ]
    }
    assert _batch_body([created, dup, conflict]) == json.dumps(expected, **COMPACT)


def test_batch_retry_in_another_timezone_is_a_duplicate_and_a_changed_probability_a_conflict(
    server: LiveServer,
) -> None:
    key = server.key("ingest")
    events = [make_event(captured_at="2026-01-02T03:04:05.5+00:00") for _ in range(3)]
    with server.client(key) as c:
        first = c.post("/v1/events:batch", json={"events": events})
        shifted = {**events[0], "captured_at": "2026-01-01T22:04:05.500-05:00"}
        changed = {**events[1], "stages": [make_stage(probs=(0.25, 0.75))]}
        again = c.post("/v1/events:batch", json={"events": [shifted, changed, events[2]]})
    assert first.status_code == again.status_code == 200, again.text
    assert [x["status"] for x in first.json()["results"]] == ["created"] * 3
    assert [x["status"] for x in again.json()["results"]] == ["duplicate", "conflict", "duplicate"]
    assert again.json()["results"][0]["output"] == first.json()["results"][0]["output"]
    assert count_rows(server.db_url) == 3
    assert count_rows(server.db_url, "event_stages") == 3


def test_batch_of_500_is_accepted_and_501_refused(server: LiveServer) -> None:
    key = server.key("ingest")
    with server.client(key) as c:
        ok = c.post("/v1/events:batch", json={"events": [make_event() for _ in range(500)]})
        too_many = c.post("/v1/events:batch", json={"events": [make_event() for _ in range(501)]})
    assert ok.status_code == 200
    assert len(ok.json()["results"]) == 500
    assert too_many.status_code == 422
    assert "at most 500" in too_many.json()["detail"]
    assert count_rows(server.db_url) == 500


def test_a_bad_event_rejects_the_whole_batch_and_names_it(server: LiveServer) -> None:
    key = server.key("ingest")
    bad = make_event(stages=[make_stage(probs=(0.5, 0.6))])
    with server.client(key) as c:
        r = c.post("/v1/events:batch", json={"events": [make_event(), bad, make_event()]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"][:3] == ["body", "events", 1]
    assert "sum to" in r.json()["detail"]
    assert count_rows(server.db_url) == 0


def test_list_filters_and_cursor_pagination(server: LiveServer) -> None:
    key = server.key("admin")
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    events = []
    for i in range(25):
        events.append(
            make_event(
                device_id=f"dev-{i % 3}",
                context="clinic" if i % 2 else "home",
                captured_at=(t0 + timedelta(minutes=i)).isoformat(),
                stages=[
                    make_stage("gate", ("skin", "other"), (0.9, 0.1)),
                    make_stage("lesion", ("benign", "malignant"), (0.3, 0.7) if i % 5 == 0 else (0.7, 0.3)),
                ],
            )
        )
    with server.client(key) as c:
        assert c.post("/v1/events:batch", json={"events": events}).status_code == 200

        def ids(**params: object) -> list[str]:
            r = c.get("/v1/events", params=params)
            assert r.status_code == 200, r.text
            return [e["event_id"] for e in r.json()["events"]]

        newest_first = [e["event_id"] for e in reversed(events)]
        assert ids() == newest_first
        assert ids(device_id="dev-1") == [
            e["event_id"] for e in reversed(events) if e["device_id"] == "dev-1"
        ]
        assert ids(context="home") == [e["event_id"] for e in reversed(events) if e["context"] == "home"]
        assert ids(model="lesion", label="malignant") == [events[i]["event_id"] for i in (20, 15, 10, 5, 0)]
        assert ids(model="gate", label="malignant") == []
        assert ids(label="skin") == newest_first
        assert ids(model="nope") == []
        since, until = (t0 + timedelta(minutes=5)).isoformat(), (t0 + timedelta(minutes=8)).isoformat()
        assert ids(since=since, until=until) == [events[i]["event_id"] for i in (7, 6, 5)]

        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
            body = c.get("/v1/events", params=params).json()
            seen += [e["event_id"] for e in body["events"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == newest_first
        assert pages == 7
        bad = c.get("/v1/events", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 400 and "cursor" in bad.json()["detail"]
        naive = c.get("/v1/events", params={"since": "2026-01-01T00:00:00"})
        assert naive.status_code == 422 and "timezone" in naive.json()["detail"]


def test_cursors_that_are_not_ours_are_refused_clearly(server: LiveServer) -> None:
    """A forged cursor (NUL in its event id, a time outside the supported dates) is a 400, not a 500."""
    key = server.key("read")

    def forged(position: str) -> str:
        return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")

    with server.client(key) as c:
        answers = [
            c.get("/v1/events", params={"cursor": forged(position)})
            for position in ("2026-03-01T12:00:00|a\x00b", "0001-01-01T00:00:00+01:00|x")
        ]
    for r in answers:
        assert r.status_code == 400, r.text
        assert r.json()["detail"] == "cursor is not valid; pass next_cursor from a previous page unchanged"


@pytest.mark.parametrize(
    ("path", "params", "status", "name", "words"),
    [
        ("/v1/events", {"cursor": "not-a-cursor"}, 400, "cursor", "pass next_cursor"),
        ("/v1/events", {"device_id": "a\x00b"}, 422, "device_id", "NUL"),
        ("/v1/events", {"label": "a\x00b"}, 422, "label", "NUL"),
        (
            "/v1/stats",
            {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
            422,
            "since",
            "earlier",
        ),
        (
            "/v1/stats",
            {"reference_since": "2026-01-02T00:00:00Z", "reference_until": "2026-01-01T00:00:00Z"},
            422,
            "reference_since",
            "reference_since must be earlier than reference_until",
        ),
        ("/v1/stats", {"until": "0001-01-01T12:00:00Z"}, 422, "until", "give since"),
        (
            "/v1/stats",
            {"since": "0001-01-01T01:00:00Z", "until": "0001-01-02T00:00:00Z"},
            422,
            "reference_since",
            "give reference_since",
        ),
        ("/v1/stats", {"context": "a\x00b"}, 422, "context", "NUL"),
    ],
)
def test_query_errors_name_the_parameter(
    server: LiveServer, path: str, params: dict[str, str], status: int, name: str, words: str
) -> None:
    """As documented, a 400/422 names each bad field in ``errors``, also for checks the routes make."""
    with server.client(server.key("read")) as c:
        r = c.get(path, params=params)
    assert r.status_code == status, r.text
    body = r.json()
    assert words in body["detail"]
    assert body["errors"] == [{"loc": ["query", name], "msg": body["detail"], "type": "value_error"}]


def test_stats_counts_confidence_entropy_and_drift(server: LiveServer) -> None:
    key = server.key("read")
    ingest = server.key("ingest")
    t0 = datetime(2026, 4, 1, tzinfo=UTC)
    reference = [  # 2 benign, 2 malignant the day before
        make_event(captured_at=(t0 - timedelta(hours=h)).isoformat(), stages=[make_stage(probs=p)])
        for h, p in ((1, (0.9, 0.1)), (2, (0.8, 0.2)), (3, (0.1, 0.9)), (4, (0.3, 0.7)))
    ]
    window = [  # 3 benign (one at 0.55 < 0.6), 1 malignant
        make_event(captured_at=(t0 + timedelta(hours=h)).isoformat(), stages=[make_stage(probs=p)])
        for h, p in ((1, (0.9, 0.1)), (2, (0.55, 0.45)), (3, (0.7, 0.3)), (4, (0.4, 0.6)))
    ]
    with server.client(ingest) as c:
        assert c.post("/v1/events:batch", json={"events": reference + window}).status_code == 200
    with server.client(key) as c:
        r = c.get(
            "/v1/stats",
            params={
                "since": t0.isoformat(),
                "until": (t0 + timedelta(days=1)).isoformat(),
                "confidence": 0.6,
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        bad = c.get("/v1/stats", params={"since": t0.isoformat(), "until": t0.isoformat()})
    groups = {g["label"]: g for g in body["groups"]}
    assert groups["benign"]["count"] == 3 and groups["malignant"]["count"] == 1
    assert groups["benign"]["mean_top_probability"] == pytest.approx((0.9 + 0.55 + 0.7) / 3)
    assert groups["benign"]["share_below_confidence"] == pytest.approx(1 / 3)
    assert groups["malignant"]["share_below_confidence"] == 0.0
    import math

    h = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))  # noqa: E731
    assert groups["benign"]["mean_entropy"] == pytest.approx((h(0.9) + h(0.55) + h(0.7)) / 3)
    (drift,) = body["drift"]
    assert drift["count"] == 4 and drift["reference_count"] == 4
    assert drift["total_variation"] == pytest.approx(0.25)  # 3/4 vs 1/2 benign
    assert 0 < drift["js_divergence"] < 1
    assert body["reference_until"] == body["since"]
    assert bad.status_code == 422 and "earlier" in bad.json()["detail"]


def test_unknown_event_id_format_and_payload_shape(server: LiveServer) -> None:
    key = server.key("ingest")
    with server.client(key) as c:
        r = c.post("/v1/events", json=make_event(event_id="not-a-uuid"))
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "event_id"]


def test_a_failing_event_fails_alone_and_stores_nothing(sqlite_url: str, server_factory: Any) -> None:
    """A database failure for one request (here a real trigger) answers it 503; requests committed in
    the same group commit are unaffected."""
    from sqlalchemy import text

    from visioncascade.api.storage import Database

    db = Database(sqlite_url)
    with db.writer.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER reject_poison BEFORE INSERT ON events WHEN NEW.device_id = 'poison' "
                "BEGIN SELECT RAISE(ABORT, 'poison event'); END"
            )
        )
    db.dispose()
    server = server_factory(sqlite_url)
    key = server.key("ingest")
    events = [make_event() for _ in range(20)] + [make_event(device_id="poison")]
    barrier = threading.Barrier(len(events))
    codes: dict[str, int] = {}

    def post(event: dict[str, Any]) -> None:
        with httpx.Client(base_url=server.base_url, headers={"X-API-Key": key}, timeout=60) as c:
            barrier.wait()
            codes[event["device_id"] + event["event_id"]] = c.post("/v1/events", json=event).status_code

    threads = [threading.Thread(target=post, args=(e,)) for e in events]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    poison = [code for k, code in codes.items() if k.startswith("poison")]
    good = [code for k, code in codes.items() if not k.startswith("poison")]
    assert poison == [503]
    assert good == [200] * 20
    assert count_rows(sqlite_url) == 20
    assert count_rows(sqlite_url, "event_stages") == 20


def test_the_ingest_fast_path_answers_exactly_as_the_routes(tmp_path: Any, server_factory: Any) -> None:
    """POST /v1/events and /v1/events:batch are served by an ASGI fast path (IngestFastPath) in front of
    the router; the same requests sent to an app without it (the FastAPI routes) get the same status,
    body and headers, for answers and for every kind of error."""
    from visioncascade.api.fastpath import IngestFastPath
    from visioncascade.api.storage import upgrade_database

    from .conftest import LiveServer

    urls = [f"sqlite:///{tmp_path / name}" for name in ("fast.db", "routes.db")]
    for url in urls:
        upgrade_database(url)
    fast = server_factory(urls[0])
    plain = LiveServer(urls[1], environment="development")
    plain.app.user_middleware = [m for m in plain.app.user_middleware if m.cls is not IngestFastPath]
    assert len(plain.app.user_middleware) == len(fast.app.user_middleware) - 1
    plain.start()
    try:
        now = datetime.now(UTC).isoformat()
        ev = make_event(captured_at=now)
        batch = [make_event(captured_at=now) for _ in range(3)]
        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        requests: list[tuple[str, str, Any, str]] = [  # (path, key scope, body, content)
            ("/v1/events", "ingest", ev, ""),
            ("/v1/events", "ingest", ev, ""),  # a retry: Idempotent-Replayed
            ("/v1/events", "ingest", {**ev, "stages": [make_stage(probs=(0.3, 0.7))]}, ""),  # 409
            ("/v1/events", "ingest", None, '{"event_id": '),  # 400
            ("/v1/events", "ingest", None, "[1, 2]"),  # not an object
            ("/v1/events", "ingest", make_event(event_id=ev["event_id"], extra=1), ""),
            ("/v1/events", "ingest", make_event(stages=[make_stage(probs=(0.7, 0.7))]), ""),
            ("/v1/events", "ingest", make_event(captured_at=future), ""),
            ("/v1/events", "", make_event(), ""),  # 401
            ("/v1/events", "read", make_event(), ""),  # 403
            ("/v1/events:batch", "ingest", {"events": batch}, ""),
            ("/v1/events:batch", "ingest", {"events": [*batch, ev]}, ""),  # duplicates
            ("/v1/events:batch", "ingest", {"events": [make_event(), make_event(stages=[])]}, ""),
            ("/v1/events:batch", "ingest", {"events": [make_event(captured_at=future)]}, ""),
            ("/v1/events:batch", "", {"events": batch}, ""),
        ]
        answers: list[list[Any]] = [[], []]
        for i, server in enumerate((fast, plain)):
            keys = {"ingest": server.key("ingest"), "read": server.key("read")}
            for path, scope, body, content in requests:
                headers = {"Authorization": f"Bearer {keys[scope]}"} if scope else {}
                with httpx.Client(base_url=server.base_url, timeout=30) as c:
                    if body is not None:
                        r = c.post(path, json=body, headers=headers)
                    else:
                        r = c.post(
                            path, content=content, headers={**headers, "Content-Type": "application/json"}
                        )
                answers[i].append(
                    (
                        path,
                        r.status_code,
                        r.json(),
                        {
                            k: r.headers.get(k)
                            for k in ("content-type", "idempotent-replayed", "www-authenticate")
                        },
                    )
                )
        statuses = [a[1] for a in answers[0]]
        assert statuses == [200, 200, 409, 400, 422, 422, 422, 422, 401, 403, 200, 200, 422, 422, 401]
        assert answers[0][1][3]["idempotent-replayed"] == "true"
        for got, expected in zip(answers[0], answers[1], strict=True):
            assert got == expected
        assert count_rows(urls[0]) == count_rows(urls[1]) == 4
    finally:
        plain.stop()
    with httpx.Client(base_url=fast.base_url, timeout=30) as c:
        metrics = c.get("/metrics").text
    assert (
        'visioncascade_http_requests_total{method="POST",route="/v1/events:batch",status="200"} 2' in metrics
    )
