"""The ``xdist_group`` marks group: each keeps a module's expensive fixture (a twin, a corpus, a
long generation) on one worker, built once.

xdist groups by appending ``@<group>`` to node ids. pytest 9.2 made node ids structured, and
pytest-xdist 3.8 then ignores every mark without a word (pytest-dev/pytest-xdist#1386): the suite
only slows by the rebuilt fixtures. pyproject.toml pins pytest below 9.2; this test fails the day
an upgrade lets the marks go unheard again.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.xdist_group("xdist-groups-check")


def test_a_grouped_test_carries_its_group_in_its_node_id(request: pytest.FixtureRequest):
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("runs in an xdist worker under --dist loadgroup (the default addopts)")
    assert request.node.nodeid.endswith("@xdist-groups-check"), (
        f"{request.node.nodeid}: --dist loadgroup ignored the xdist_group mark; this pytest and "
        "pytest-xdist do not group tests (pytest-dev/pytest-xdist#1386)"
    )
