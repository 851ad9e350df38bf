"""The write transaction both embedded SQLite backends (the store, the event log) take.

Example
-------
>>> with write_txn(conn) as conn:                                   # doctest: +SKIP
...     conn.execute("INSERT INTO pointer VALUES (?, ?)", ("default", "v1"))
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def write_txn(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction taken up front (``BEGIN IMMEDIATE``), so concurrent writers queue, never deadlock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
