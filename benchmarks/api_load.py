"""Load benchmark of the prediction API with wrk: events/s and p50/p99, bounded in time, loopback only.

Measures, in the same run and on the same machine:

* ``baseline``     — a minimal FastAPI + SQLite insert endpoint (``api_baseline_app.py``), one event/request;
* ``sqlite-single``/``sqlite-batch`` — ``visioncascade serve`` on SQLite (WAL, synchronous=FULL);
* ``pg-single``/``pg-batch`` — the same on PostgreSQL at 127.0.0.1:5432 (database ``test``, a fresh schema),

with validation, API-key auth, the rate limiter and a rules file (including a session-history rule) on.
Each configuration: a short warm-up, then ``--runs`` runs of ``--seconds`` s with 32 connections; the
median run is reported, with the server's own CPU time per event (all its processes; for PostgreSQL
the database server's CPU is not included) — a figure that stays meaningful when other jobs share the
CPU. Every event has a unique event_id (generated in wrk's Lua script). Afterwards the
database row count is checked against the acknowledged events.

    python benchmarks/api_load.py --seconds 10 --runs 3 [--only sqlite-single,baseline] [--json out.json]

Needs ``wrk`` (Debian package ``wrk``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-bootstrap-admin-key-0123456789abcdefgh"
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"

RULES = """
version: 1
default: {advice: "none", label: "{label}", probability: "{probability}"}
rules:
  - name: repeated-malignant
    when: {model: lesion, label: malignant, seen: {label: malignant, at_least: 3, within_seconds: 600}}
    output: {advice: "see a doctor", count: "{count}"}
  - name: confident-malignant
    when: {context: [clinic], model: lesion, label: malignant, min_probability: 0.8}
    output: {advice: "confirm in clinic", probability: "{probability}"}
"""

LUA = r"""
local counter = 0
local prefix = ""
local batch = tonumber(os.getenv("VC_BATCH") or "0")
local path = os.getenv("VC_PATH")
local key = os.getenv("VC_KEY")

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
  prefix = string.format("%08x-%04x-4%03x-8%03x-", math.random(0, 0x7fffffff), math.random(0, 0xffff),
                         math.random(0, 0xfff), math.random(0, 0xfff))
end

local function now()  -- the current second, with the counter as microseconds: distinct, realistic times
  return os.date("!%Y-%m-%dT%H:%M:%S", os.time()) .. string.format(".%06dZ", counter % 1000000)
end

local function event()
  counter = counter + 1
  local p = (counter % 10) / 10.0
  local session = string.format("s-%s-%d", prefix:sub(1, 8), math.floor(counter / 20))
  return string.format(
    '{"event_id":"%s%012x","device_id":"phone-%s","session_id":"%s","context":"clinic",' ..
    '"captured_at":"%s","stages":[{"model":"gate","version":"1","labels":["skin","other"],' ..
    '"probabilities":[0.9,0.1]},{"model":"lesion","version":"2","labels":["benign","malignant"],' ..
    '"probabilities":[%.1f,%.1f]}]}',
    prefix, counter, prefix:sub(1, 4), session, now(), p, 1.0 - p)
end

