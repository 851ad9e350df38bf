"""A snapshot writer in its own process, so a test can SIGKILL it in the middle of a write.

    python -m tests.integration.store.writer URL NAMESPACE --users N --marker M [--forever]

Prints ``BEGUN <version>``, then ``PART <i>`` after each committed part of ``PART_SIZE`` users, then
``PUBLISHED <version>``. With ``--forever`` it keeps writing parts and never publishes.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from lambdarec.logs import configure_logging
from lambdarec.settings import StoreSettings
from lambdarec.store import UserRow, open_store

PART_SIZE = 100


def marked_rows(start: int, stop: int, marker: float) -> list[UserRow]:
    """Users ``u<start>..u<stop-1>``; every score is ``marker``, so a reader can tell versions apart."""
    return [
        UserRow(
            f"u{i}",
            np.arange(i % 7, i % 7 + 8, dtype=np.int32),
            np.full(8, marker, dtype=np.float32),
            np.array([i % 5], dtype=np.int32),
            np.array([1.0], dtype=np.float32),
        )
        for i in range(start, stop)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("namespace")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--marker", type=float, required=True)
    parser.add_argument("--forever", action="store_true")
    args = parser.parse_args(argv)
    configure_logging()  # logs to stderr: stdout carries the protocol the test reads
    with open_store(StoreSettings(url=args.url, namespace=args.namespace)) as store:
        version = store.begin_snapshot({"marker": args.marker})
        print("BEGUN", version, flush=True)
        part = 0
        while args.forever or part * PART_SIZE < args.users:
            start = (part * PART_SIZE) % max(args.users, 1)
            store.write_users(version, marked_rows(start, min(start + PART_SIZE, args.users), args.marker), f"p{part}")
            print("PART", part, flush=True)
            part += 1
            if args.forever:
                time.sleep(0.01)
        store.publish(version, {"counts": {"user_rows": args.users, "item_rows": 0}})
        print("PUBLISHED", version, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
