"""The Ray engine on real Cassandra with a local Ray of 2 CPUs: the same rows as the local engine from the same
factors, a killed actor that fails the job (the previous snapshot stays current) or is retried and publishes, the
whole job through ``run_batch``, and SQLite's single writer."""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batch_layer.interactions import read_interactions
from batch_layer.matrix import Interactions, build_matrix
from batch_layer.popularity import Popularity, popularity
from batch_layer.publish import write_snapshot
from batch_layer.synth import SynthSpec, synthesize
from batch_layer.train import train
from lambdarec.model.factors import Factors
from lambdarec.settings import BatchSettings, Settings
from lambdarec.store import OnlineStore, open_store
from tests.numeric import assert_same_ranking, assert_scores_close, exact_scores

if importlib.util.find_spec("ray") is None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(
            "CI=true and Ray is not installed: pip install 'ray[data]>=2.40,<3' (make setup-dev)", pytrace=False
        )
    pytest.skip("Ray is not installed (pip install 'ray[data]>=2.40,<3')", allow_module_level=True)

import ray

from batch_layer import ray_engine
from batch_layer.ray_actors import UserBlockWriter
from batch_layer.ray_cluster import RayConfigError

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AS_OF = datetime(2024, 2, 1, tzinfo=UTC)
USERS, ITEMS, EVENTS = 2000, 500, 40_000
# Both engines score on one thread in 500-user blocks; rows are still compared up to near-ties (tests/numeric.py).
BATCH = {"train": {"factors": 32, "iterations": 5}, "top_k": 50, "neighbours": 10, "threads": 1, "device": "cpu",
         "user_block": 500, "gate": {"holdout_fraction": 0.0}, "lookback_days": None}  # fmt: skip
RAY = {"actors": 2, "cpus_per_actor": 1, "block_users": 500, "max_restarts": 0}
SMALL_RAY = {"local_cpus": 2, "object_store_mb": 100}


@dataclass(frozen=True)
class Model:
    data: Interactions
    factors: Factors
    pop: Popularity
    manifest: dict[str, Any]


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ray") / "log.parquet"
    synthesize(SynthSpec(users=USERS, items=ITEMS, events=EVENTS, seed=11)).events.write_parquet(path)
    return path


@pytest.fixture(scope="module")
def model(log_file: Path) -> Model:
    """Trained once: every write below uses these factors."""
    batch = BatchSettings(**BATCH)
    frame, _ = read_interactions(log_file, batch, as_of=AS_OF)
    data = build_matrix(frame)
    factors = train(data.matrix, batch, show_progress=False)
    n_users, n_items = data.shape
    pop = popularity(item_index=np.arange(n_items), ts=np.zeros(n_items, np.int64), n_items=n_items, recent_days=7)
    counts = {"users": n_users, "items": n_items, "user_rows": n_users, "item_rows": n_items}
    manifest = {"as_of": AS_OF.isoformat(), "input_fingerprint": "test", "config_hash": "test", "counts": counts}
    return Model(data, factors, pop, manifest)


@pytest.fixture(scope="module")
def cassandra_url(cassandra_endpoint: tuple[str, int]) -> Iterator[str]:
    host, port = cassandra_endpoint
    keyspace = f"lambdarec_ray_{secrets.token_hex(4)}"
    url = f"cassandra://{host}:{port}/{keyspace}"
    store = open_store(Settings.load(overrides={"store": {"url": url}}))
    store.init_schema()
    yield url
    store._session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
    store.close()


def _settings(url: str, namespace: str, **batch: Any) -> Settings:
    return Settings.load(overrides={"store": {"url": url, "namespace": namespace}, "batch": {**BATCH, **batch}})


def _write(store: OnlineStore, model: Model, settings: Settings) -> str:
    manifest = {**model.manifest, "counts": dict(model.manifest["counts"])}
    version, _ = write_snapshot(store, model.data, model.factors, model.pop, manifest, settings.batch,
                                progress=False, store_settings=settings.store)  # fmt: skip
    return version


def _assert_same_rows(store: OnlineStore, a: str, b: str, model: Model) -> None:
    """The same candidates, except near-ties that each engine's BLAS blocking may order either way."""
    ids = [str(u) for u in model.data.user_ids]
    rows_a, rows_b = store.read_users(a, ids), store.read_users(b, ids)
    assert len(rows_a) == len(rows_b) == len(ids)
    items = model.factors.item_factors
    for index, uid in enumerate(ids):
        ra, rb = rows_a[uid], rows_b[uid]
        exact = exact_scores(model.factors.user_factors[index], items)
        assert_same_ranking(ra.candidates, rb.candidates, exact, err_msg=uid)
        assert_scores_close(ra.scores, rb.scores, err_msg=uid)
        assert ra.history.tolist() == rb.history.tolist() and np.array_equal(ra.history_weights, rb.history_weights)


