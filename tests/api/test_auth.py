"""API keys with scopes (401/403), key storage, rate limits (429 + Retry-After)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from visioncascade.api.storage import Database, hash_key, revoke_api_key

from .conftest import LiveServer, make_event


def test_missing_or_invalid_key_is_401(server: LiveServer) -> None:
    with server.client() as c:
        for method, path in (
            ("POST", "/v1/events"),
            ("POST", "/v1/events:batch"),
            ("GET", "/v1/events"),
            ("GET", "/v1/stats"),
            ("GET", "/v1/rules"),
        ):
            body = {"events": [make_event()]} if path.endswith("batch") else make_event()
            r = c.request(method, path, json=body if method == "POST" else None)
            assert r.status_code == 401, (path, r.text)
            assert r.json() == {"detail": r.json()["detail"], "errors": []}  # the one documented shape
            assert "missing API key" in r.json()["detail"]
            assert r.headers["www-authenticate"] == "Bearer"
        r = c.get("/v1/events", headers={"Authorization": "Bearer vc_nope_nope"})
        assert r.status_code == 401 and "invalid or revoked" in r.json()["detail"]


def test_scopes_are_enforced_with_403(server: LiveServer) -> None:
    ingest, read, admin = server.key("ingest"), server.key("read"), server.key("admin")
    with server.client(ingest) as c:
        assert c.post("/v1/events", json=make_event()).status_code == 200
        r = c.get("/v1/events")
        assert r.status_code == 403 and "needs scope 'read'" in r.json()["detail"]
        assert r.json()["errors"] == []
        assert c.get("/v1/rules").status_code == 403
    with server.client(read, header="x-api-key") as c:
        assert c.get("/v1/events").status_code == 200
        assert c.get("/v1/stats").status_code == 200
        r = c.post("/v1/events", json=make_event())
        assert r.status_code == 403 and "needs scope 'ingest'" in r.json()["detail"]
    with server.client(admin) as c:
        assert c.post("/v1/events", json=make_event()).status_code == 200
        assert c.get("/v1/events").status_code == 200
        assert c.get("/v1/rules").status_code == 200


def test_keys_are_stored_hashed(server: LiveServer) -> None:
    key = server.key("ingest", "phone-app")
    db = Database(server.db_url)
    try:
        with db.reader.connect() as conn:
            rows = conn.execute(text("SELECT name, scope, key_hash, prefix FROM api_keys")).all()
    finally:
        db.dispose()
    assert len(rows) == 1
    name, scope, key_hash, prefix = rows[0]
    assert (name, scope) == ("phone-app", "ingest")
    assert key_hash == hash_key(key) and key not in key_hash
    assert key.startswith(f"vc_{prefix}_")


def test_revoked_key_stops_working(sqlite_url: str, server_factory: Any) -> None:
    server = server_factory(sqlite_url, key_cache_seconds=0)
    key = server.key("ingest")
    with server.client(key) as c:
        assert c.post("/v1/events", json=make_event()).status_code == 200
        db = Database(sqlite_url)
        assert revoke_api_key(db, key.split("_")[1]) == 1
        db.dispose()
        assert c.post("/v1/events", json=make_event()).status_code == 401


def test_bootstrap_admin_key(sqlite_url: str, server_factory: Any) -> None:
    boot = "b" * 40
    server = server_factory(sqlite_url, bootstrap_admin_key=boot)
    with server.client(boot) as c:
        assert c.get("/v1/rules").status_code == 200
        assert c.post("/v1/events", json=make_event()).status_code == 200


def test_rate_limit_answers_429_with_retry_after(sqlite_url: str, server_factory: Any) -> None:
    server = server_factory(sqlite_url, rate_limit_per_second=0.01, rate_limit_burst=3)
    key, other = server.key("ingest"), server.key("ingest")
    with server.client(key) as c:
        codes = [c.post("/v1/events", json=make_event()).status_code for _ in range(3)]
        limited = c.post("/v1/events", json=make_event())
    assert codes == [200, 200, 200]
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert "rate limit" in limited.json()["detail"] and limited.json()["errors"] == []
    with server.client(other) as c:  # limits are per key
        assert c.post("/v1/events", json=make_event()).status_code == 200
