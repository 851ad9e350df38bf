"""A small published snapshot in an embedded (SQLite) store, and TestClients of the app on it.

``published`` is shared by the read-only tests (module scope); tests that flip, activate or break the store
build their own with ``fresh_store``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from batch_layer.job import run_batch
from batch_layer.synth import SynthSpec, synthesize
from lambdarec.settings import Settings
from serving_layer.app import create_app
from serving_layer.auth import hash_key

AS_OF = datetime(2024, 2, 1, tzinfo=UTC)  # synthetic logs span January 2024
INGEST_KEY, ADMIN_KEY = "ingest-key-for-tests", "admin-key-for-tests"


def make_settings(root: Path, **serving: Any) -> Settings:
    return Settings.load(
        overrides={
            "store": {"url": f"sqlite:///{root}/store", "current_cache_s": 0},
            "log": {"url": f"sqlite:///{root}/events"},
            "batch": {"top_k": 50, "train": {"iterations": 5, "factors": 16}, "neighbours": 20},
            "serving": {
                "ingest_key_hashes": [hash_key(INGEST_KEY)],
                "admin_key_hashes": [hash_key(ADMIN_KEY)],
                "snapshot_poll_s": 0.1,
                "trending_refresh_s": 0.1,
                **serving,
            },
        }
    )


def publish(settings: Settings, log_file: Path, as_of: datetime = AS_OF) -> str:
    """Run the batch job on ``log_file``; the version it published."""
    return run_batch(settings, interactions=str(log_file), as_of=as_of, force=True, progress=False).manifest["version"]


@contextmanager
def serving(settings: Settings, *, ready: bool = True, **kwargs: Any) -> Iterator[TestClient]:
    """A TestClient of ``create_app(settings)`` with its lifespan running; waits for a loaded snapshot."""
    app = create_app(settings, **kwargs)
    with TestClient(app) as client:
        if ready:
            wait_for(lambda: app.state.service.models.model is not None, "a snapshot to load")
        yield client


def wait_for(condition: Any, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("serving-log") / "log.parquet"
    synthesize(SynthSpec(users=300, items=200, events=12_000, seed=5)).events.write_parquet(path)
    return path


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, log_file: Path) -> tuple[Settings, str]:
    """Settings of a store holding one published snapshot, and its version."""
    settings = make_settings(tmp_path_factory.mktemp("serving"))
    return settings, publish(settings, log_file)


@pytest.fixture(scope="module")
def client(published: tuple[Settings, str]) -> Iterator[TestClient]:
    with serving(published[0]) as c:
        yield c


@pytest.fixture
def fresh_store(tmp_path: Path, log_file: Path) -> tuple[Settings, str]:
    """A store of this test's own with one published snapshot."""
    settings = make_settings(tmp_path)
    return settings, publish(settings, log_file)


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def ingest() -> dict[str, str]:
    return {"X-API-Key": INGEST_KEY}
