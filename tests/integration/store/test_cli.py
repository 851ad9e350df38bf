"""``lambdarec snapshots ...`` and ``lambdarec store ...`` on SQLite and on a real Cassandra: in-process through
typer's CliRunner, and as the installed console script in a subprocess."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lambdarec.cli import app
from lambdarec.model.snapshot import ITEM_FACTORS, ITEM_IDS, POPULARITY_ALL, POPULARITY_RECENT, USER_IDS, YTY
from lambdarec.settings import StoreSettings
from lambdarec.store import OnlineStore, open_store
from tests.cassandra import throwaway_keyspace
from tests.integration.store.writer import marked_rows

LAMBDAREC = Path(sys.executable).parent / "lambdarec"
runner = CliRunner()
on_cassandra = [pytest.mark.integration, pytest.mark.cassandra]


@pytest.fixture(params=["sqlite", pytest.param("cassandra", marks=on_cassandra)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store"
    return request.getfixturevalue("cassandra_store_url")


@pytest.fixture
def namespace() -> str:
    return f"cli{secrets.token_hex(6)}"


@pytest.fixture
def store(url: str, namespace: str):  # type: ignore[no-untyped-def]
    with open_store(StoreSettings(url=url, namespace=namespace)) as opened:
        yield opened


def publish(store: OnlineStore, users: int = 3, model: bool = True) -> str:
    """A published snapshot of ``users`` marked rows; with ``model``, the arrays a server loads (16 items)."""
    version = store.begin_snapshot({"source": "test"})
    store.write_users(version, marked_rows(0, users, 1.0), part="p")
    if model:
        n, f = 16, 4
        factors = np.random.default_rng(0).standard_normal((n, f)).astype(np.float32)
        arrays = {ITEM_IDS: np.array([f"i{i}" for i in range(n)]), USER_IDS: np.array([f"u{i}" for i in range(users)]),
                  ITEM_FACTORS: factors, YTY: factors.T.astype(np.float64) @ factors,
                  POPULARITY_ALL: np.ones(n, np.float32), POPULARITY_RECENT: np.ones(n, np.float32)}  # fmt: skip
        for name, array in arrays.items():
            store.write_array(version, name, array)
    store.publish(version, {"counts": {"user_rows": users, "item_rows": 0}})
    return version


def cli(url: str, namespace: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--store", url], env={"LAMBDAREC_STORE__NAMESPACE": namespace})
    return result.exit_code, result.stdout, result.stderr


def script(url: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAMBDAREC_STORE__NAMESPACE": namespace}
    return subprocess.run([str(LAMBDAREC), *args, "--store", url], capture_output=True, text=True, env=env, timeout=60)


def test_list_json_is_newest_first_with_exactly_one_current(url: str, namespace: str, store: OnlineStore) -> None:
    assert cli(url, namespace, "snapshots", "list", "--json")[:2] == (0, "[]\n")
    old, new = publish(store), publish(store)
    pending = store.begin_snapshot({})
    code, out, _ = cli(url, namespace, "snapshots", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [s["version"] for s in listed] == [pending, new, old]
    assert [s["state"] for s in listed] == ["writing", "published", "published"]
    assert [s["current"] for s in listed] == [False, True, False]
    assert all(s["created_at"].endswith("+00:00") for s in listed)
    assert listed[1]["manifest"]["counts"] == {"user_rows": 3, "item_rows": 0}


def test_list_for_a_person_marks_the_current_version(url: str, namespace: str, store: OnlineStore) -> None:
    assert "no snapshots yet" in cli(url, namespace, "snapshots", "list")[1]
    version = publish(store)
    code, out, _ = cli(url, namespace, "snapshots", "list")
    assert code == 0
    assert any(line.startswith(f"* {version}") and "published" in line for line in out.splitlines())


def test_show_prints_one_version_and_refuses_an_unknown_one(url: str, namespace: str, store: OnlineStore) -> None:
    version = publish(store)
    code, out, _ = cli(url, namespace, "snapshots", "show", version, "--json")
    assert code == 0
    shown = json.loads(out)
    assert (shown["version"], shown["state"], shown["current"], shown["meta"]) == (
        version, "published", True, {"source": "test"})  # fmt: skip
    code, _, err = cli(url, namespace, "snapshots", "show", "20200101T000000000Z-abcdef")
    assert code == 2 and "no snapshot has version '20200101T000000000Z-abcdef'" in err


def test_activate_rolls_back_and_refuses_what_cannot_be_current(url: str, namespace: str, store: OnlineStore) -> None:
    old, new = publish(store), publish(store)
    pending = store.begin_snapshot({})
    code, out, _ = cli(url, namespace, "snapshots", "activate", old, "--json")
    assert code == 0 and json.loads(out) == {"version": old, "previous": new}
    assert store.current_version(max_age_s=0) == old
    code, _, err = cli(url, namespace, "snapshots", "activate", pending)
    assert code == 2 and "never published" in err and pending in err
    code, _, err = cli(url, namespace, "snapshots", "activate", "nope")
    assert code == 2 and "'nope'" in err
    assert store.current_version(max_age_s=0) == old


def test_activate_refuses_a_snapshot_a_server_could_not_load_with_exit_3(
    url: str, namespace: str, store: OnlineStore
) -> None:
    current, bare = publish(store), publish(store, model=False)  # `bare` holds rows but no model arrays
    store.activate(current)
    code, _, err = cli(url, namespace, "snapshots", "activate", bare)
    assert code == 3 and bare in err and "item_ids" in err and current in err
    assert store.current_version(max_age_s=0) == current


def test_prune_keeps_the_newest_and_reports_what_it_retired(url: str, namespace: str, store: OnlineStore) -> None:
    versions = [publish(store) for _ in range(4)]
    code, out, _ = cli(url, namespace, "snapshots", "prune", "--keep", "2", "--json")
    assert code == 0 and json.loads(out) == {"keep": 2, "retired": versions[1::-1]}
    states = {s.version: s.state for s in store.list_snapshots()}
    assert [states[v] for v in versions] == ["retired", "retired", "published", "published"]
    code, out, _ = cli(url, namespace, "snapshots", "prune")
    assert code == 0 and "nothing to retire (keeping the newest 3 published)" in out
    assert cli(url, namespace, "snapshots", "prune", "--keep", "0")[0] == 2


def test_the_console_script_lists_and_fails_with_exit_2(url: str, namespace: str, store: OnlineStore) -> None:
    version = publish(store)
    listed = script(url, namespace, "snapshots", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(s["version"], s["current"]) for s in json.loads(listed.stdout)] == [(version, True)]
    refused = script(url, namespace, "snapshots", "activate", "20200101T000000000Z-abcdef")
    assert refused.returncode == 2 and "no snapshot has version" in refused.stderr
    assert refused.stdout == ""
    pinged = script(url, namespace, "store", "ping")
    assert pinged.returncode == 0 and "store answers" in pinged.stdout


def test_config_file_names_the_store(url: str, namespace: str, store: OnlineStore, tmp_path: Path) -> None:
    version = publish(store)
    config = tmp_path / "lambdarec.toml"
    config.write_text(f'[store]\nurl = "{url}"\nnamespace = "{namespace}"\n')
    result = runner.invoke(app, ["snapshots", "list", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert [s["version"] for s in json.loads(result.stdout)] == [version]


def test_store_init_creates_the_sqlite_store(tmp_path: Path) -> None:
    code, out, _ = cli(f"sqlite:///{tmp_path}/new", "default", "store", "init")
    assert code == 0 and "store ready" in out
    assert (tmp_path / "new" / "snapshots.sqlite").is_file() and (tmp_path / "new" / "fresh.sqlite").is_file()


def test_a_bad_store_url_is_exit_2_naming_it() -> None:
    code, _, err = cli("cassandra://h1:9042/not-a-keyspace!", "default", "snapshots", "list")
    assert code == 2 and "not-a-keyspace!" in err
    code, _, err = cli("redis://h/0", "default", "snapshots", "list")
    assert code == 2 and "redis" in err


@pytest.mark.integration
@pytest.mark.cassandra
def test_store_init_creates_a_cassandra_keyspace(cassandra_endpoint: tuple[str, int]) -> None:
    host, port = cassandra_endpoint
    keyspace = f"lambdarec_test_{secrets.token_hex(4)}"
    url = f"cassandra://{host}:{port}/{keyspace}"
    try:
        created = subprocess.run([str(LAMBDAREC), "store", "init", "--store", url, "--json"],
                                 capture_output=True, text=True, timeout=180)  # fmt: skip
        assert created.returncode == 0, created.stderr
        assert json.loads(created.stdout) == {"url": url, "ready": True, "datacenters": [_local_dc(host, port)]}
        with open_store(StoreSettings(url=url)) as store:
            assert store.list_snapshots() == []
            publish(store)
    finally:
        with open_store(StoreSettings(url=url)) as store:
            store.drop_schema()


@pytest.mark.integration
@pytest.mark.cassandra
def test_an_unreachable_cassandra_is_exit_1_naming_the_host() -> None:
    result = script("cassandra://127.0.0.1:1/recs", "default", "snapshots", "list")
    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr


def _local_dc(host: str, port: int) -> str:
    from cassandra.cluster import Cluster

    cluster = Cluster([host], port=port)
    try:
        return cluster.connect().execute("SELECT data_center FROM system.local").one()[0]
    finally:
        cluster.shutdown()


def test_store_ping_without_a_config_creates_nothing_and_exits_1(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDAREC_STORE") and k != "LAMBDAREC_CONFIG"}
    pinged = subprocess.run([str(LAMBDAREC), "store", "ping"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=60)  # fmt: skip
    assert pinged.returncode == 1, pinged.stdout + pinged.stderr
    assert "no SQLite store" in pinged.stderr and "store init" in pinged.stderr
    assert list(tmp_path.iterdir()) == [], "store ping must not create var/store"


def test_store_ping_names_what_serving_would_miss(url: str, namespace: str, store: OnlineStore) -> None:
    code, out, _ = cli(url, namespace, "store", "ping")
    assert code == 0 and "no snapshot published yet" in out
    version = publish(store)
    code, out, _ = cli(url, namespace, "store", "ping", "--json")
    assert code == 0 and json.loads(out)["current"] == version


@pytest.mark.integration
@pytest.mark.cassandra
def test_store_init_without_a_datacenter_warns_naming_the_one_to_add(cassandra_endpoint: tuple[str, int]) -> None:
    """Issue 18 item 1: `store init` silently worked without `?dc=`, and no doc named the datacenter."""
    host, port = cassandra_endpoint
    dc = _local_dc(host, port)
    keyspace = f"lambdarec_test_{secrets.token_hex(4)}"
    url = f"cassandra://{host}:{port}/{keyspace}"
    try:
        created = subprocess.run([str(LAMBDAREC), "store", "init", "--store", url],
                                 capture_output=True, text=True, timeout=180)  # fmt: skip
        assert created.returncode == 0, created.stderr
        assert "names no datacenter" in created.stderr and f"?dc={dc}" in created.stderr
        with_dc = subprocess.run([str(LAMBDAREC), "store", "init", "--store", f"{url}?dc={dc}"],
                                 capture_output=True, text=True, timeout=180)  # fmt: skip
        assert with_dc.returncode == 0, with_dc.stderr
        assert "datacenter" not in with_dc.stderr
    finally:
        with open_store(StoreSettings(url=url)) as store:
            store.drop_schema()


@pytest.mark.integration
@pytest.mark.cassandra
def test_a_datacenter_the_cluster_lacks_is_exit_2_naming_the_right_one(cassandra_endpoint: tuple[str, int]) -> None:
    host, port = cassandra_endpoint
    dc = _local_dc(host, port)
    result = script(f"cassandra://{host}:{port}/recs_{secrets.token_hex(4)}?dc=dc-nowhere", "default", "store", "init")
    assert result.returncode == 2, result.stderr
    assert "dc-nowhere" in result.stderr and f"?dc={dc}" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.integration
@pytest.mark.cassandra
def test_store_ping_fails_on_a_cassandra_without_the_keyspace(cassandra_endpoint: tuple[str, int]) -> None:
    # It used to read system.local only, so a node that had lost the application's keyspace passed.
    host, port = cassandra_endpoint
    missing = f"lambdarec_absent_{secrets.token_hex(4)}"
    code, _, err = cli(f"cassandra://{host}:{port}/{missing}", "default", "store", "ping")
    assert code == 1 and missing in err and "store init" in err


def test_store_drop_needs_yes_then_deletes_every_namespace(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store"
    for namespace in ("a", "b"):
        with open_store(StoreSettings(url=url, namespace=namespace)) as store:
            publish(store)
    code, _, err = cli(url, "a", "store", "drop")
    assert code == 2 and "--yes" in err
    with open_store(StoreSettings(url=url, namespace="b")) as store:
        assert store.current_version(max_age_s=0) is not None, "without --yes nothing is deleted"
    code, out, _ = cli(url, "a", "store", "drop", "--yes", "--json")
    assert code == 0 and json.loads(out) == {"url": url, "dropped": True}
    code, _, err = cli(url, "b", "store", "ping")
    assert code == 1 and "no SQLite store" in err


@pytest.mark.integration
@pytest.mark.cassandra
def test_store_drop_drops_the_cassandra_keyspace(cassandra_endpoint: tuple[str, int]) -> None:
    with throwaway_keyspace(cassandra_endpoint) as url:
        with open_store(StoreSettings(url=url)) as store:
            publish(store)
        dropped = script(url, "default", "store", "drop", "--yes")
        assert dropped.returncode == 0, dropped.stderr
        code, _, err = cli(url, "default", "store", "ping")
        assert code == 1 and "lambdarec store init" in err
