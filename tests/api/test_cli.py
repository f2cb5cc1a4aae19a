"""`visioncascade db upgrade`, `keys create|list|revoke`, `serve` option errors, through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from visioncascade.api.storage import Database, find_api_key, hash_key
from visioncascade.cli import app

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``visioncascade ...`` as a user would (main() prints errors and exits 2)."""
    full_env = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "visioncascade.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


def test_db_upgrade_creates_the_schema_and_can_run_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'api.db'}"
    runner = CliRunner()
    first = runner.invoke(app, ["db", "upgrade", "--db", url])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["db", "upgrade", "--db", url])
    assert again.exit_code == 0, again.output
    db = Database(url)
    with db.reader.connect() as conn:
        tables = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))}
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        mode = conn.execute(text("PRAGMA journal_mode")).scalar_one()
    db.dispose()
    assert {"api_keys", "events", "event_stages", "alembic_version"} <= tables
    assert version == "0001" and mode == "wal"


def test_keys_create_prints_the_key_once_and_stores_its_hash(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    runner = CliRunner()
    runner.invoke(app, ["db", "upgrade", "--db", url])
    quiet = runner.invoke(
        app, ["keys", "create", "--scope", "ingest", "--name", "phone-app", "--quiet", "--db", url]
    )
    assert quiet.exit_code == 0, quiet.output
    key = quiet.stdout.strip()
    assert key.startswith("vc_") and "\n" not in key
    loud = runner.invoke(app, ["keys", "create", "--scope", "read", "--db", url])
    assert "shown only once" in loud.stdout
    db = Database(url)
    record = find_api_key(db, hash_key(key))
    db.dispose()
    assert record is not None and (record.scope, record.name) == ("ingest", "phone-app")
    listing = runner.invoke(app, ["keys", "list", "--db", url])
    assert "phone-app" in listing.stdout and key not in listing.stdout
    revoke = runner.invoke(app, ["keys", "revoke", key.split("_")[1], "--db", url])
    assert revoke.exit_code == 0 and "revoked 1" in revoke.stdout


def test_user_errors_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    bad_scope = _cli("keys", "create", "--scope", "root", "--db", url)
    assert bad_scope.returncode == 2
    assert "unknown scope 'root'" in bad_scope.stderr
    unsafe = _cli("serve", "--db", url, env={"VISIONCASCADE_AUTH_ENABLED": "false"})
    assert unsafe.returncode == 2
    assert "auth_enabled=false" in unsafe.stderr
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: a, output: '{oops}'}\n")
    broken = _cli("serve", "--db", url, "--rules", str(rules))
    assert broken.returncode == 2
    assert "unknown placeholder {oops}" in broken.stderr
    unmigrated = _cli("serve", "--db", f"sqlite:///{tmp_path / 'fresh.db'}", "--no-migrate", "--port", "1")
    assert unmigrated.returncode == 2, unmigrated.stderr  # said before the server starts, not by each worker
    said = " ".join(unmigrated.stderr.split())
    assert "not migrated; run `visioncascade db upgrade --db ...` first" in said
    assert "Traceback" not in unmigrated.stderr
    not_migrated = _cli("keys", "create", "--scope", "ingest", "--db", f"sqlite:///{tmp_path / 'empty.db'}")
    assert not_migrated.returncode == 2 and "db upgrade" in not_migrated.stderr
    for command in (("keys", "list"), ("keys", "revoke", "abcd1234")):  # were tracebacks
        answer = _cli(*command, "--db", f"sqlite:///{tmp_path / 'empty.db'}")
        assert answer.returncode == 2, answer.stderr
        assert "db upgrade" in answer.stderr and "Traceback" not in answer.stderr, answer.stderr


def test_serve_refuses_broken_or_clashing_cascade_files(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    missing = _cli("serve", "--db", url, "--cascade", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml does not exist" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ndomain: {model: d.onnx, threshold: 2}\nspecialists: {a: {model: s.onnx}}\n")
    answer = _cli("serve", "--db", url, "--cascade", str(broken))
    assert answer.returncode == 2 and "domain.threshold" in answer.stderr
    half_tls = _cli("serve", "--db", url, "--ssl-certfile", str(broken))
    assert half_tls.returncode == 2 and "--ssl-keyfile" in half_tls.stderr
