"""The one contract every ``OnlineStore`` backend passes.

A backend's test class subclasses :class:`StoreContract` and provides ``store_url()`` plus three white-box
hooks (corrupt an array chunk, read a fresh row's remaining TTL). Each test runs in its own namespace, so
tests never see each other's snapshots, pointer, fresh state or locks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from msgspec import structs

from lambdarec.erasure import tombstone
from lambdarec.model.rows import ShownItems
from lambdarec.settings import StoreSettings
from lambdarec.store import (
    CorruptRowError,
    FreshUser,
    ItemRow,
    OnlineStore,
    SnapshotNotFoundError,
    SnapshotStateError,
    StoreError,
    TrendingItem,
    UserRow,
    ValidationFailedError,
    open_store,
)
from lambdarec.store.codec import CHUNK_BYTES
from tests.integration.store.catalog_contract import CatalogContract
from tests.integration.store.writer import PART_SIZE, marked_rows

ROOT = Path(__file__).resolve().parents[3]


def counts(users: int, items: int = 0) -> dict[str, Any]:
    return {"counts": {"user_rows": users, "item_rows": items}}


def item_rows(n: int) -> list[ItemRow]:
    return [
        ItemRow(i, np.array([(i + 1) % n, (i + 2) % n], np.int32), np.array([0.9, 0.5], np.float32)) for i in range(n)
    ]


class StoreContract(CatalogContract):
    """Behaviour every backend must show. Subclasses implement the hooks below."""

    # ---- hooks ------------------------------------------------------------------------------------------------

    def store_url(self) -> str:
        raise NotImplementedError

    def corrupt_array_chunk(self, store: OnlineStore, version: str, name: str) -> None:
        """Overwrite chunk 0 of an array behind the store's back."""
        raise NotImplementedError

    def fresh_ttl_left(self, store: OnlineStore, table: str, key: str) -> float | None:
        """Seconds until a fresh row (``fresh_users`` by user id, ``trending`` by item id) expires."""
        raise NotImplementedError

    def tamper_row(self, store: OnlineStore, version: str, key: str | int, edit: Callable[[bytes], bytes]) -> None:
        """Replace a stored user row (``key`` a user id) or item row (``key`` an item index) by ``edit(bytes)``."""
        raise NotImplementedError

    # ---- plumbing -----------------------------------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _namespace(self):
        self.namespace = f"t{uuid.uuid4().hex[:12]}"
        self._opened: list[OnlineStore] = []
        yield
        for store in self._opened:
            store.close()

    def make_store(self, **overrides: Any) -> OnlineStore:
        settings = StoreSettings(**{"url": self.store_url(), "namespace": self.namespace, **overrides})
        store = open_store(settings)
        self._opened.append(store)
        return store

    def publish_users(self, store: OnlineStore, n: int, marker: float = 1.0) -> str:
        version = store.begin_snapshot({"marker": marker})
        store.write_users(version, marked_rows(0, n, marker), part="all")
        store.publish(version, counts(n))
        return version

    def run_writer(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "tests.integration.store.writer", self.store_url(), self.namespace, *args]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LAMBDAREC_LOG_LEVEL": "WARNING"}
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, **kwargs)

    # ---- snapshot lifecycle -------------------------------------------------------------------------------------

    def test_begin_creates_a_writing_version_that_is_not_current(self) -> None:
        store = self.make_store()
        v1 = store.begin_snapshot({"as_of": "2026-11-29T00:00:00Z", "factors": 8})
        v2 = store.begin_snapshot({})
        info = store.get_snapshot(v1)
        assert (info.state, info.current, info.meta) == (
            "writing",
            False,
            {"as_of": "2026-11-29T00:00:00Z", "factors": 8},
        )
        assert info.published_at is None and info.created_at.tzinfo is not None
        assert v1 < v2, "versions sort by creation time"
        assert store.current_version(max_age_s=0) is None

    def test_meta_that_is_not_json_is_refused_naming_it(self) -> None:
        with pytest.raises(ValueError, match="meta must be JSON-able"):
            self.make_store().begin_snapshot({"when": object()})

    def test_publish_flips_current_and_stores_the_manifest(self) -> None:
        store = self.make_store()
        version = store.begin_snapshot({"m": 1})
        assert store.write_users(version, marked_rows(0, 250, 1.0), part="a") == 250
        assert store.write_items(version, item_rows(30), part="i") == 30
        store.write_array(version, "item_ids", np.array([f"i{i}" for i in range(30)]))
        manifest = {**counts(250, 30), "arrays": ["item_ids"], "model": "als"}
        store.publish(version, manifest)
        info = store.get_snapshot(version)
        assert store.current_version() == version and info.current and info.state == "published"
        assert info.manifest == manifest and info.published_at is not None

    def test_list_is_newest_first_with_exactly_one_current(self) -> None:
        store = self.make_store()
        old = self.publish_users(store, 3)
        new = self.publish_users(store, 3)
        pending = store.begin_snapshot({})
        infos = store.list_snapshots()
        assert [i.version for i in infos] == [pending, new, old]
        assert [i.state for i in infos] == ["writing", "published", "published"]
        assert [i.current for i in infos] == [False, True, False]
        assert infos[1].to_json()["current"] is True

    def test_publish_refuses_missing_rows_and_keeps_the_old_current(self) -> None:
        store = self.make_store()
        old = self.publish_users(store, 5)
        version = store.begin_snapshot({})
        store.write_users(version, marked_rows(0, 99, 2.0), part="only")
        with pytest.raises(ValidationFailedError) as err:
            store.publish(version, counts(100))
        assert err.value.problems == ["user rows: 99 stored, the manifest expects 100"]
        assert store.current_version(max_age_s=0) == old
        assert store.get_snapshot(version).state == "writing"
        assert store.validate(version, 99, 0) == []

    def test_publish_refuses_a_corrupt_array(self) -> None:
        store = self.make_store()
        version = store.begin_snapshot({})
        store.write_array(version, "factors", np.ones((10, 4), np.float32))
        self.corrupt_array_chunk(store, version, "factors")
        problems = store.validate(version, 0, 0)
        assert len(problems) == 1 and "factors" in problems[0]
        with pytest.raises(ValidationFailedError, match="factors"):
            store.publish(version, counts(0))
        with pytest.raises(CorruptRowError):
            store.read_array(version, "factors")

    def test_publish_refuses_an_array_the_manifest_names_but_nobody_wrote(self) -> None:
        store = self.make_store()
        version = store.begin_snapshot({})
        with pytest.raises(ValidationFailedError, match="'item_factors' is listed in the manifest"):
            store.publish(version, {**counts(0), "arrays": ["item_factors"]})

    def test_publish_needs_counts_in_the_manifest(self) -> None:
        store = self.make_store()
        version = store.begin_snapshot({})
        with pytest.raises(ValueError, match=r"counts\.item_rows must be an integer"):
            store.publish(version, {"counts": {"user_rows": 0}})
        assert store.get_snapshot(version).state == "writing"

    def test_published_snapshots_are_immutable(self) -> None:
        store = self.make_store()
        version = self.publish_users(store, 2)
        for write in (
            lambda: store.write_users(version, marked_rows(0, 1, 9.0)),
            lambda: store.write_items(version, item_rows(2)),
            lambda: store.write_array(version, "x", np.zeros(2)),
            lambda: store.publish(version, counts(2)),
        ):
            with pytest.raises(SnapshotStateError, match="published"):
                write()
        assert float(store.read_user(version, "u0").scores[0]) == 1.0

    def test_writing_an_unknown_version_says_so(self) -> None:
        with pytest.raises(SnapshotNotFoundError, match="nope"):
            self.make_store().write_users("nope", marked_rows(0, 1, 1.0))

    def test_a_retried_part_is_counted_once_and_parts_add_up(self) -> None:
        store = self.make_store()
        version = store.begin_snapshot({})
        store.write_users(version, marked_rows(0, 40, 1.0), part="p0")
        store.write_users(version, marked_rows(0, 40, 1.0), part="p0")  # the retry
        store.write_users(version, marked_rows(40, 100, 1.0), part="p1")
        store.write_items(version, item_rows(10), part="i0")
        store.write_items(version, item_rows(10), part="i0")
        assert store.validate(version, 100, 10) == []
        store.publish(version, counts(100, 10))

    def test_activate_rolls_back_to_an_older_published_version(self) -> None:
        store = self.make_store()
        reader = self.make_store(current_cache_s=0)
        old = self.publish_users(store, 4, marker=1.0)
        new = self.publish_users(store, 4, marker=2.0)
        store.activate(old)
        assert reader.current_version() == old
        assert float(reader.read_user(reader.current_version(), "u3").scores[0]) == 1.0
        assert [i.version for i in store.list_snapshots() if i.current] == [old]
        store.activate(new)
        assert reader.current_version() == new

    def test_activate_refuses_unpublished_unknown_and_retired_versions(self) -> None:
        store = self.make_store()
        first = self.publish_users(store, 1)
        pending = store.begin_snapshot({})
        with pytest.raises(SnapshotStateError, match="never published"):
            store.activate(pending)
        with pytest.raises(SnapshotNotFoundError, match="no-such-version"):
            store.activate("no-such-version")
        second, third = self.publish_users(store, 1), self.publish_users(store, 1)
        assert store.prune(1) == [second, first]
        with pytest.raises(SnapshotStateError, match="retired"):
            store.activate(first)
        assert store.current_version(max_age_s=0) == third

    def test_activate_validates_first_and_a_corrupt_version_leaves_the_pointer_where_it_was(self) -> None:
        store = self.make_store()
        old = store.begin_snapshot({})
        store.write_users(old, marked_rows(0, 3, 1.0), part="all")
        store.write_array(old, "factors", np.ones((4, 2), np.float32))
        store.publish(old, counts(3))
        new = self.publish_users(store, 3, marker=2.0)
        self.corrupt_array_chunk(store, old, "factors")
        with pytest.raises(ValidationFailedError, match="factors") as err:
            store.activate(old)
        assert err.value.problems and isinstance(err.value, StoreError)
        assert store.current_version(max_age_s=0) == new
        assert self.make_store().current_version(max_age_s=0) == new, "another process must not see it either"

    def test_a_corrupt_row_fails_its_checksum_and_costs_only_itself(self) -> None:
        store = self.make_store()
        version = store.begin_snapshot({})
        store.write_users(version, marked_rows(0, 5, 1.0), part="all")
        store.write_items(version, item_rows(4), part="all")
        store.publish(version, counts(5, 4))
        self.tamper_row(store, version, "u1", lambda data: data[:-1])  # truncated by one byte
        score = np.float32(1.0).tobytes()  # every score of marked rows: edit one to an absurd value
        self.tamper_row(store, version, "u2", lambda data: data.replace(score, np.float32(2.1e38).tobytes(), 1))
        self.tamper_row(store, version, 2, lambda data: data[:-1] + bytes([data[-1] ^ 1]))
        with pytest.raises(CorruptRowError, match="'u1'") as one:
            store.read_user(version, "u1")
        assert isinstance(one.value, StoreError)
        with pytest.raises(CorruptRowError, match="checksum") as many:
            store.read_users(version, ["u0", "u1", "u2", "u3"])
        assert sorted(many.value.keys) == ["u1", "u2"] and sorted(many.value.rows) == ["u0", "u3"]
        assert float(many.value.rows["u3"].scores[0]) == 1.0
        with pytest.raises(CorruptRowError) as items:
            store.read_items(version)
        assert items.value.keys == [2] and sorted(items.value.rows) == [0, 1, 3]
        assert store.read_user(version, "u4") is not None  # the rest of the snapshot reads as before

    def test_prune_keeps_the_newest_published_and_the_current(self) -> None:
        store = self.make_store()
        versions = [self.publish_users(store, 2, marker=float(i)) for i in range(5)]
        store.activate(versions[0])  # rolled back to the oldest
        pending = store.begin_snapshot({})
        retired = store.prune(2)
        assert sorted(retired) == sorted(versions[1:3])
        states = {i.version: i.state for i in store.list_snapshots()}
        assert [states[v] for v in versions] == ["published", "retired", "retired", "published", "published"]
        assert states[pending] == "writing", "a fresh write is not abandoned"
        assert store.current_version(max_age_s=0) == versions[0]
        assert store.prune(2) == []
        with pytest.raises(ValueError, match="keep=0"):
            store.prune(0)

    def test_prune_retires_abandoned_writes(self) -> None:
        store = self.make_store(abandon_after_s=0.2)
        published = self.publish_users(store, 1)
        abandoned = store.begin_snapshot({})
        time.sleep(0.3)
        assert store.prune(3) == [abandoned]
        assert store.get_snapshot(abandoned).state == "retired"
        assert store.get_snapshot(published).state == "published"

    def test_current_version_is_cached_for_current_cache_s(self) -> None:
        writer = self.make_store()
        reader = self.make_store(current_cache_s=60)
        first = self.publish_users(writer, 1)
        assert reader.current_version() == first
        second = self.publish_users(writer, 1)
        assert reader.current_version() == first, "served from the cache"
        assert reader.current_version(max_age_s=0) == second
        assert reader.current_version() == second

    def test_get_snapshot_of_an_unknown_version_raises(self) -> None:
        with pytest.raises(SnapshotNotFoundError, match="20990101"):
            self.make_store().get_snapshot("20990101T000000000Z-000000")

    def test_namespaces_do_not_see_each_other(self) -> None:
        store = self.make_store()
        version = self.publish_users(store, 1)
        other = open_store(StoreSettings(url=self.store_url(), namespace=self.namespace + "x"))
        self._opened.append(other)
        assert other.list_snapshots() == [] and other.current_version(max_age_s=0) is None
        with pytest.raises(SnapshotNotFoundError):
            other.activate(version)

    # ---- snapshot data --------------------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "array",
        [
            np.arange(12, dtype=np.float32).reshape(3, 4),
            np.array([10, -1, 2**40], dtype=np.int64),
            np.array(["item-a", "é", ""]),
            np.zeros(0, dtype=np.float64),
        ],
        ids=["f32-2d", "i64", "unicode", "empty"],
    )
    def test_arrays_round_trip_exactly(self, array: np.ndarray) -> None:
        store = self.make_store()
        version = store.begin_snapshot({})
        store.write_array(version, "a", array)
        back = store.read_array(version, "a")
        assert back.dtype == array.dtype and back.shape == array.shape
        np.testing.assert_array_equal(back, array)

    def test_large_arrays_are_chunked_and_round_trip(self) -> None:
        store = self.make_store()
        version = store.begin_snapshot({})
        big = np.random.default_rng(0).random((3 * CHUNK_BYTES // 8 + 5,))  # a bit over 3 MiB: 4 chunks
        store.write_array(version, "item_factors", big)
        store.write_array(version, "item_ids", np.array(["a", "b"]))
        store.write_array(version, "item_factors", big[:10])  # rewritten smaller: no stale chunks read back
        np.testing.assert_array_equal(store.read_array(version, "item_factors"), big[:10])
        store.write_array(version, "pop", big)
        np.testing.assert_array_equal(store.read_array(version, "pop"), big)
        assert sorted(store.array_names(version)) == ["item_factors", "item_ids", "pop"]
        assert store.validate(version, 0, 0) == []

    def test_unknown_array_raises_key_error_naming_it(self) -> None:
        store = self.make_store()
        version = store.begin_snapshot({})
        store.write_array(version, "item_ids", np.array(["a"]))
        with pytest.raises(KeyError, match=r"no array 'factors'.*item_ids"):
            store.read_array(version, "factors")

    def test_object_arrays_are_refused_because_they_would_need_pickle(self) -> None:
        store = self.make_store()
        version = store.begin_snapshot({})
        with pytest.raises(TypeError, match="object array"):
            store.write_array(version, "bad", np.array([{"a": 1}], dtype=object))

    def test_user_rows_round_trip_and_unknown_users_are_absent(self) -> None:
        store = self.make_store()
        version = store.begin_snapshot({})
        rows = [
            UserRow("alice", np.array([3, 1, 2], np.int32), np.array([0.9, 0.5, 0.1], np.float32),
                    np.array([7], np.int32), np.array([4.0], np.float32)),
            UserRow("bob", np.array([], np.int32), np.array([], np.float32),
                    np.array([1, 2], np.int32), np.array([1.0, 2.0], np.float32)),
        ]  # fmt: skip
        store.write_users(version, iter(rows))  # a generator is fine
        got = store.read_users(version, ["alice", "bob", "carol", "alice"])
        assert set(got) == {"alice", "bob"}
        for row in rows:
            for field in ("candidates", "scores", "history", "history_weights"):
                np.testing.assert_array_equal(getattr(got[row.user_id], field), getattr(row, field))
        assert store.read_user(version, "carol") is None
        np.testing.assert_array_equal(store.read_user(version, "alice").candidates, [3, 1, 2])
        assert store.read_users(version, []) == {}

    def test_many_users_at_once(self) -> None:
        store = self.make_store()
        version = self.publish_users(store, 1200)
        wanted = [f"u{i}" for i in range(0, 1300, 3)]
        got = store.read_users(version, wanted)
        assert len(got) == len([w for w in wanted if int(w[1:]) < 1200])
        assert all(int(r.candidates[0]) == int(uid[1:]) % 7 for uid, r in got.items())

    def test_a_malformed_row_is_refused_naming_the_user_and_nothing_of_the_call_lands(self) -> None:
        store = self.make_store()
        version = store.begin_snapshot({})
        bad = UserRow("mallory", np.array([1, 2], np.int32), np.array([0.5], np.float32), np.zeros(0), np.zeros(0))
        with pytest.raises(ValueError, match="mallory"):
            store.write_users(version, [bad], part="p")
        assert store.validate(version, 0, 0) == []

    def test_item_rows_by_index_and_all(self) -> None:
        store = self.make_store()
        version = store.begin_snapshot({})
        store.write_items(version, item_rows(100))
        everything = store.read_items(version)
        assert sorted(everything) == list(range(100))
        some = store.read_items(version, [5, 99, 500])
        assert sorted(some) == [5, 99]
        np.testing.assert_array_equal(some[5].neighbours, [6, 7])
        np.testing.assert_allclose(some[99].scores, [0.9, 0.5])

    def test_snapshot_reads_concurrently_from_threads(self) -> None:
        store = self.make_store()
        version = self.publish_users(store, 300)
        failures: list[str] = []

        def work(seed: int) -> None:
            for i in range(seed, 300, 7):
                row = store.read_user(store.current_version(), f"u{i}")
                if row is None or int(row.candidates[0]) != i % 7:
                    failures.append(f"u{i}")

        threads = [threading.Thread(target=work, args=(s,)) for s in range(7)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == [] and store.current_version() == version

    # ---- fresh state ----------------------------------------------------------------------------------------

    def test_fresh_users_round_trip_upsert_and_carry_the_ttl(self) -> None:
        store = self.make_store(fresh_ttl_s=3600)
        state = FreshUser(user_id="u1", events=[("i1", 10.0, 2.0)], recent=[("i1", 10.0)], vector=[0.5, -1.0],
                          basis="v1", positions={"0": 5}, updated_at=10.0)  # fmt: skip
        assert store.write_fresh_users([state, FreshUser(user_id="u2")]) == 2
        assert store.read_fresh_users(["u1", "u2", "nobody"]) == {"u1": state, "u2": FreshUser(user_id="u2")}
        newer = FreshUser(user_id="u1", recent=[("i2", 11.0)], updated_at=11.0)
        store.write_fresh_users([newer])
        assert store.read_fresh_users(["u1"]) == {"u1": newer}
        left = self.fresh_ttl_left(store, "fresh_users", "u1")
        assert left is not None and 3500 < left <= 3600

    def test_impressions_rows_are_apart_from_the_fresh_row_and_carry_the_ttl(self) -> None:
        store = self.make_store(fresh_ttl_s=3600)
        fresh = FreshUser(user_id="u1", recent=[("i1", 10.0)], updated_at=10.0)
        shown = ShownItems(user_id="u1", shown={"i2": [11.0, 12.0], "i3": [12.0]}, positions={"1": 8}, updated_at=12.0)
        store.write_fresh_users([fresh])
        assert store.write_shown([shown, ShownItems(user_id="u2")]) == 2
        # neither write touches the other's row: two consumers may write them at once
        assert store.read_fresh_users(["u1", "u2"]) == {"u1": fresh}
        assert store.read_shown(["u1", "u2", "nobody"]) == {"u1": shown, "u2": ShownItems(user_id="u2")}
        store.write_fresh_users([FreshUser(user_id="u1", updated_at=13.0)])
        assert store.read_shown(["u1"]) == {"u1": shown}
        left = self.fresh_ttl_left(store, "shown_users", "u1")
        assert left is not None and 3500 < left <= 3600

    def test_an_erasure_outlasts_a_consumers_write_of_a_state_it_read_before(self) -> None:
        """``forget`` lands between a consumer's read of a user's rows and its write of them: every read after
        shows nothing from before the erasure (only what the log brought after it), until a state written
        after reading the erasure replaces it."""
        store = self.make_store(fresh_ttl_s=3600)
        read = FreshUser(
            user_id="u1",
            events=[("i1", 10.0, 1.0)],
            event_positions=[(0, 2)],
            recent=[("i1", 10.0)],
            vector=[0.5, 0.5],
            basis="v1",
            positions={"0": 3},
            hidden={"i9": 9.0},
            updated_at=10.0,
        )
        shown_read = ShownItems(user_id="u1", shown={"i2": [11.0]}, positions={"0": 3}, updated_at=11.0)
        store.write_fresh_users([read])
        store.write_shown([shown_read])
        grave = tombstone("u1", 100.0, {0: 5, 1: 7})
        shown_grave = ShownItems(user_id="u1", positions={"0": 5, "1": 7}, erasure_seen=100.0)
        assert store.write_erasures([grave], [shown_grave]) == 1
        assert store.read_fresh_users(["u1"]) == {"u1": grave}
        assert store.read_shown(["u1"]) == {"u1": shown_grave}
        # the consumers write what they computed from the rows read before the erasure: one event before it
        # (position 4 < 5) and one after it (position 6)
        stale = structs.replace(read, events=[*read.events, ("i3", 20.0, 1.0), ("i4", 30.0, 1.0)],
                                event_positions=[(0, 2), (0, 4), (0, 6)], positions={"0": 7},
                                recent=[("i1", 10.0), ("i3", 20.0), ("i4", 30.0)], updated_at=30.0)  # fmt: skip
        store.write_fresh_users([stale])
        store.write_shown([structs.replace(shown_read, shown={"i2": [11.0, 31.0]}, positions={"0": 8})])
        got = store.read_fresh_users(["u1"])["u1"]
        assert got.erased_at == 100.0 and got.erasure_seen == 100.0  # the old snapshots still hide the user
        assert (got.events, got.event_positions, got.recent) == ([("i4", 30.0, 1.0)], [(0, 6)], [("i4", 30.0)])
        assert (got.vector, got.basis, got.hidden) == (None, None, {})  # solved from erased events; feedback
        assert got.positions == {"0": 7, "1": 7}  # nothing before the erasure is applied again
        assert store.read_shown(["u1"]) == {"u1": ShownItems(user_id="u1", positions={"0": 8, "1": 7},
                                                             erasure_seen=100.0)}  # fmt: skip
        # a consumer that read the erasure writes what it saw: that state is served as it is
        after = structs.replace(got, events=[*got.events, ("i5", 40.0, 1.0)], event_positions=[(0, 6), (0, 7)],
                                vector=[0.1, 0.2], basis="v1", positions={"0": 8, "1": 7})  # fmt: skip
        store.write_fresh_users([after])
        assert store.read_fresh_users(["u1"]) == {"u1": after}
        shown_after = ShownItems(user_id="u1", shown={"i6": [41.0]}, positions={"0": 9}, erasure_seen=100.0)
        store.write_shown([shown_after])
        assert store.read_shown(["u1"]) == {"u1": shown_after}
        # a user erased with no row yet; a consumer then writes one it started afresh before the erasure
        store.write_erasures([tombstone("u2", 100.0, {0: 5})], [])
        store.write_fresh_users([FreshUser(user_id="u2", events=[("i1", 1.0, 1.0)], event_positions=[(0, 1)])])
        assert store.read_fresh_users(["u2"])["u2"].events == []

    def test_states_kept_decoded_read_as_before_and_as_one_object_until_their_row_changes(self) -> None:
        """``keep_decoded_fresh`` (serving's): every read gives what it gives without the map; an unchanged row
        reads as the very object decoded before; a write, an erasure and a write over the erasure read anew."""
        store = self.make_store(fresh_ttl_s=3600)
        store.keep_decoded_fresh(1 << 20)
        state = FreshUser(user_id="u1", events=[("i1", 10.0, 1.0)], event_positions=[(0, 2)], recent=[("i1", 10.0)],
                          vector=[0.5, 0.5], basis="v1", positions={"0": 3}, updated_at=10.0)  # fmt: skip
        store.write_fresh_users([state, FreshUser(user_id="u2")])
        first = store.read_fresh_users(["u1", "u2", "nobody"])
        assert first == {"u1": state, "u2": FreshUser(user_id="u2")}
        assert store.read_fresh_users(["u2", "u1"])["u1"] is first["u1"]
        newer = structs.replace(state, recent=[("i1", 10.0), ("i2", 11.0)], positions={"0": 4}, updated_at=11.0)
        store.write_fresh_users([newer])
        assert store.read_fresh_users(["u1"]) == {"u1": newer}
        grave = tombstone("u1", 100.0, {0: 5})
        store.write_erasures([grave], [])
        assert store.read_fresh_users(["u1"]) == {"u1": grave}
        store.write_fresh_users([newer])  # a consumer's write of what it read before the erasure: still masked
        masked = store.read_fresh_users(["u1"])["u1"]
        assert (masked.erased_at, masked.events, masked.vector) == (100.0, [], None)
        assert store.read_fresh_users(["u1"])["u1"] is masked
        decoded = store.decoded_fresh
        assert decoded is not None and (decoded.hits, decoded.misses) == (3, 5)
        store.keep_decoded_fresh(0)  # off: each read decodes again
        assert store.decoded_fresh is None
        again = store.read_fresh_users(["u1"])["u1"]
        assert again == masked and again is not masked

    def test_an_erasure_written_again_keeps_a_state_that_saw_it_and_masks_one_that_did_not(self) -> None:
        """``forget --reapply`` after the fresh state was rebuilt: only the erasure is written over an existing row."""
        store = self.make_store(fresh_ttl_s=3600)
        rebuilt = FreshUser(
            user_id="u1",
            events=[("i1", 1.0, 1.0), ("i2", 2.0, 1.0)],
            event_positions=[(0, 3), (0, 8)],
            positions={"0": 9},
        )  # replayed from before the erasure
        came_back = FreshUser(
            user_id="u2",
            events=[("i3", 3.0, 1.0)],
            event_positions=[(0, 7)],
            positions={"0": 8},
            erased_at=100.0,
            erasure_seen=100.0,
        )  # built after its erasure
        store.write_fresh_users([rebuilt, came_back])
        store.write_shown([ShownItems(user_id="u1", shown={"i4": [4.0]}, positions={"0": 9})])
        graves = [tombstone(u, 100.0, {0: 5}) for u in ("u1", "u2", "u3")]
        shown = [ShownItems(user_id=u, positions={"0": 5}, erasure_seen=100.0) for u in ("u1", "u3")]
        assert store.write_erasures(graves, shown, rows=False) == 3
        got = store.read_fresh_users(["u1", "u2", "u3"])
        assert (got["u1"].events, got["u1"].erased_at) == ([("i2", 2.0, 1.0)], 100.0)  # position 8 is after it
        assert got["u2"] == came_back and got["u3"] == graves[2]
        assert store.read_shown(["u1", "u3"]) == {
            "u1": ShownItems(user_id="u1", positions={"0": 9}, erasure_seen=100.0), "u3": shown[1]}  # fmt: skip

    def test_an_erased_user_leaves_brand_new_items_shards_at_once(self) -> None:
        """Their fold-in vector in a brand-new item's shard is left out of every read from the erasure on, also
        from a shard a consumer wrote afterwards from a read before it; another user's terms stay."""
        store = self.make_store()
        shard = TrendingItem(item_id="new", partition=0, count=2.0, basis="v1",
                             users={"u1": [1.0, 0.5, 0.5], "u2": [1.0, 0.1, 0.2]})  # fmt: skip
        store.write_trending([shard])
        store.write_erasures([tombstone("u1", 100.0, {0: 5})], [])
        without = structs.replace(shard, users={"u2": [1.0, 0.1, 0.2]})
        assert store.read_trending(None) == {shard.key: without}
        assert store.read_trending([shard.key]) == {shard.key: without}
        store.write_trending([structs.replace(shard, count=3.0)])  # computed from the shard read before
        assert store.read_trending([shard.key])[shard.key] == structs.replace(without, count=3.0)
        other = open_store(StoreSettings(url=self.store_url(), namespace=f"{self.namespace}x"))  # per namespace
        self._opened.append(other)
        other.write_trending([shard])
        assert other.read_trending([shard.key]) == {shard.key: shard}

    def test_trending_by_id_and_all_live_items(self) -> None:
        store = self.make_store()
        items = [TrendingItem(item_id=f"item{i}", count=float(i), as_of=100.0, positions={"1": i}) for i in range(60)]
        assert store.write_trending(items) == 60
        assert store.read_trending(None) == {t.item_id: t for t in items}
        assert store.read_trending(["item3", "nope"]) == {"item3": items[3]}
        left = self.fresh_ttl_left(store, "trending", "item3")
        assert left is not None and left > 0

    def test_trending_shards_are_rows_of_their_own(self) -> None:
        store = self.make_store()
        shards = [TrendingItem(item_id="hit", partition=p, count=float(p + 1), as_of=5.0) for p in range(3)]
        store.write_trending([*shards, TrendingItem(item_id="hit", count=9.0)])
        assert set(store.read_trending(None)) == {"hit", "hit@0", "hit@1", "hit@2"}
        assert store.read_trending(["hit@1"]) == {"hit@1": shards[1]}
        store.write_trending([TrendingItem(item_id="hit", partition=1, count=7.0)])
        assert store.read_trending(["hit@1", "hit@2"])["hit@1"].count == 7.0

    def test_fresh_reads_of_a_whole_poll_return_exactly_the_stored_keys(self) -> None:
        """A poll's worth of keys (more than one query's worth, every trending bucket, repeats, absent keys)
        comes back in one call with exactly the stored rows, small and large states written together (issue 17:
        reads and writes batched per poll)."""
        store = self.make_store()
        users = [FreshUser(user_id=f"user-{k}", positions={"0": k}) for k in range(0, 700, 2)]
        users[7] = FreshUser(user_id="user-14", events=[(f"item-{k}", float(k), 1.0) for k in range(400)])  # ~10 kB
        shards = [TrendingItem(item_id=f"item-{k}", partition=k % 3, count=float(k)) for k in range(0, 500, 2)]
        assert store.write_fresh_users(users) == len(users)
        store.write_trending(shards)
        asked = [f"user-{k}" for k in range(700)] + ["user-4", "user-4"]
        assert store.read_fresh_users(asked) == {u.user_id: u for u in users}
        keys = [f"item-{k}@{k % 3}" for k in range(500)] + ["item-2@2", "item-2@0"]
        assert store.read_trending(keys) == {t.key: t for t in shards}
        assert store.read_fresh_users([]) == {} and store.read_trending([]) == {}

    # ---- event ids (issue 12, finding 6) ----------------------------------------------------------------------

    def test_an_event_id_is_claimed_once_and_its_own_record_may_claim_again(self) -> None:
        store = self.make_store()
        assert store.claim_event_ids({"e1": (0, 5), "e2": (1, 7)}, ttl_s=60) == {"e1": (0, 5), "e2": (1, 7)}
        # a repeat elsewhere in the log finds the first owner; the same record redelivered finds itself
        assert store.claim_event_ids({"e1": (2, 9), "e2": (1, 7), "e3": (0, 6)}, ttl_s=60) == {
            "e1": (0, 5),
            "e2": (1, 7),
            "e3": (0, 6),
        }
        assert store.claim_event_ids({}, ttl_s=60) == {}
        other = open_store(StoreSettings(url=self.store_url(), namespace=f"{self.namespace}x"))
        self._opened.append(other)
        assert other.claim_event_ids({"e1": (2, 9)}, ttl_s=60) == {"e1": (2, 9)}  # namespaces share no claims

    def test_impressions_are_claimed_apart_from_every_other_event(self) -> None:
        """Issue 16: the impressions consumer's claims share nothing with the positive path's (a lock on SQLite,
        a partition's Paxos rounds on Cassandra); an id repeats only within its scope, and a release touches only
        its own scope's claim."""
        store = self.make_store()
        assert store.claim_event_ids({"e1": (0, 5)}, ttl_s=60) == {"e1": (0, 5)}
        assert store.claim_event_ids({"e1": (1, 3), "i2": (1, 4)}, 60, "impressions") == {"e1": (1, 3), "i2": (1, 4)}
        assert store.claim_event_ids({"e1": (1, 8)}, 60, "impressions") == {"e1": (1, 3)}  # a resent impression
        assert store.claim_event_ids({"e1": (0, 9), "i2": (0, 6)}, ttl_s=60) == {"e1": (0, 5), "i2": (0, 6)}
        store.release_event_ids({"e1": (1, 3)}, "impressions")
        assert store.claim_event_ids({"e1": (1, 8)}, 60, "impressions") == {"e1": (1, 8)}
        assert store.claim_event_ids({"e1": (0, 9)}, ttl_s=60) == {"e1": (0, 5)}, "the other scope's claim stays"

    def test_a_poll_mixing_scopes_claims_them_together_with_each_scopes_owners(self) -> None:
        """One consumer applying every event claims a poll's impressions and other events in one call (on
        Cassandra, one concurrent round): each scope's owners as if claimed apart, an id in both scopes in each."""
        store = self.make_store()
        store.claim_event_ids({"i0": (0, 1)}, 60, "impressions")
        store.claim_event_ids({"c0": (0, 2)}, ttl_s=60)
        events = {f"c{k}": (1, k) for k in range(60)} | {"both": (1, 100)}
        impressions = {f"i{k}": (1, 200 + k) for k in range(60)} | {"both": (1, 300)}
        owners = store.claim_event_ids_scoped({"events": events, "impressions": impressions}, ttl_s=60)
        assert owners["events"] == events | {"c0": (0, 2)}  # c0: a repeat of an earlier record
        assert owners["impressions"] == impressions | {"i0": (0, 1)}
        redelivered = store.claim_event_ids_scoped({"impressions": {"i5": (1, 205)}, "events": {"both": (1, 100)}}, 60)
        assert redelivered == {"impressions": {"i5": (1, 205)}, "events": {"both": (1, 100)}}
        assert store.claim_event_ids_scoped({}, ttl_s=60) == {}

    def test_a_claim_is_released_only_by_its_owner(self) -> None:
        store = self.make_store()
        store.claim_event_ids({"e1": (0, 1), "e2": (0, 2)}, ttl_s=60)
        store.release_event_ids({"e1": (3, 9)})  # not the owner: no effect
        assert store.claim_event_ids({"e1": (0, 5)}, ttl_s=60) == {"e1": (0, 1)}
        store.release_event_ids({"e1": (0, 1)})
        store.release_event_ids({})
        assert store.claim_event_ids({"e1": (0, 5), "e2": (0, 6)}, ttl_s=60) == {"e1": (0, 5), "e2": (0, 2)}

    def test_a_claim_lapses_after_its_ttl(self) -> None:
        store = self.make_store()
        started = time.monotonic()
        assert store.claim_event_ids({"e1": (0, 1)}, ttl_s=3) == {"e1": (0, 1)}
        again = store.claim_event_ids({"e1": (0, 2)}, ttl_s=3)
        if time.monotonic() - started < 2.5:  # a loaded machine may take longer than the TTL between the calls
            assert again == {"e1": (0, 1)}
        time.sleep(max(0.0, 4.2 - (time.monotonic() - started)))
        assert store.claim_event_ids({"e1": (0, 3)}, ttl_s=60) == {"e1": (0, 3)}

    def test_a_poll_of_claims_mixing_new_repeated_and_redelivered_ids_gets_every_owner_right(self) -> None:
        """A poll's worth of ids (many per bucket on a bucketed store, so a batch conflicts on some ids and must
        still claim the others): new ids are claimed, repeats find the first owner, redeliveries find
        themselves (issue 17: claims batched per poll)."""
        store = self.make_store()
        first = {f"poll-{k}": (1, k) for k in range(0, 1200, 3)}
        assert store.claim_event_ids(first, ttl_s=60) == first
        claims = {f"poll-{k}": (2, 5000 + k) for k in range(1200)}
        claims.update({f"poll-{k}": (1, k) for k in range(0, 1200, 9)})  # the same records, delivered again
        owners = store.claim_event_ids(claims, ttl_s=60)
        assert owners == {eid: first.get(eid, pos) for eid, pos in claims.items()}
        again = store.claim_event_ids({eid: (3, 1) for eid in claims}, ttl_s=60)
        assert again == owners, "every claim of the poll stuck, the new and the old"

    def test_repeats_move_to_the_states_at_once_in_a_new_namespace_and_after_live_claims_elsewhere(self) -> None:
        """``state_dedup_from`` (``events.dedup = "auto"``): 0 where no claim of the events scope is live, else
        not before the newest one may expire; noted once, for good (issue 17)."""
        fresh = self.make_store()
        assert fresh.state_dedup_from(86400) == 0.0
        fresh.claim_event_ids({"n1": (0, 1)}, ttl_s=600)  # a claim after the mark changes nothing
        assert self.make_store().state_dedup_from(86400) == 0.0
        other = f"{self.namespace}h"
        held = self.make_store(namespace=other)
        held.claim_event_ids({"h1": (0, 1)}, ttl_s=600, scope="impressions")  # not the events scope
        assert self.make_store(namespace=f"{other}i").state_dedup_from(600) == 0.0
        held.claim_event_ids({"h2": (0, 2)}, ttl_s=600)
        started = time.time()
        until = held.state_dedup_from(600)
        assert started + 590 <= until <= time.time() + 600
        assert self.make_store(namespace=other).state_dedup_from(10) == until

    def test_consumers_racing_on_the_same_ids_agree_on_one_owner_each(self) -> None:
        stores = [self.make_store() for _ in range(4)]
        ids = [f"race-{i}" for i in range(200)]
        results: list[dict] = [{} for _ in stores]

        def claim(n: int) -> None:
            results[n] = stores[n].claim_event_ids({e: (n, i) for i, e in enumerate(ids)}, ttl_s=60)

        threads = [threading.Thread(target=claim, args=(n,)) for n in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for e in ids:
            owners = {r[e] for r in results}
            assert len(owners) == 1, (e, owners)  # every consumer saw the same single owner
        assert sum(1 for n, r in enumerate(results) for i, e in enumerate(ids) if r[e] == (n, i)) == len(ids)

    # ---- coordination ---------------------------------------------------------------------------------------

    def test_locks_exclude_other_owners_and_lapse(self) -> None:
        store = self.make_store()
        assert store.try_lock("batch", "job-a", ttl_s=30)
        assert not store.try_lock("batch", "job-b", ttl_s=30)
        assert store.try_lock("batch", "job-a", ttl_s=30), "the holder may renew"
        store.unlock("batch", "job-b")  # not the owner: no effect
        assert not store.try_lock("batch", "job-b", ttl_s=30)
        store.unlock("batch", "job-a")
        assert store.try_lock("batch", "job-b", ttl_s=1)
        time.sleep(2.2)
        assert store.try_lock("batch", "job-c", ttl_s=30), "a lapsed lock can be taken"

    def test_ping_answers(self) -> None:
        self.make_store().ping()

    def test_lock_holder_names_the_owner_and_the_time_left(self) -> None:
        store = self.make_store()
        assert store.lock_holder("held") is None
        assert store.try_lock("held", "job-a", ttl_s=30)
        owner, left = store.lock_holder("held")
        assert owner == "job-a" and 20 < left <= 30
        store.unlock("held", "job-a")
        assert store.lock_holder("held") is None

    # ---- the invariants ---------------------------------------------------------------------------------------

    def test_a_reader_during_publish_sees_the_old_or_the_new_version_never_a_mix(self) -> None:
        n_users = 10 * PART_SIZE
        writer, reader = self.make_store(), self.make_store(current_cache_s=0)
        old = self.publish_users(writer, n_users, marker=1.0)
        marker = {old: 1.0}
        sample = [f"u{i}" for i in range(0, n_users, 37)] + [f"u{n_users - 2}"]  # first part to last
        seen: dict[str, int] = {}
        mixes: list[str] = []
        stop = threading.Event()

        def read_loop() -> None:
            while not stop.is_set():
                version = reader.current_version()
                rows = reader.read_users(version, sample)
                values = {float(r.scores[0]) for r in rows.values()}
                if len(rows) != len(sample) or values != {marker[version]}:
                    mixes.append(f"{version}: {len(rows)}/{len(sample)} rows, scores {sorted(values)}")
                seen[version] = seen.get(version, 0) + 1

        thread = threading.Thread(target=read_loop)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while old not in seen and time.monotonic() < deadline:
                time.sleep(0.01)
            new = writer.begin_snapshot({"marker": 2.0})
            marker[new] = 2.0
            for part in range(10):
                start = part * PART_SIZE
                writer.write_users(new, marked_rows(start, start + PART_SIZE, 2.0), part=f"p{part}")
            reads_before_flip = seen[old]
            writer.publish(new, counts(n_users))
            while seen.get(new, 0) < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            stop.set()
            thread.join()
        assert mixes == []
        assert reads_before_flip >= 2 and seen.get(new, 0) >= 5, f"the reader must overlap the publish: {seen}"

    def test_a_writer_killed_mid_write_leaves_the_old_version_current_and_a_rerun_succeeds(self) -> None:
        store = self.make_store()
        old = self.publish_users(store, 50, marker=1.0)
        proc = self.run_writer("--users", "1000000", "--marker", "2", "--forever")
        try:
            begun = proc.stdout.readline().split()
            assert begun[:1] == ["BEGUN"], begun
            partial = begun[1]
            for _ in range(3):  # at least three committed parts, then kill it mid-stream
                assert proc.stdout.readline().startswith("PART")
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=30)
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        assert store.current_version(max_age_s=0) == old
        assert store.get_snapshot(partial).state == "writing"
        with pytest.raises(SnapshotStateError, match="never published"):
            store.activate(partial)
        assert store.current_version(max_age_s=0) == old
        assert float(store.read_user(old, "u7").scores[0]) == 1.0

        rerun = self.run_writer("--users", str(3 * PART_SIZE + 17), "--marker", "3")
        out, _ = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, out
        published = out.split()[-1]
        assert out.splitlines()[-1] == f"PUBLISHED {published}"
        assert store.current_version(max_age_s=0) == published != partial
        assert len(store.read_users(published, [f"u{i}" for i in range(400)])) == 3 * PART_SIZE + 17
        assert float(store.read_user(published, "u316").scores[0]) == 3.0
        assert store.get_snapshot(partial).state == "writing"
