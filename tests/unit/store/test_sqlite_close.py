"""Closing the SQLite store while other threads still read it (a server stopping with a watcher mid-query).

The first fresh-clone CI run crashed here: ``close()`` closed a connection under a statement another thread was
running, and the whole test process died with a segmentation fault. The race runs in a child process so that a
regression fails this test with the child's exit status instead of taking the test run down with it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lambdarec.settings import Settings
from lambdarec.store import StoreUnavailableError, open_store

RACE = textwrap.dedent(
    """
    import sys, threading, time
    from lambdarec.settings import Settings
    from lambdarec.store import open_store

    root, rounds = sys.argv[1], int(sys.argv[2])
    for n in range(rounds):
        store = open_store(Settings.load(overrides={"store": {"url": f"sqlite:///{root}/s{n}"}}))
        stop = threading.Event()

        def read():
            while not stop.is_set():
                try:
                    store.current_version(max_age_s=0)
                    store.list_snapshots()
                except Exception:
                    pass

        readers = [threading.Thread(target=read) for _ in range(3)]
        for t in readers:
            t.start()
        time.sleep(0.005)
        store.close()
        time.sleep(0.002)
        stop.set()
        for t in readers:
            t.join()
    print("ok")
    """
)


def test_closing_while_other_threads_read_neither_crashes_nor_hangs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", RACE, str(tmp_path), "150"], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, f"the process died (exit {done.returncode}): {done.stderr[-2000:]}"
    assert done.stdout.strip() == "ok"


def test_a_closed_store_says_so_instead_of_reopening_its_files(tmp_path: Path) -> None:
    store = open_store(Settings.load(overrides={"store": {"url": f"sqlite:///{tmp_path}/s"}}))
    assert store.current_version(max_age_s=0) is None
    store.close()
    with pytest.raises(StoreUnavailableError, match="was closed"):
        store.current_version(max_age_s=0)
