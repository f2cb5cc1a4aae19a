"""/healthz, /readyz (database reachable), /metrics (Prometheus), OpenAPI."""

from __future__ import annotations

from sqlalchemy import text

from visioncascade.api.storage import Database

from .conftest import BOOTSTRAP_KEY, LiveServer, make_event


def test_health_ready_and_metrics(server: LiveServer) -> None:
    key = server.key("ingest")
    with server.client(key) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ready"}
        c.post("/v1/events", json=make_event())
        c.post("/v1/events", json={"bad": 1})
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    body = r.text
    assert 'visioncascade_http_requests_total{method="POST",route="/v1/events",status="200"} 1' in body
    assert 'visioncascade_http_requests_total{method="POST",route="/v1/events",status="422"} 1' in body
    assert "visioncascade_events_stored_total 1" in body
    assert 'visioncascade_http_request_duration_seconds_bucket{route="/v1/events",le="+Inf"} 2' in body
    assert "visioncascade_group_commits 1" in body


def test_readyz_is_503_when_the_database_is_unusable(sqlite_url: str, server_factory) -> None:
    server = server_factory(sqlite_url)
    with server.client() as c:
        assert c.get("/readyz").status_code == 200
        db = Database(sqlite_url)
        with db.writer.begin() as conn:
            conn.execute(text("DROP TABLE api_keys"))
        db.dispose()
        r = c.get("/readyz")
        assert r.status_code == 503 and "db upgrade" in r.json()["detail"] and r.json()["errors"] == []
        assert c.get("/healthz").status_code == 200


def test_reads_and_key_checks_answer_503_when_the_database_fails(db_url: str, server_factory) -> None:
    """A failing database gives 503 + Retry-After saying what failed, for reads and key checks too."""
    server = server_factory(db_url, bootstrap_admin_key=BOOTSTRAP_KEY)
    unchecked = server.key("ingest")  # the server has not seen it: checking it needs the database
    with server.client(BOOTSTRAP_KEY) as c:  # the bootstrap key needs no database row
        assert c.get("/v1/events").status_code == 200
    db = Database(db_url)
    with db.writer.begin() as conn:
        for table in ("event_stages", "events", "api_keys"):
            conn.execute(text(f"DROP TABLE {table}"))
    db.dispose()
    with server.client(BOOTSTRAP_KEY) as admin, server.client(unchecked) as ingest:
        listed = admin.get("/v1/events")
        summary = admin.get("/v1/stats")
        posted = ingest.post("/v1/events", json=make_event())
    for r, what in ((listed, "list the events"), (summary, "statistics"), (posted, "check the API key")):
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "1" and r.json()["errors"] == []
        detail = r.json()["detail"]
        assert "retry later" in detail and what in detail and "db upgrade" in detail, detail


def test_openapi_documents_the_v1_api(server: LiveServer) -> None:
    with server.client() as c:
        spec = c.get("/openapi.json").json()
    paths = spec["paths"]
    assert {"/v1/events", "/v1/events:batch", "/v1/stats", "/healthz", "/readyz", "/metrics"} <= set(paths)
    assert set(paths["/v1/events"]) == {"get", "post"}
    schemes = spec["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}
    event = spec["components"]["schemas"]["EventIn"]
    assert event["additionalProperties"] is False
    assert set(event["required"]) == {
        "event_id",
        "device_id",
        "session_id",
        "context",
        "captured_at",
        "stages",
    }
