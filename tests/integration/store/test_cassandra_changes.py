"""Every write of fresh state on Cassandra is also listed as a change (lambdarec.store.changes): what serving polls
to know which kept states to read again (serving.fresh_state_keep)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from cassandra.util import uuid_from_time

from lambdarec.erasure import tombstone
from lambdarec.model.rows import FreshUser
from lambdarec.settings import StoreSettings
from lambdarec.store import CorruptRowError, open_store
from lambdarec.store import cassandra_schema as schema
from lambdarec.store.cassandra import CassandraStore
from lambdarec.store.changes import CHANGES_TTL_S, USERS_PER_ROW

pytestmark = [pytest.mark.integration, pytest.mark.cassandra]


@pytest.fixture
def settings(cassandra_store_url: str) -> StoreSettings:
    return StoreSettings(url=cassandra_store_url, namespace=f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(settings: StoreSettings) -> Iterator[CassandraStore]:
    with open_store(settings) as opened:
        assert isinstance(opened, CassandraStore)
        yield opened


def test_every_write_of_fresh_state_and_every_erasure_is_listed(settings: StoreSettings, store: CassandraStore) -> None:
    before = time.time() - 0.5
    users = [FreshUser(user_id=f"u{n}", recent=[("i1", 5.0)], updated_at=5.0) for n in range(USERS_PER_ROW + 10)]
    store.write_fresh_users(users)
    store.write_erasures([tombstone("u3", 100.0, {0: 5})], [])
    changes = store.read_fresh_changes_future(before).result(timeout=30)
    assert [len(c.user_ids) for c in changes] == [USERS_PER_ROW, 10, 1]  # the states' rows first, then the erasure
    assert [u for c in changes[:2] for u in c.user_ids] == [u.user_id for u in users]
    assert changes[2].user_ids == ["u3"]
    assert all(before <= c.at_s <= time.time() + 1 for c in changes) and len({c.at for c in changes}) == 3
    assert [c.at_s for c in changes] == sorted(c.at_s for c in changes)
    assert store.read_fresh_changes_future(changes[-1].at_s + 0.001).result(timeout=30) == []  # stamped after only
    with open_store(settings.model_copy(update={"namespace": settings.namespace + "x"})) as other:
        assert other.read_fresh_changes_future(before).result(timeout=30) == []  # each namespace lists its own


def test_a_change_that_does_not_decode_is_named(store: CassandraStore) -> None:
    now = time.time()
    store.execute(schema.INSERT_CHANGE, (store._ns, int(now // 60), uuid_from_time(now), b"\xc1\x00", CHANGES_TTL_S))
    with pytest.raises(CorruptRowError, match=r"fresh-state change listed at .* does not decode"):
        store.read_fresh_changes_future(now - 1).result(timeout=30)
