"""The suite's own plumbing: under pytest-xdist, tests of one group really run on one worker.

The costly session fixtures (a demo, training runs) are built once only because their tests share an
``xdist_group`` (see ``suite_groups.py``), and the schemathesis file counts cases across its tests. A pytest
or pytest-xdist release that silently ignores the groups (pytest-dev/pytest-xdist#1386) fails here.
"""

from __future__ import annotations

import pytest

from suite_groups import COSTLY_SESSION_FIXTURES, group_costly_fixture_users


@pytest.mark.xdist_group("grouping-probe")
def test_a_grouped_test_carries_its_group_to_the_scheduler(request: pytest.FixtureRequest) -> None:
    worker = getattr(request.config, "workerinput", None)
    if worker is None:
        pytest.skip("not under pytest-xdist (pytest -n 0 / -p no:xdist): nothing is distributed")
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("pytest-xdist runs with another --dist than loadgroup")
    assert request.node.nodeid.endswith("@grouping-probe"), request.node.nodeid


def test_a_test_using_a_costly_fixture_is_put_in_its_group() -> None:
    class Item:
        def __init__(self, fixturenames: list[str]) -> None:
            self.fixturenames = fixturenames
            self.marks: list[pytest.Mark] = []

        def add_marker(self, mark: pytest.MarkDecorator) -> None:
            self.marks.append(mark.mark)

    items = [Item(["tmp_path", name]) for name in COSTLY_SESSION_FIXTURES] + [Item(["tmp_path"])]
    group_costly_fixture_users(items)
    assert [[m.args for m in item.marks] for item in items] == [
        *([(name,)] for name in COSTLY_SESSION_FIXTURES),
        [],
    ]
