"""Every write of fresh state on Cassandra is also listed as a change (lambdarec.store.changes): what serving polls
to know which kept states to read again (serving.fresh_state_keep)."""

from __future__ import annotations

import time

import pytest
from cassandra.util import uuid_from_time

from lambdarec.erasure import tombstone
from lambdarec.model.rows import FreshUser
from lambdarec.settings import StoreSettings
from lambdarec.store import cassandra_fresh, open_store
from lambdarec.store import cassandra_schema as schema
from lambdarec.store.cassandra import CassandraStore
from lambdarec.store.changes import CHANGES_TTL_S, USERS_PER_ROW

pytestmark = [pytest.mark.integration, pytest.mark.cassandra]


def test_every_write_of_fresh_state_and_every_erasure_is_listed(
    ns_settings: StoreSettings, ns_store: CassandraStore
) -> None:
    before = time.time() - 0.5
    users = [FreshUser(user_id=f"u{n}", recent=[("i1", 5.0)], updated_at=5.0) for n in range(USERS_PER_ROW + 10)]
    ns_store.write_fresh_users(users)
    ns_store.write_erasures([tombstone("u3", 100.0, {0: 5})], [])
    changes = ns_store.read_fresh_changes_future(before).result(timeout=30)
    assert [len(c.user_ids) for c in changes] == [USERS_PER_ROW, 10, 1]  # the states' rows first, then the erasure
    assert [u for c in changes[:2] for u in c.user_ids] == [u.user_id for u in users]
    assert changes[2].user_ids == ["u3"]
    assert all(before <= c.at_s <= time.time() + 1 for c in changes) and len({c.at for c in changes}) == 3
    assert [c.at_s for c in changes] == sorted(c.at_s for c in changes)
    assert ns_store.read_fresh_changes_future(changes[-1].at_s + 0.001).result(timeout=30) == []  # stamped after only
    with open_store(ns_settings.model_copy(update={"namespace": ns_settings.namespace + "x"})) as other:
        assert other.read_fresh_changes_future(before).result(timeout=30) == []  # each namespace lists its own


def test_a_change_that_does_not_decode_is_a_change_of_unknown_users(ns_store: CassandraStore) -> None:
    now = time.time()
    ns_store.execute(
        schema.INSERT_CHANGE, (ns_store._ns, int(now // 60), uuid_from_time(now), b"\xc1\x00", CHANGES_TTL_S)
    )
    ns_store.write_fresh_users([FreshUser(user_id="u1", updated_at=5.0)])
    got = ns_store.read_fresh_changes_future(now - 1).result(timeout=30)
    assert [c.user_ids for c in got] == [None, ["u1"]]  # whom it named is unknown; the rows after it still read


def test_a_change_acknowledged_late_is_listed_again_under_a_new_stamp(
    ns_store: CassandraStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader re-reads a window before its last poll; a write that lands later than ``LANDED_WITHIN_S`` after
    its stamp could fall behind that window, so the writer lists the change again until one lands in time."""
    start = time.time()
    clock = iter([start, start + 2.0, start + 2.1, start + 2.2])  # the first write "took" 2 s, the second 0.1 s

    class SlowFirstWrite:
        @staticmethod
        def time() -> float:
            return next(clock)

    monkeypatch.setattr(cassandra_fresh, "time", SlowFirstWrite)
    cassandra_fresh.write_changes(ns_store._cql, ns_store._ns, ["u1", "u2"])
    got = ns_store.read_fresh_changes_future(start - 1).result(timeout=30)
    assert [c.user_ids for c in got] == [["u1", "u2"], ["u1", "u2"]]
    assert [round(c.at_s - start, 1) for c in got] == [0.0, 2.1]  # stamped again when sent again
