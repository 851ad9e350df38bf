"""The issue's acceptance runs: MovieLens-100K beats popularity; 1M synthetic events into SQLite and Cassandra."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batch_layer.datasets import fetch_movielens_100k, import_dataset, write_log
from batch_layer.errors import RegistryUnreachableError
from batch_layer.job import run_batch
from batch_layer.synth import SynthSpec, synthesize
from lambdarec.settings import Settings
from lambdarec.store import open_store


@pytest.fixture(scope="module")
def synthetic_1m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scale") / "log.parquet"
    synthesize(SynthSpec(users=20_000, items=5_000, events=1_000_000, seed=5)).events.write_parquet(path)
    return path


@pytest.mark.slow
def test_movielens_100k_beats_popularity(tmp_path: Path) -> None:
    try:
        inter = fetch_movielens_100k()
    except RegistryUnreachableError as exc:
        pytest.skip(f"PyPI is unreachable, so MovieLens-100K cannot be fetched: {exc}")
    log = tmp_path / "ml100k.parquet"
    write_log(import_dataset("recbole", inter), log)
    settings = Settings.load(
        overrides={
            "store": {"url": f"sqlite:///{tmp_path}/store"},
            "batch": {"lookback_days": None, "gate": {"holdout_fraction": 0.1}},
        }
    )
    result = run_batch(settings, interactions=str(log), as_of=datetime(1998, 5, 1, tzinfo=UTC), progress=False)
    m = result.manifest
    assert m["published"] and m["counts"] == m["counts"] | {"users": 943, "items": 1682, "interactions": 100_000}
    assert m["metrics"]["model"]["recall@10"] > m["metrics"]["popularity"]["recall@10"], m["metrics"]


@pytest.mark.slow
def test_one_million_events_into_sqlite(tmp_path: Path, synthetic_1m: Path) -> None:
    settings = Settings.load(overrides={"store": {"url": f"sqlite:///{tmp_path}/store"}, "batch": {"top_k": 100}})
    m = run_batch(
        settings, interactions=str(synthetic_1m), as_of=datetime(2024, 2, 1, tzinfo=UTC), progress=False
    ).manifest
    assert m["published"] and m["counts"]["interactions"] == 1_000_000
    with open_store(settings) as store:
        assert store.get_snapshot(m["version"]).state == "published"
        rows = store.read_users(m["version"], ["u1", "u2", "u3"])
        assert rows and all(len(r.candidates) == 100 for r in rows.values())


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.cassandra
def test_one_million_events_into_cassandra(cassandra_endpoint: tuple[str, int], synthetic_1m: Path) -> None:
    host, port = cassandra_endpoint
    keyspace = f"lambdarec_batch_{secrets.token_hex(4)}"
    settings = Settings.load(
        overrides={"store": {"url": f"cassandra://{host}:{port}/{keyspace}"}, "batch": {"top_k": 100}}
    )
    store = open_store(settings)
    try:
        store.init_schema()
        m = run_batch(
            settings,
            interactions=str(synthetic_1m),
            as_of=datetime(2024, 2, 1, tzinfo=UTC),
            progress=False,
            store=store,
        ).manifest
        assert m["published"] and m["counts"]["users"] == 20_000
        assert store.current_version(max_age_s=0) == m["version"]
        rows = store.read_users(m["version"], ["u1", "u2", "u3"])
        assert rows and all(len(r.candidates) == 100 for r in rows.values())
    finally:
        store._session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        store.close()
