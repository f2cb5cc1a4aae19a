"""Rules over HTTP on both databases: the "combination of calls" counts the session's stored events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .conftest import make_event, make_stage

RULES = """
rules:
  - name: third-malignant
    when:
      label: malignant
      seen: {label: malignant, at_least: 3, within_seconds: 600}
    output: {advice: "see a doctor", times: "{count}"}
  - name: malignant
    when: {label: malignant, min_probability: 0.7}
    output: {advice: "watch it", p: "{probability}", where: "{context}"}
"""


def test_session_history_drives_the_rule(db_url: str, server_factory: Any, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    server = server_factory(db_url, rules_path=rules)
    t0 = datetime.now(UTC) - timedelta(minutes=30)

    def ev(minutes: float, session: str = "s1", probs: tuple[float, float] = (0.2, 0.8)) -> dict[str, Any]:
        return make_event(
            session_id=session,
            captured_at=(t0 + timedelta(minutes=minutes)).isoformat(),
            stages=[make_stage(probs=probs)],
        )

    e1, e2, e3, e_other, e_late = ev(0), ev(1), ev(2), ev(2.5, session="s2"), ev(20)
    with server.client(server.key("ingest")) as c:
        a1 = c.post("/v1/events", json=e1).json()
        a2 = c.post("/v1/events", json=e2).json()
        assert (a1["rule"], a1["output"]) == (
            "malignant",
            {"advice": "watch it", "p": 0.8, "where": "clinic"},
        )
        assert a2["rule"] == "malignant"
        # An offline batch that repeats e1 and e2 (already stored): they must not count twice for e3.
        results = c.post("/v1/events:batch", json={"events": [e1, e2, e3, e_other, e_late]}).json()["results"]
    assert [r["status"] for r in results] == ["duplicate", "duplicate", "created", "created", "created"]
    assert results[0]["output"] == a1["output"] and results[1]["output"] == a2["output"]
    assert results[2]["rule"] == "third-malignant"
    assert results[2]["output"] == {"advice": "see a doctor", "times": 3}
    assert results[3]["rule"] == "malignant"  # another session: its own history only
    assert results[4]["rule"] == "malignant"  # 18 minutes later: outside the 600 s window


def test_events_of_one_batch_count_for_the_later_ones_and_the_window_is_inclusive(
    db_url: str, server_factory: Any, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    server = server_factory(db_url, rules_path=rules)
    t0 = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    minus_3h = timezone(timedelta(hours=-3))

    def ev(seconds: float, tz: timezone = UTC) -> dict[str, Any]:
        at = (t0 + timedelta(seconds=seconds)).astimezone(tz)
        return make_event(session_id="s3", captured_at=at.isoformat(), stages=[make_stage(probs=(0.2, 0.8))])

    with server.client(server.key("ingest")) as c:
        for stored in (ev(0), ev(300)):
            assert c.post("/v1/events", json=stored).json()["rule"] == "malignant"
        # x, 600 s after the first (written at -03:00): both stored ones count, the first at the edge.
        # y, 901 s: neither stored one is within 600 s, x of the same batch is.
        results = c.post("/v1/events:batch", json={"events": [ev(600, minus_3h), ev(901)]}).json()["results"]
    assert [r["rule"] for r in results] == ["third-malignant", "malignant"]
    assert results[0]["output"] == {"advice": "see a doctor", "times": 3}


def test_events_refused_as_conflicts_do_not_count_for_the_others(
    db_url: str, server_factory: Any, tmp_path: Path
) -> None:
    """A batch that reuses stored event_ids with other content (another session, another label): those
    events are conflicts, nothing of them is stored, so they must not count in the session's history."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - name: third-malignant\n    when:\n      label: malignant\n"
        "      seen: {label: malignant, at_least: 3, within_seconds: 600}\n"
        "    output: {advice: see a doctor}\n"
    )
    server = server_factory(db_url, rules_path=rules)
    t0 = datetime.now(UTC) - timedelta(minutes=30)

    def ev(minutes: float, session: str, probs: tuple[float, float], **kw: Any) -> dict[str, Any]:
        at = (t0 + timedelta(minutes=minutes)).isoformat()
        return make_event(session_id=session, captured_at=at, stages=[make_stage(probs=probs)], **kw)

    x1, x2 = ev(0, "other", (0.9, 0.1)), ev(1, "other", (0.9, 0.1))
    reused = [
        ev(0, "s", (0.2, 0.8), event_id=x1["event_id"]),
        ev(1, "s", (0.2, 0.8), event_id=x2["event_id"]),
    ]
    y = ev(2, "s", (0.2, 0.8))
    with server.client(server.key("ingest")) as c:
        assert [c.post("/v1/events", json=e).status_code for e in (x1, x2)] == [200, 200]
        results = c.post("/v1/events:batch", json={"events": [*reused, y]}).json()["results"]
    assert [r["status"] for r in results] == ["conflict", "conflict", "created"]
    assert results[2]["rule"] is None
    assert results[2]["output"] == {"label": "malignant", "probability": 0.8, "model": "lesion"}
    stored = server.query(f"SELECT rule FROM events WHERE event_id = '{y['event_id']}'")
    assert [r[0] for r in stored] == [None]
