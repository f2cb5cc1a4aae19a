"""Rules reload on file change and on SIGHUP, with an atomic swap; a broken file keeps the old rules."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .conftest import ServerProcess, make_event

RULES_A = """
rules:
  - name: rule-a
    output: {version: a, label: "{label}"}
"""
RULES_B = RULES_A.replace("rule-a", "rule-b").replace("version: a", "version: b")


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_file_change_reloads_and_broken_file_keeps_old_rules(
    sqlite_url: str, server_factory: Any, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_A)
    server = server_factory(sqlite_url, rules_path=rules, rules_poll_seconds=0.05)
    key = server.key("admin")
    with server.client(key) as c:
        assert c.post("/v1/events", json=make_event()).json()["rule"] == "rule-a"
        _write(rules, RULES_B)
        _wait_for(lambda: c.get("/v1/rules").json()["rules"] == ["rule-b"], "the reload")
        answer = c.post("/v1/events", json=make_event()).json()
        assert (answer["rule"], answer["output"]) == ("rule-b", {"version": "b", "label": "malignant"})
        _write(rules, "rules:\n  - {name: broken, output: '{nope}'}\n")
        _wait_for(lambda: c.get("/v1/rules").json()["failures"] == 1, "the failed reload")
        status = c.get("/v1/rules").json()
        assert status["rules"] == ["rule-b"]
        assert "unknown placeholder {nope}" in status["last_error"]
        assert c.post("/v1/events", json=make_event()).json()["rule"] == "rule-b"
        metrics = c.get("/metrics").text
        assert "visioncascade_rules_reload_failures 1" in metrics


def test_a_file_the_yaml_reader_chokes_on_keeps_the_watcher_polling(
    sqlite_url: str, server_factory: Any, tmp_path: Path
) -> None:
    """Nested too deeply (RecursionError) or a date that does not exist (ValueError): each is a failed
    reload with a reason, the old rules stay, and a good file written afterwards is still picked up."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_A)
    server = server_factory(sqlite_url, rules_path=rules, rules_poll_seconds=0.05)
    with server.client(server.key("admin")) as c:
        # Deeper than the recursion limit, whatever it is here (coremltools, imported by other tests in
        # this process, raises it from 1,000 to 5,000): each level of nesting takes a frame or more.
        depth = sys.getrecursionlimit() + 100
        _write(rules, "rules: []\ndefault: " + "[" * depth + "]" * depth + "\n")
        _wait_for(lambda: c.get("/v1/rules").json()["failures"] == 1, "the failed reload")
        assert "nests lists or mappings too deeply" in c.get("/v1/rules").json()["last_error"]
        _write(rules, "rules: []\ndefault: {day: 2024-13-45}\n")
        _wait_for(lambda: c.get("/v1/rules").json()["failures"] == 2, "the second failed reload")
        status = c.get("/v1/rules").json()
        assert status["rules"] == ["rule-a"] and "month must be in 1..12" in status["last_error"]
        assert c.post("/v1/events", json=make_event()).json()["rule"] == "rule-a"
        _write(rules, RULES_B)
        _wait_for(lambda: c.get("/v1/rules").json()["rules"] == ["rule-b"], "the reload")
        assert c.post("/v1/events", json=make_event()).json()["rule"] == "rule-b"


def test_sighup_reloads_the_rules(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'api.db'}"
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_A)
    server = ServerProcess(
        db,
        "--rules",
        str(rules),
        "--environment",
        "development",
        env={"VISIONCASCADE_RULES_POLL_SECONDS": "3600"},  # only SIGHUP can trigger the reload
    )
    try:
        with server.client() as c:
            assert c.post("/v1/events", json=make_event()).json()["rule"] == "rule-a"
            _write(rules, RULES_B)
            assert c.post("/v1/events", json=make_event()).json()["rule"] == "rule-a"
            os.kill(server.proc.pid, signal.SIGHUP)
            _wait_for(lambda: c.get("/v1/rules").json()["rules"] == ["rule-b"], "the SIGHUP reload")
            assert c.post("/v1/events", json=make_event()).json()["rule"] == "rule-b"
    finally:
        server.stop()
