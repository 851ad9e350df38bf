"""The event-log contract on the embedded SQLite backend (no server needed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdarec.eventlog import CommitFailedError, EventLog, open_log
from lambdarec.settings import LogSettings
from tests.integration.log.contract import EventLogContract, MakeLog, drain, events


class TestSQLiteEventLog(EventLogContract):
    @pytest.fixture
    def make_log(self, tmp_path: Path) -> Iterator[MakeLog]:
        opened: list[EventLog] = []
        settings = LogSettings(
            url=f"sqlite:///{tmp_path / 'events'}", partitions=3, session_timeout_ms=6000, sqlite={"idle_poll_ms": 10}
        )

        def make() -> EventLog:
            opened.append(open_log(settings))
            return opened[-1]

        yield make
        for log in opened:
            log.close()


def test_a_member_silent_past_the_session_timeout_is_fenced(tmp_path: Path) -> None:
    """SQLite-specific: the group drops a stalled member; its late commit cannot overwrite the new owner's."""
    settings = LogSettings(url=f"sqlite:///{tmp_path / 'events'}", partitions=3, session_timeout_ms=1000)
    with open_log(settings) as log:
        log.append(events(9))
        lost: list[tuple[set[int], str]] = []

        def on_revoke(parts: set[int]) -> None:  # a real consumer would flush, then try to commit
            try:
                stalled.commit(dict.fromkeys(parts, 9))
                lost.append((parts, "committed"))
            except CommitFailedError:
                lost.append((parts, "refused"))

        stalled = log.consumer("g", on_revoke=on_revoke)
        assert len(drain(stalled, 9, timeout_s=5)) == 9
        time.sleep(1.2)  # longer than the session timeout, without polling
        with log.consumer("g") as other:
            assert len(drain(other, 9, timeout_s=5)) == 9  # took every partition from the committed position: 0
            other.commit({0: 1})
            with pytest.raises(CommitFailedError, match="no longer assigned"):
                stalled.commit({0: 5})
            assert other.committed() == {0: 1}
            assert stalled.poll(timeout_ms=0) == []  # it rejoins, learns it lost them, owns nothing yet
            assert lost == [({0, 1, 2}, "refused")]
            assert other.committed() == {0: 1}
        stalled.close()
