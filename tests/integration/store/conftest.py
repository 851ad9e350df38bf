"""Fixtures of the store suite: a fresh Cassandra keyspace per test run, dropped at the end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from lambdarec.settings import StoreSettings
from lambdarec.store import open_store
from lambdarec.store.cassandra import CassandraStore
from tests.cassandra import throwaway_keyspace

# The contract lives outside test_*.py files; have pytest explain its failed asserts all the same.
pytest.register_assert_rewrite("tests.integration.store.contract")


@pytest.fixture(scope="session")
def cassandra_store_url(cassandra_endpoint: tuple[str, int]) -> Iterator[str]:
    """``cassandra://host:port/lambdarec_test_<random>`` with the store's schema in it."""
    with throwaway_keyspace(cassandra_endpoint) as url:
        yield url


@pytest.fixture
def ns_settings(cassandra_store_url: str) -> StoreSettings:
    """Store settings on the run's keyspace, in a namespace of this test's own."""
    return StoreSettings(url=cassandra_store_url, namespace=f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def ns_store(ns_settings: StoreSettings) -> Iterator[CassandraStore]:
    """The Cassandra store of :func:`ns_settings`, closed after the test."""
    with open_store(ns_settings) as opened:
        assert isinstance(opened, CassandraStore)
        yield opened
