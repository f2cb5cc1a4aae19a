"""Which tests share a worker under pytest-xdist (``--dist loadgroup``, set in ``pyproject.toml``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

# The session fixtures that cost a training run (or a whole demo) each. Every test that needs one runs
# on the same worker, so each is built once per run, not once per worker.
COSTLY_SESSION_FIXTURES = ("quick_demo", "cascade_runs", "scratch_run")


def group_costly_fixture_users(items: Iterable[Any]) -> None:
    """Mark each test that uses a costly session fixture with that fixture's ``xdist_group``."""
    for item in items:
        for name in COSTLY_SESSION_FIXTURES:
            if name in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(name))
                break