def kill_an_actor_after(user: int, marker: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Have the engine use writers that exit abruptly right after writing the piece holding ``user``, once (the
    first creates ``marker``). Defined here, so Ray ships the class by value to its workers."""

    class KillingWriter(UserBlockWriter):
        def written(self, piece: Any) -> None:
            if user not in piece.users:
                return
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
            os._exit(1)

    monkeypatch.setattr(ray_engine, "UserBlockWriter", KillingWriter)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A small local Ray the engine joins (and leaves running) instead of starting its own."""
    ray.init(num_cpus=2, object_store_memory=100 << 20, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_stays_off_the_import_path_of_the_local_engine() -> None:
    code = "import sys, batch_layer.job, batch_layer.publish; print('ray' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


@pytest.mark.cassandra
def test_run_batch_on_ray_starts_a_local_ray_publishes_and_shuts_it_down(cassandra_url: str, log_file: Path) -> None:
    from batch_layer.job import run_batch

    assert not ray.is_initialized()
    settings = _settings(cassandra_url, "job", engine="ray", ray=RAY | SMALL_RAY)
    with open_store(settings) as store:
        m = run_batch(settings, interactions=str(log_file), as_of=AS_OF, progress=False, store=store).manifest
        assert m["published"] and m["counts"]["users"] == USERS
        assert m["config"]["engine"] == "ray" and m["timings_s"]["candidates"] > 0
        assert store.current_version(max_age_s=0) == m["version"]
        rows = store.read_users(m["version"], ["u1", "u2", "u3"])
        assert rows and all(len(r.candidates) == 50 for r in rows.values())
    assert not ray.is_initialized(), "the engine must shut down the Ray it started"


@pytest.mark.cassandra
def test_ray_engine_writes_the_same_rows_as_the_local_engine(cassandra_url: str, model: Model, local_ray: None) -> None:
    with open_store(_settings(cassandra_url, "same")) as store:
        local = _write(store, model, _settings(cassandra_url, "same"))
        on_ray = _write(store, model, _settings(cassandra_url, "same", engine="ray", ray=RAY))
        assert store.current_version(max_age_s=0) == on_ray != local
        _assert_same_rows(store, local, on_ray, model)
        assert ray.is_initialized(), "the engine must leave the caller's Ray running"


@pytest.mark.cassandra
def test_a_killed_actor_fails_the_job_and_the_previous_snapshot_stays_current(
    cassandra_url: str, model: Model, local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(cassandra_url, "killed", engine="ray", ray=RAY | {"block_users": 1000})
    with open_store(settings) as store:
        before = _write(store, model, _settings(cassandra_url, "killed"))
        marker = tmp_path / "killed"
        kill_an_actor_after(1200, marker, monkeypatch)  # after the block's first 500 users are written
        with pytest.raises(ray.exceptions.RayError):
            _write(store, model, settings)
        assert marker.exists(), "the test hook did not kill an actor"
        newest = store.list_snapshots()[0]
        assert newest.version != before and newest.state == "writing" and not newest.current
        assert store.current_version(max_age_s=0) == before


@pytest.mark.cassandra
def test_a_killed_actor_is_restarted_and_its_block_retried(
    cassandra_url: str, model: Model, local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(cassandra_url, "retried", engine="ray",
                         ray=RAY | {"block_users": 1000, "max_restarts": 2})  # fmt: skip
    with open_store(settings) as store:
        local = _write(store, model, _settings(cassandra_url, "retried"))
        marker = tmp_path / "killed"
        kill_an_actor_after(1200, marker, monkeypatch)
        retried = _write(store, model, settings)  # publish validates the counts: the rewritten part counts once
        assert marker.exists(), "the test hook did not kill an actor"
        assert store.current_version(max_age_s=0) == retried
        _assert_same_rows(store, local, retried, model)


def test_sqlite_takes_one_actor_and_refuses_two(
    tmp_path: Path, model: Model, local_ray: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative store directory: the actors' working directory is not this one
    url = "sqlite:///store"
    with open_store(_settings(url, "sqlite")) as store:
        with pytest.raises(RayConfigError, match=r"ray\.actors = 1"):
            _write(store, model, _settings(url, "sqlite", engine="ray", ray=RAY))
        assert store.list_snapshots() == [], "a refused setting must leave no version behind"
        local = _write(store, model, _settings(url, "sqlite"))
        on_ray = _write(store, model, _settings(url, "sqlite", engine="ray", ray=RAY | {"actors": 0}))
        _assert_same_rows(store, local, on_ray, model)
