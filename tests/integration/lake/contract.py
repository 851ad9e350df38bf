"""The lake port's contract, run on every storage (local disk, S3): exactly once, pinned reads, erasure."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import polars as pl
import pytest

from lambdarec.events import Event
from lambdarec.lake import Lake, LakeError, event_rows
from lambdarec.settings import LakeSettings

T0 = 1_764_400_000.0


def events(partition: int, offsets: range, user: str = "u{}") -> list[tuple[Event, tuple[int, int]]]:
    return [
        (
            Event(
                event_id=f"e-{partition}-{o}",
                user_id=user.format(o % 7),
                item_id=f"i{o % 11}",
                event_type="view",
                timestamp=T0 + o * 3600.0,
            ),
            (partition, o),
        )
        for o in offsets
    ]


def rows(batch: list[tuple[Event, tuple[int, int]]]):
    return event_rows(batch, source="log", ingested_at=time.time())


def positions_in_table(lake: Lake) -> list[tuple[int, int]]:
    frame = lake.scan().select("log_partition", "log_offset").collect()
    return sorted(zip(frame["log_partition"].to_list(), frame["log_offset"].to_list(), strict=True))


def check_append_is_exactly_once(settings: LakeSettings) -> None:
    lake = Lake(settings)
    assert lake.version() is None and lake.positions() == {}
    first = lake.append_log(rows(events(0, range(10)) + events(1, range(5))), {0: 10, 1: 5})
    assert first.appended == 15 and lake.positions() == {0: 10, 1: 5}
    # the same batch again (a restart after a crash before the group commit) appends nothing
    again = lake.append_log(rows(events(0, range(10)) + events(1, range(5))), {0: 10, 1: 5})
    assert (again.appended, again.skipped) == (0, 15)
    # an overlapping batch appends only the tail the table lacks
    tail = lake.append_log(rows(events(0, range(6, 14))), {0: 14})
    assert (tail.appended, tail.skipped) == (4, 4)
    assert positions_in_table(lake) == sorted([(0, o) for o in range(14)] + [(1, o) for o in range(5)])
    assert lake.positions() == {0: 14, 1: 5}
    # a batch with no row (all dead letters) still records its positions
    lake.append_log(rows([]), {1: 9})
    assert lake.positions() == {0: 14, 1: 9}


def check_positions_name_each_partition_with_its_own(settings: LakeSettings) -> None:
    """Positions found without named partitions (probed from threads) and with them (one by one) agree, each
    partition with its own position, up to the last partition looked for."""
    lake = Lake(settings)
    covers = {0: 4, 17: 2, 300: 9, 1023: 6}
    lake.append_log(rows([e for p, n in covers.items() for e in events(p, range(n))]), covers)
    assert lake.positions() == covers
    assert lake.positions(partitions=[300, 5, 17]) == {300: 9, 17: 2}
    assert lake.positions(partitions=range(1024)) == covers


def check_pinned_version_reads_what_it_held(settings: LakeSettings) -> None:
    lake = Lake(settings)
    v1 = lake.append_log(rows(events(0, range(20))), {0: 20}).version
    lake.append_log(rows(events(0, range(20, 50))), {0: 50})
    assert lake.scan(v1).select(pl.len()).collect().item() == 20
    assert lake.positions(v1) == {0: 20}
    assert lake.scan().select(pl.len()).collect().item() == 50
    summary = lake.summary()
    assert summary["rows"] == 50 and summary["users"] == 7 and summary["items"] == 11
    assert summary["positions"] == {"0": 50}


def check_racing_writers_lose_no_commit(settings: LakeSettings) -> None:
    """Two writers append the same records and distinct ones at once: every record lands exactly once."""
    Lake(settings).append_log(rows([]), {0: 0})  # create the table first: both race on commits, not creation
    errors: list[BaseException] = []

    def writer(partitions: list[int]) -> None:
        lake = Lake(settings)  # each writer its own handle, as two processes would have
        try:
            for start in range(0, 60, 10):
                batch = [e for p in partitions for e in events(p, range(start, start + 10))]
                lake.append_log(rows(batch), {p: start + 10 for p in partitions})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(ps,)) for ps in ([0, 1], [1, 2])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    lake = Lake(settings)
    assert positions_in_table(lake) == sorted((p, o) for p in (0, 1, 2) for o in range(60))
    assert lake.positions() == {0: 60, 1: 60, 2: 60}


def check_delete_user_and_erasures(settings: LakeSettings) -> None:
    lake = Lake(settings)
    lake.append_log(rows(events(0, range(21))), {0: 21})
    version, deleted = lake.delete_users(["u3", "nobody", "o'brien"])
    assert deleted == 3
    users = set(lake.scan().select("user_id").collect()["user_id"].to_list())
    assert "u3" not in users and len(users) == 6
    assert lake.version() == version
    lake.record_erasure(["u3"], {0: 21})
    erasure = lake.erasures()["u3"]
    assert erasure.covers(0, 20) and not erasure.covers(0, 21) and not erasure.covers(1, 0)


def check_import_once_per_content(settings: LakeSettings, tmp_path: Path) -> None:
    from batch_layer.archive.imports import import_file
    from lambdarec.settings import BatchSettings

    path = tmp_path / "history.csv"
    path.write_text("user_id,item_id,timestamp,event_type\nu1,i1,1700000000,view\nu2,i2,1700000100,click\n,i3,1,view\n")
    lake = Lake(settings)
    first = import_file(lake, path, BatchSettings())
    assert first.appended == 2 and first.bad_rows == {"missing_user_id": 1}
    copy = tmp_path / "copy-of-history.csv"
    copy.write_bytes(path.read_bytes())
    second = import_file(lake, copy, BatchSettings())
    assert second.appended == 0 and second.already_imported
    frame = lake.scan().collect()
    assert frame.height == 2 and set(frame["source"]) == {"import:history.csv"}
    assert frame["log_offset"].null_count() == 2


def check_vacuum_refuses_below_the_floor(settings: LakeSettings) -> None:
    lake = Lake(settings.model_copy(update={"vacuum_min_retain_hours": 24.0}))
    lake.append_log(rows(events(0, range(3))), {0: 3})
    with pytest.raises(LakeError, match="safety floor"):
        lake.vacuum(1.0)
    assert lake.vacuum(24.0, dry_run=True) == []