function request()
  local body
  if batch > 0 then
    local parts = {}
    for i = 1, batch do parts[i] = event() end
    body = '{"events":[' .. table.concat(parts, ",") .. ']}'
  else
    body = event()
  end
  local headers = {["Content-Type"] = "application/json"}
  if key ~= nil and key ~= "" then headers["Authorization"] = "Bearer " .. key end
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format(
    'VCRESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"non2xx":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    non2xx, summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def start_api(db_url: str, rules: Path, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "VISIONCASCADE_BOOTSTRAP_ADMIN_KEY": KEY,
        "VISIONCASCADE_RATE_LIMIT_PER_SECOND": "1000000",
        "VISIONCASCADE_RATE_LIMIT_BURST": "1000000",
    }
    cmd = [
        sys.executable,
        "-m",
        "visioncascade.cli",
        "serve",
        "--db",
        db_url,
        "--rules",
        str(rules),
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait_up(base + "/healthz", proc)
    return proc, base


def start_baseline(db_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VC_BASELINE_DB": str(db_path)}
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "benchmarks.api_baseline_app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    wait_up(base + "/docs", proc)
    return proc, base


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of process group ``pgid``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of /proc/pid/stat: process group
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def run_wrk(
    url: str, path: str, lua: Path, seconds: int, batch: int, key: str | None, pgid: int
) -> dict[str, Any]:
    env = {
        **os.environ,
        "VC_BATCH": str(batch),
        "VC_PATH": path,
        "VC_KEY": key or "",
    }
    cpu0 = group_cpu_seconds(pgid)
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "--timeout", "10s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        env=env,
        timeout=seconds + 60,
    ).stdout
    server_cpu = group_cpu_seconds(pgid) - cpu0
    line = next(x for x in out.splitlines() if x.startswith("VCRESULT "))
    r = json.loads(line.removeprefix("VCRESULT "))
    per_request = max(batch, 1)
    r["events_per_s"] = (r["requests"] - r["non2xx"]) * per_request / (r["duration_us"] / 1e6)
    r["requests_per_s"] = r["requests"] / (r["duration_us"] / 1e6)
    r["p50_ms"], r["p99_ms"] = r["p50_us"] / 1000, r["p99_us"] / 1000
    r["batch"] = per_request
    events = max(1, (r["requests"] - r["non2xx"]) * per_request)
    r["server_cpu_s"] = server_cpu
    r["server_cpu_us_per_event"] = server_cpu / events * 1e6
    return r


def count_rows(db_url: str) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from sqlalchemy import text

    from visioncascade.api.storage import Database

    db = Database(db_url)
    try:
        with db.reader.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM events")).scalar_one())
    finally:
        db.dispose()


def pg_schema() -> tuple[str, str]:
    import psycopg

    schema = f"vc_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return schema, f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"


def drop_pg_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100, help="Events per batch request.")
    parser.add_argument("--workers", type=int, default=1, help="visioncascade serve --workers.")
    parser.add_argument("--only", default="baseline,sqlite-single,sqlite-batch,pg-single,pg-batch")
    parser.add_argument("--json", type=Path, help="Write all results here.")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    configs = [c.strip() for c in args.only.split(",") if c.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="vc-bench-"))
    lua = tmp / "events.lua"
    lua.write_text(LUA)
    rules = tmp / "rules.yaml"
    rules.write_text(RULES)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "configs": {},
    }
    for name in configs:
        schema = None
        batch = args.batch if name.endswith("batch") else 0
        if name == "baseline":
            proc, base = start_baseline(tmp / "baseline.db")
            path, key, db_url = "/events", None, None
        else:
            if name.startswith("pg"):
                schema, db_url = pg_schema()
            else:
                db_url = f"sqlite:///{tmp / (name + '.db')}"
            proc, base = start_api(db_url, rules, args.workers)
            path = "/v1/events:batch" if batch else "/v1/events"
            key = KEY
        try:
            run_wrk(base, path, lua, args.warmup, batch, key, proc.pid)
            runs = [run_wrk(base, path, lua, args.seconds, batch, key, proc.pid) for _ in range(args.runs)]
        finally:
            stop(proc)
        acked = sum((r["requests"] - r["non2xx"]) for r in runs) * max(batch, 1)
        stored = count_rows(db_url) if db_url else None
        if schema:
            drop_pg_schema(schema)
        med = sorted(runs, key=lambda r: r["events_per_s"])[len(runs) // 2]
        results["configs"][name] = {
            "median": med,
            "runs": runs,
            "events_per_s_all": [round(r["events_per_s"]) for r in runs],
            "stored_rows": stored,
            "acknowledged_in_measured_runs": acked,
        }
        errors = sum(r["non2xx"] + r["timeouts"] + r["read_errors"] + r["connect_errors"] for r in runs)
        print(
            f"{name:14s} events/s {statistics.median(r['events_per_s'] for r in runs):9.0f} "
            f"(runs {', '.join(str(round(r['events_per_s'])) for r in runs)})  "
            f"p50 {med['p50_ms']:6.2f} ms  p99 {med['p99_ms']:6.2f} ms  "
            f"req/s {med['requests_per_s']:7.0f}  server CPU {med['server_cpu_us_per_event']:5.0f} µs/event  "
            f"errors {errors}  rows {stored}",
            flush=True,
        )
    results["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
