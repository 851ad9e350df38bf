"""Fixtures of the chaos suite: its own Cassandra and Kafka, a deployment of lambdarec processes on them, and the
knobs ``make chaos`` turns (``LAMBDAREC_TEST_CHAOS_FULL=1``: every scenario; ``LAMBDAREC_TEST_CHAOS_TRIALS``; a seed).

The fast subset (scenarios not marked ``chaos_full``) runs in the normal test run; the rest are deselected there,
not skipped, and run by ``make chaos``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.deployment import Deployment
from tests.chaos.services import LocalServices
from tests.conftest import service_unavailable

FULL = os.environ.get("LAMBDAREC_TEST_CHAOS_FULL", "") == "1"
TRIALS = int(os.environ.get("LAMBDAREC_TEST_CHAOS_TRIALS", "1"))
SEED = int(os.environ.get("LAMBDAREC_TEST_CHAOS_SEED", "20"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if FULL:
        return
    dropped = [i for i in items if i.get_closest_marker("chaos_full")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if not i.get_closest_marker("chaos_full")]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """A failed scenario's report carries its timeline and the tail of each process's log, so a failure in a
    CI run can be told apart from the outside (a slow broker restart, a process that exited, an assertion)."""
    report = yield
    deployed = getattr(item, "funcargs", {}).get("deployment")
    if report.failed and isinstance(deployed, Deployment):
        if deployed.timeline:
            report.sections.append(("chaos timeline", "\n".join(deployed.timeline)))
        for name in deployed.procs:
            report.sections.append((f"{name} log (tail)", deployed.output(name)[-6000:]))
    return report


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    """Cassandra and Kafka of this suite's own (own directory, own free ports), stopped at the end.

    ``LAMBDAREC_TEST_CHAOS_SERVICES_DIR`` names a directory to keep them in (and reuse, with their ports) instead.
    """
    kept = os.environ.get("LAMBDAREC_TEST_CHAOS_SERVICES_DIR")
    svc = LocalServices(Path(kept) if kept else tmp_path_factory.mktemp("chaos-services"))
    try:
        svc.up()
    except (RuntimeError, OSError) as exc:
        svc.down()
        service_unavailable(f"the chaos suite could not start its own Cassandra and Kafka: {exc}")
    try:
        yield svc
    finally:
        if not kept:
            svc.down()


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """Seeded per test (``LAMBDAREC_TEST_CHAOS_SEED``), so a failing run can be replayed."""
    return random.Random(f"{SEED}:{request.node.name}")


@pytest.fixture
def deployment(services: LocalServices, tmp_path: Path) -> Iterator[Deployment]:
    """A keyspace and topic of this test's own, a first snapshot, and helpers to run serve/speed/send."""
    deployed = Deployment(services, tmp_path)
    try:
        yield deployed
    finally:
        deployed.stop_all()
