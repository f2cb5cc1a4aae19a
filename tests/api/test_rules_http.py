"""Rules over HTTP on both databases: the "combination of calls" counts the session's stored events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
