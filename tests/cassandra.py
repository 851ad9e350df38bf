"""A throwaway Cassandra keyspace for tests: created with the store's schema, dropped at the end.

Example
-------
>>> with throwaway_keyspace(cassandra_endpoint, "lambdarec_speed") as url:   # doctest: +SKIP
...     settings = Settings.load(overrides={"store": {"url": url}})
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

from lambdarec.settings import StoreSettings
from lambdarec.store import open_store


@contextlib.contextmanager
def throwaway_keyspace(endpoint: tuple[str, int], prefix: str = "lambdarec_test") -> Iterator[str]:
    """``cassandra://host:port/<prefix>_<random>`` with the store's schema in it; the keyspace is dropped on exit
    (``OnlineStore.drop_schema``), whatever the test did."""
    host, port = endpoint
    url = f"cassandra://{host}:{port}/{prefix}_{secrets.token_hex(4)}"
    with open_store(StoreSettings(url=url)) as store:
        store.init_schema()
        try:
            yield url
        finally:
            store.drop_schema()


def user_row_where(store: object, version: str, user_id: str) -> tuple[str, tuple[object, ...]]:
    """``(table WHERE clause, params)`` that address one stored batch row of ``version``, in the layout the version
    was begun with (bucket partitions, or one partition per user for a version begun before them)."""
    from lambdarec.store import cassandra_users

    buckets = store._users.buckets(version)  # type: ignore[attr-defined]
    if buckets is None:
        return "{ks}.user_rows WHERE version = ? AND user_id = ?", (version, user_id)
    bucket = cassandra_users.user_bucket(user_id, buckets)
    return "{ks}.user_rows_by_bucket WHERE version = ? AND bucket = ? AND user_id = ?", (version, bucket, user_id)
