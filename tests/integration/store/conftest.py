"""Fixtures of the store suite: a fresh Cassandra keyspace per test run, dropped at the end."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from lambdarec.settings import StoreSettings

# The contract lives outside test_*.py files; have pytest explain its failed asserts all the same.
pytest.register_assert_rewrite("tests.integration.store.contract")


@pytest.fixture(scope="session")
def cassandra_store_url(cassandra_endpoint: tuple[str, int]) -> Iterator[str]:
    """``cassandra://host:port/lambdarec_test_<random>`` with the store's schema in it."""
    from lambdarec.store.cassandra import CassandraStore

    host, port = cassandra_endpoint
    keyspace = f"lambdarec_test_{secrets.token_hex(4)}"
    url = f"cassandra://{host}:{port}/{keyspace}"
    store = CassandraStore(StoreSettings(url=url))
    try:
        store.init_schema()
        yield url
    finally:
        store._session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        store.close()
