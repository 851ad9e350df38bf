"""A failed publish names its own cause, not the lock release that failed after it; a locked rerun says when the
lock lapses. On the embedded store, with the failures injected into the real store's calls."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batch_layer.job import LOCK_NAME, JobLockedError, run_batch
from batch_layer.synth import SynthSpec, synthesize
from lambdarec.settings import Settings
from lambdarec.store import StoreUnavailableError, open_store


class DyingStore:
    """The real store, until the store "dies" at the first user rows: every later call fails, unlock included."""

    def __init__(self, store):  # type: ignore[no-untyped-def]
        self.store, self.dead = store, False

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        attr = getattr(self.store, name)
        if not callable(attr) or name == "close":
            return attr

        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            if name == "write_users":
                self.dead = True
                raise StoreUnavailableError("Cassandra did not answer (INSERT user_rows)")
            if self.dead:
                raise StoreUnavailableError(f"Cassandra did not answer (prepare DELETE locks) [{name}]")
            return attr(*args, **kwargs)

        return call


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Settings, Path]:
    path = tmp_path / "log.parquet"
    synthesize(SynthSpec(users=300, items=100, events=6000, seed=4)).events.write_parquet(path)
    settings = Settings.load(
        overrides={
            "store": {"url": f"sqlite:///{tmp_path}/store"},
            # these tests are about errors, not model quality: a 3-iteration model need not beat popularity
            "batch": {"train": {"iterations": 3}, "lock_ttl_s": 60, "gate": {"min_lift_vs_popular": 0}},
        }
    )
    return settings, path


AS_OF = datetime(2024, 2, 1, tzinfo=UTC)


def test_a_killed_publish_reports_the_first_failure_not_the_lock_release(setup) -> None:
    # Before: "Cassandra did not answer (prepare DELETE locks)", the real error only in the traceback.
    settings, path = setup
    with open_store(settings) as real, pytest.raises(StoreUnavailableError) as caught:
        run_batch(settings, interactions=str(path), as_of=AS_OF, progress=False, store=DyingStore(real))  # type: ignore[arg-type]
    assert "INSERT user_rows" in str(caught.value)
    assert "DELETE locks" not in str(caught.value)


def test_a_locked_rerun_states_when_the_lock_lapses(setup) -> None:
    settings, path = setup
    with open_store(settings) as store:
        assert store.try_lock(LOCK_NAME, "host:1234:killed", ttl_s=48)
        with pytest.raises(JobLockedError) as caught:
            run_batch(settings, interactions=str(path), as_of=AS_OF, progress=False, store=store)
    message = str(caught.value)
    assert "host:1234:killed" in message
    lapses = re.search(r"lapses in (\d+) s", message)
    assert lapses and 40 <= int(lapses.group(1)) <= 48, message
