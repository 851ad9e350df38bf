"""The SQLite store maps its files only as far as the settings allow (issue 12: memory bounded by configuration)."""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from pathlib import Path

import pytest

from lambdarec.settings import Settings
from lambdarec.store import FreshUser, open_store
from lambdarec.store.sqlite_schema import FRESH_FILE, SNAPSHOTS_FILE

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")


def mapped_bytes(path: Path) -> int:
    """Bytes of ``path`` mapped into this process."""
    total = 0
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == str(path.resolve()):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            total += end - start
    return total


def checkpoint(path: Path) -> None:
    """Move the WAL's pages into the database file (readers map the file, never the WAL)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


@pytest.mark.parametrize(("snapshots_mb", "fresh_mb"), [(1024, 0), (0, 1), (0, 1024)])
def test_each_file_is_mapped_up_to_its_setting(tmp_path: Path, snapshots_mb: int, fresh_mb: int) -> None:
    settings = Settings.load(
        overrides={
            "store": {
                "url": f"sqlite:///{tmp_path}/store",
                "sqlite": {"mmap_mb": snapshots_mb, "fresh_mmap_mb": fresh_mb},
            },
            "log": {"url": f"sqlite:///{tmp_path}/events"},
        }
    )
    fresh_file = tmp_path / "store" / FRESH_FILE
    users = [f"user-{n}" for n in range(3000)]
    with open_store(settings) as store:
        store.write_fresh_users(
            FreshUser(user_id=u, recent=[(f"item-{k}", 1.7e9 + k) for k in range(50)]) for u in users
        )
        checkpoint(fresh_file)
        assert len(store.read_fresh_users(users)) == len(users)
        size = fresh_file.stat().st_size
        assert size > 2 << 20  # larger than the 1 MiB bound below
        mapped = mapped_bytes(fresh_file)
        if fresh_mb == 0:
            assert mapped == 0
        else:
            assert 0 < mapped <= min(fresh_mb << 20, size + 65536), (mapped, size)
        if snapshots_mb == 0:
            assert mapped_bytes(tmp_path / "store" / SNAPSHOTS_FILE) == 0
