"""Stored fresh states decoded once while their stored bytes stay the same: serving's reads of them.

Serving reads a user's fresh state on every request (the speed layer writes it from another process, so it is
never taken from memory), and decoding it (msgpack into a ``FreshUser`` of lists and dicts, seen through its
erasure) was the largest part of a read. :class:`DecodedStates` keeps the states it decoded by the bytes read
(the row and its erasure): a row read again unchanged gives back the very object decoded before, and what the
merge derives from a state (its float32 vector, the indices of its items: :mod:`lambdarec.rank.memo`, keyed by the
object) is found again with it. A row the speed layer rewrote, or an erasure, is other bytes and is decoded anew;
a row that does not decode is never kept (it raises, as before). Decoded states are never changed in place (the
speed layer builds new ones), so one object may serve many requests and threads.

Bounded by memory: each state counts ``DECODED_FACTOR`` times its stored bytes (the key's bytes and the objects
decoded from them) plus ``ENTRY_BYTES``; the least recently read go first. A store keeps one only when asked
(:meth:`lambdarec.store.port.OnlineStore.keep_decoded_fresh`: serving's ``serving.fresh_state_cache_mb``).

Example
-------
>>> decoded = DecodedStates(decode_row, max_bytes=32 << 20)
>>> decoded((data, None)) is decoded((data, None))        # doctest: +SKIP
True
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
Stored = tuple[bytes | None, bytes | None]  # a row's data and its erasure, as read
# a decoded state's objects take about 4.6 times its msgpack bytes (3 events, 3 recent items and a 64-factor
# vector: 911 bytes stored, 4,150 decoded), and the key holds the bytes themselves
DECODED_FACTOR = 6
ENTRY_BYTES = 200  # the entry's tuple and the map's slot


class DecodedStates(Generic[T]):
    """A least-recently-used map from stored bytes to what ``decode`` made of them (thread-safe)."""

    def __init__(self, decode: Callable[[Stored], T], max_bytes: int):
        self._decode = decode
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0  # rows given back decoded, and rows decoded (read by serving's metrics at scrape time)
        self.misses = 0
        self._data: OrderedDict[Stored, tuple[T, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, stored: Stored) -> T:
        """``decode(stored)``, the same object as long as ``stored`` stays kept."""
        with self._lock:
            kept = self._data.get(stored)
            if kept is not None:
                self._data.move_to_end(stored)
                self.hits += 1
                return kept[0]
        value = self._decode(stored)  # a row that does not decode raises: nothing is kept
        size = DECODED_FACTOR * sum(len(part) for part in stored if part is not None) + ENTRY_BYTES
        with self._lock:
            self.misses += 1
            if stored not in self._data:
                self._data[stored] = (value, size)
                self.bytes += size
                while self.bytes > self.max_bytes and self._data:
                    self.bytes -= self._data.popitem(last=False)[1][1]
        return value

    def __len__(self) -> int:
        return len(self._data)
