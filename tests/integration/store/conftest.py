"""Fixtures of the store suite: a fresh Cassandra keyspace per test run, dropped at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cassandra import throwaway_keyspace

# The contract lives outside test_*.py files; have pytest explain its failed asserts all the same.
pytest.register_assert_rewrite("tests.integration.store.contract")


@pytest.fixture(scope="session")
def cassandra_store_url(cassandra_endpoint: tuple[str, int]) -> Iterator[str]:
    """``cassandra://host:port/lambdarec_test_<random>`` with the store's schema in it."""
    with throwaway_keyspace(cassandra_endpoint) as url:
        yield url
