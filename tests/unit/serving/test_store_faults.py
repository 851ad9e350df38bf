"""Faults under serving: corrupt rows cost one user, corrupt snapshots are refused, bugs are 500s, readiness names
the real reason, deleted and restored store files are noticed and followed without a restart."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from lambdarec.model.snapshot import ITEM_FACTORS, ITEM_IDS, USER_IDS
from lambdarec.settings import Settings
from lambdarec.store import UserRow, codec, open_store
from serving_layer.app import create_app
from serving_layer.recommend import DEGRADED_HEADER
from tests.unit.serving.conftest import admin, publish, serving, wait_for

ROOT = Path(__file__).resolve().parents[3]


def _db(settings: Settings) -> Path:
    return Path(settings.store.url.removeprefix("sqlite:///")) / "snapshots.sqlite"


def _sql(settings: Settings, sql: str, params: tuple = ()) -> list[tuple]:
    with sqlite3.connect(_db(settings)) as conn:
        return conn.execute(sql, params).fetchall()


def _user_row(settings: Settings, version: str, user: str) -> bytes:
    return _sql(settings, "SELECT data FROM users WHERE version = ? AND user_id = ?", (version, user))[0][0]


def _set_user_row(settings: Settings, version: str, user: str, data: bytes) -> None:
    _sql(settings, "UPDATE users SET data = ? WHERE version = ? AND user_id = ?", (data, version, user))


def _corrupt_array(settings: Settings, version: str, name: str) -> None:
    _sql(settings, "UPDATE array_chunks SET data = ? WHERE version = ? AND name = ? AND chunk = 0",
         (b"\x93NUMPY garbage", version, name))  # fmt: skip


def _metric(text: str, name: str) -> float:
    line = next((ln for ln in text.splitlines() if ln.startswith(name + " ")), None)
    return float(line.split()[1]) if line else 0.0


def test_a_corrupt_user_row_serves_that_user_a_fallback_marked_corrupt_row(fresh_store) -> None:
    settings, version = fresh_store
    with open_store(settings) as store:
        n_items = len(store.read_array(version, ITEM_IDS))
        users = [str(u) for u in store.read_array(version, USER_IDS)[:5]]
    truncated, edited, out_of_range, healthy, batch_mate = users
    _set_user_row(settings, version, truncated, _user_row(settings, version, truncated)[:-1])
    edited_row = bytearray(_user_row(settings, version, edited))
    edited_row[-9:-5] = np.float32(2.1e38).tobytes()  # a history weight: the length unchanged
    _set_user_row(settings, version, edited, bytes(edited_row))
    bad_index = UserRow(out_of_range, np.array([n_items + 5], np.int32), np.array([1.0], np.float32),
                        np.array([], np.int32), np.array([], np.float32))  # fmt: skip
    _set_user_row(settings, version, out_of_range, codec.encode_user(bad_index))  # a valid checksum
    with serving(settings) as client:
        for user in (truncated, edited, out_of_range):
            got = client.get(f"/v1/users/{user}/recommendations", params={"k": 5})
            assert got.status_code == 200, (user, got.text)
            assert got.headers[DEGRADED_HEADER] == "corrupt-row"
            body = got.json()
            assert body["degraded"] is True and body["degraded_reason"] == "corrupt-row"
            assert body["items"] and {i["source"] for i in body["items"]} <= {"session", "trending", "popular"}
        fine = client.get(f"/v1/users/{healthy}/recommendations", params={"k": 5})
        assert fine.status_code == 200 and DEGRADED_HEADER not in fine.headers, "one bad row is no outage"
        assert fine.json()["degraded"] is False and fine.json()["items"][0]["source"] == "batch"
        both = client.post("/v1/recommendations", json={"users": [truncated, batch_mate], "k": 3}).json()
        assert [r["degraded_reason"] for r in both["results"]] == ["corrupt-row", None]
        assert both["results"][1]["items"][0]["source"] == "batch" and both["degraded"] is False
        assert client.get("/readyz").status_code == 200
        text = client.get("/metrics").text
        assert _metric(text, 'lambdarec_serving_degraded_total{reason="corrupt-row"}') >= 4
        assert _metric(text, 'lambdarec_serving_corrupt_rows_total{kind="user"}') >= 4


def test_a_bug_under_the_store_gate_is_a_500_with_a_traceback_not_a_degraded_list(fresh_store, capfd) -> None:
    settings, _ = fresh_store
    store = open_store(settings)

    class Buggy:
        bug = False

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            attr = getattr(store, name)
            if name != "read_user":
                return attr

            def read_user(*args):  # type: ignore[no-untyped-def]
                if Buggy.bug:
                    raise TypeError("a programming error, not a store outage")
                return attr(*args)

            return read_user

    app = create_app(settings, store=Buggy())  # type: ignore[arg-type]
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            wait_for(lambda: app.state.service.models.model is not None, "a snapshot to load")
            Buggy.bug = True
            got = client.get("/v1/users/u1/recommendations")
            assert got.status_code == 500 and "internal error" in got.json()["message"]
            assert 'lambdarec_serving_errors_total{exception="TypeError"} 1.0' in client.get("/metrics").text
            logged = capfd.readouterr()
            assert "serving.unhandled" in logged.out + logged.err and "Traceback" in logged.out + logged.err
            Buggy.bug = False
            after = client.get("/v1/users/u1/recommendations")  # the breaker did not open on a bug
            assert after.status_code == 200 and after.json()["degraded"] is False
            assert client.get("/readyz").status_code == 200
    finally:
        store.close()


def test_activate_refuses_a_corrupt_snapshot_with_409_and_the_pointer_stays(fresh_store, log_file: Path) -> None:
    settings, first = fresh_store
    second = publish(settings, log_file)
    _corrupt_array(settings, first, ITEM_FACTORS)
    with serving(settings) as client:
        got = client.post(f"/v1/snapshots/{first}/activate", headers=admin())
        assert got.status_code == 409, got.text
        assert first in got.json()["message"] and "item_factors" in got.json()["message"]
        assert client.get("/v1/users/u1/recommendations").json()["snapshot"] == second
    with open_store(settings) as store:
        assert store.current_version(max_age_s=0) == second
    with serving(settings) as client:  # a freshly started server still loads the current snapshot
        assert client.get("/readyz").status_code == 200


def test_cli_activate_of_a_corrupt_snapshot_exits_3_and_the_pointer_stays(fresh_store, log_file: Path) -> None:
    settings, first = fresh_store
    second = publish(settings, log_file)
    with open_store(settings) as store:
        user = str(store.read_array(first, USER_IDS)[0])
    _set_user_row(settings, first, user, _user_row(settings, first, user)[:-3])  # a row, not an array
    proc = subprocess.run(
        [sys.executable, "-m", "lambdarec", "snapshots", "activate", first, "--store", settings.store.url],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert first in proc.stderr and user in proc.stderr and "pointer" in proc.stderr
    with open_store(settings) as store:
        assert store.current_version(max_age_s=0) == second


def test_readyz_names_the_checksum_failure_of_the_current_snapshot(fresh_store) -> None:
    settings, version = fresh_store
    _corrupt_array(settings, version, ITEM_FACTORS)
    with serving(settings, ready=False) as client:
        wait_for(lambda: client.get("/readyz").json()["reasons"] != [], "a readiness reason")
        wait_for(lambda: "sha256" in " ".join(client.get("/readyz").json()["reasons"]), "the checksum reason")
        reasons = " ".join(client.get("/readyz").json()["reasons"])
        assert version in reasons and "item_factors" in reasons and "no snapshot loaded yet" not in reasons


def test_deleted_store_files_fail_readiness_and_a_restore_plus_activate_is_followed(
    fresh_store, log_file: Path, tmp_path: Path
) -> None:
    settings, first = fresh_store
    second = publish(settings, log_file)
    directory = _db(settings).parent
    backup = tmp_path / "backup"
    with open_store(settings) as store:
        store.activate(first)
    shutil.copytree(directory, backup)  # a backup whose pointer names `first`
    with open_store(settings) as store:
        store.activate(second)
    with serving(settings) as client:
        assert client.get("/v1/users/u1/recommendations").json()["snapshot"] == second
        shutil.rmtree(directory)
        wait_for(lambda: client.get("/readyz").status_code == 503, "readiness to notice the deleted files")
        assert "snapshots.sqlite" in " ".join(client.get("/readyz").json()["reasons"])
        shutil.copytree(backup, directory)  # the restore: new files, new inodes
        proc = subprocess.run(
            [sys.executable, "-m", "lambdarec", "snapshots", "activate", first, "--store", settings.store.url],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        wait_for(lambda: client.get("/readyz").status_code == 200, "readiness after the restore")
        wait_for(
            lambda: client.get("/v1/users/u1/recommendations").json()["snapshot"] == first,
            "the server to follow the restored store's activate without a restart",
        )


def test_serving_loads_no_per_user_array(published) -> None:
    """Memory of a serving worker is bounded by the catalogue and the configured caches, not by the number of
    users: the snapshot's user ids are never read (nothing on the request path needs them)."""
    settings, _ = published
    read: list[str] = []
    with open_store(settings) as store:

        class Recording:
            def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
                attr = getattr(store, name)
                if name != "read_array":
                    return attr
                return lambda v, array: read.append(array) or attr(v, array)

        with serving(settings, store=Recording()) as client:  # type: ignore[arg-type]
            assert client.get("/v1/users/u1/recommendations").status_code == 200
            model = client.app.state.service.models.model  # type: ignore[attr-defined]
    assert read and USER_IDS not in read, read
    assert not hasattr(model, "user_ids") and not hasattr(model, "known_users")


def test_a_corrupt_fresh_state_row_costs_that_user_only(fresh_store) -> None:
    settings, version = fresh_store
    with open_store(settings) as store:
        users = [str(u) for u in store.read_array(version, USER_IDS)[:2]]
    fresh_db = _db(settings).parent / "fresh.sqlite"
    with sqlite3.connect(fresh_db) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO fresh_users (ns, user_id, data, expires_at) VALUES (?, ?, ?, ?)",
            (settings.store.namespace, users[0], b"\xc1 not msgpack", 4e9),
        )
    with serving(settings) as client:
        got = client.get(f"/v1/users/{users[0]}/recommendations", params={"k": 5})
        assert got.status_code == 200, got.text
        assert got.json()["degraded_reason"] == "corrupt-row" and got.headers[DEGRADED_HEADER] == "corrupt-row"
        assert got.json()["items"][0]["source"] == "batch", "the batch row is still good and still used"
        both = client.post("/v1/recommendations", json={"users": users, "k": 3}).json()
        assert [r["degraded_reason"] for r in both["results"]] == ["corrupt-row", None]
