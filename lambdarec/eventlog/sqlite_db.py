"""The tables of the embedded event log and the SQLite helpers its producer and its consumers share.

``SCHEMA`` holds the records (``part``, ``pos``), the next position of each partition and the consumer groups
(positions, members with their heartbeats, partition owners); ``DEAD_LETTER_SCHEMA`` the dead letters, in a table
named by ``log.dead_letter``. ``EventDatabase`` is what a consumer needs of the log it reads.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from lambdarec.masking import mask_url
from lambdarec.settings import LogSettings

DB_FILE = "events.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS partitions (part INTEGER PRIMARY KEY, next_pos INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    part INTEGER NOT NULL, pos INTEGER NOT NULL, key TEXT, value BLOB NOT NULL, appended_ms INTEGER NOT NULL,
    PRIMARY KEY (part, pos)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_positions (
    grp TEXT NOT NULL, part INTEGER NOT NULL, next_pos INTEGER NOT NULL, PRIMARY KEY (grp, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_members (
    grp TEXT NOT NULL, member TEXT NOT NULL, heartbeat_ms INTEGER NOT NULL, PRIMARY KEY (grp, member)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_owners (
    grp TEXT NOT NULL, part INTEGER NOT NULL, member TEXT NOT NULL, PRIMARY KEY (grp, part)
) WITHOUT ROWID;
"""
DEAD_LETTER_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    id INTEGER PRIMARY KEY AUTOINCREMENT, value BLOB NOT NULL, reason TEXT NOT NULL,
    source_part INTEGER, source_pos INTEGER, appended_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {index} ON {table} (source_part, source_pos)
"""
INSERT_RECORD = "INSERT INTO records (part, pos, key, value, appended_ms) VALUES (?, ?, ?, ?, ?)"
UPDATE_NEXT = "UPDATE partitions SET next_pos = ? WHERE part = ?"


def now_ms() -> int:
    """Wall-clock epoch milliseconds."""
    return time.time_ns() // 1_000_000


def sqlite_dir(url: str) -> Path:
    """The directory of a ``sqlite:///relative/dir`` or ``sqlite:////absolute/dir`` URL."""
    parts = urlsplit(url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.scheme != "sqlite" or parts.netloc or not path:
        raise ValueError(f"log.url {mask_url(url)!r} is not sqlite:///relative/dir or sqlite:////absolute/dir")
    return Path(path)


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQLite identifier (the dead-letter table comes from settings)."""
    return '"' + name.replace('"', '""') + '"'


class EventDatabase(Protocol):
    """What a consumer needs of the SQLite event log it reads (``SQLiteEventLog`` is one)."""

    settings: LogSettings

    def connect(self) -> sqlite3.Connection:
        """A new connection of its own, in autocommit mode."""
        ...

    def partition_count(self) -> int:
        """The log's partition count."""
        ...

    def end_offsets(self) -> dict[int, int]:
        """Per partition, the position the next appended record will get."""
        ...
