"""schemathesis against the app's own OpenAPI: >= 1,000 generated cases (positive and negative), zero 5xx.

Uses schemathesis' strategies with hypothesis directly (its pytest plugin does not support pytest 9 yet),
against a live server on 127.0.0.1 with SQLite in a temporary folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from visioncascade.api.storage import upgrade_database

from .conftest import LiveServer

# One worker runs the whole file under pytest-xdist: the last test adds up the cases the others ran.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("schemathesis")]

OPERATIONS = [
    ("POST", "/v1/events", 150),
    ("POST", "/v1/events:batch", 100),
    ("GET", "/v1/events", 150),
    ("GET", "/v1/stats", 150),
    ("GET", "/v1/rules", 20),
    ("GET", "/v1/cascades", 5),
    ("GET", "/healthz", 5),
    ("GET", "/readyz", 5),
    ("GET", "/metrics", 5),
]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
CASES: dict[str, int] = {}
STATUSES: dict[str, dict[int, int]] = {}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder: Path = tmp_path_factory.mktemp("schemathesis")
    url = f"sqlite:///{folder / 'api.db'}"
    upgrade_database(url)
    server = LiveServer(url, environment="development", rate_limit_per_second=1e6, rate_limit_burst=1_000_000)
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def admin_key(live: LiveServer) -> str:
    return live.key("admin", "schemathesis")


@pytest.fixture(scope="module")
def api_schema(live: LiveServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_dict(live.app.openapi())


def test_the_operations_listed_are_all_the_api_has(api_schema: schemathesis.BaseSchema) -> None:
    documented = {(m.upper(), p) for p, item in api_schema.raw_schema["paths"].items() for m in item}
    assert documented == {(m, p) for m, p, _ in OPERATIONS}


# Negative cases need something to break: the three parameterless GETs only get positive ones.
CASES_TO_RUN = [
    pytest.param(m, p, n, mode, id=f"{m} {p} {mode.value}")
    for m, p, n in OPERATIONS
    for mode in MODES
    if mode is GenerationMode.POSITIVE or p.startswith("/v1/")
]


@pytest.mark.parametrize(("method", "path", "examples", "mode"), CASES_TO_RUN)
def test_generated_requests_never_cause_a_server_error(
    live: LiveServer,
    admin_key: str,
    api_schema: schemathesis.BaseSchema,
    method: str,
    path: str,
    examples: int,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]
    label = f"{method} {path} {mode.value}"

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        CASES[label] = CASES.get(label, 0) + 1
        headers = {**(case.headers or {}), "Authorization": f"Bearer {admin_key}"}  # generated keys are 401s
        response = case.call(base_url=live.base_url, headers=headers)
        tally = STATUSES.setdefault(f"{method} {path}", {})
        tally[response.status_code] = tally.get(response.status_code, 0) + 1
        assert response.status_code < 500, f"{label} answered {response.status_code}: {response.text[:500]}"
        case.validate_response(response, checks=[not_a_server_error], headers=headers)

    run()


def test_at_least_1000_cases_ran_and_the_database_is_consistent(live: LiveServer) -> None:
    total = sum(CASES.values())
    assert total >= 1000, CASES
    ((orphans,),) = live.query(
        "SELECT count(*) FROM event_stages s LEFT JOIN events e ON s.event_pk = e.id WHERE e.event_id IS NULL"
    )
    assert orphans == 0
    print(f"schemathesis cases: {total} ({CASES}); statuses {STATUSES}")
    # The generated bodies reach the deep checks: some events are stored, others refused field by field.
    assert STATUSES["POST /v1/events"].get(200, 0) > 0
    assert STATUSES["POST /v1/events"].get(422, 0) > 0
