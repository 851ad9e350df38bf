"""Whole answers of ``GET /v1/users/{user_id}/recommendations``, kept so that a repeat of a request with nothing
changed is a lookup instead of a merge and an encoding.

An answer is reused only when every input of its ranking is the one it was ranked with:

- the request (the key: user, ``k``, ``offset``, session items, exclusions, filters, ``explain``, and the arm);
- the snapshot model, the merge weights, the trending scores and the catalog's view, compared by identity: serving
  replaces each of them whole when a snapshot is swapped in (or rolled back), a trending refresh changed a score
  (or a brand-new item), or the catalog's rules, items or expiries change, so a new one never equals an old one;
- the user's fresh state as read from the store on *this* request, compared by value: a fresh event, an
  impression, a hide or an erasure changes it (and the speed layer writes it from another process, so it is read
  anew every time, as without the cache);
- and its age, at most ``serving.answer_cache_ttl_s``: the time decay of session and fresh events moves scores
  slowly (half-life ``serving.session_half_life_s``), never by a step this limit could hide for long. Each answer
  lives a random 50-100% of that limit, so answers ranked together (a burst of users) do not all expire together
  and come back as one burst of rankings that queue behind each other.

Lists that write an impression, lists served degraded or from a corrupt row, and bodies pydantic had to encode are
never kept. ``fresh_state_age_s`` is the one field that changes with the clock alone: it is written anew into every
answer given from here. The cache belongs to one event loop (one worker): no locking.

Example
-------
>>> cache = AnswerCache(max_bytes=32 << 20, ttl_s=5.0)
>>> cache.get(query, inputs, state.fresh)                          # doctest: +SKIP
>>> cache.put(query, inputs, state.fresh, model.version, body, age, sources, fallback)  # doctest: +SKIP
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict

import msgspec
from prometheus_client import CollectorRegistry, Counter

from lambdarec.model.rows import FreshUser
from serving_layer.recommend import RecommendQuery

_encode = msgspec.json.Encoder().encode
_AGE_FIELD, _AFTER_AGE = b'"fresh_state_age_s":', b',"degraded":'
ENTRY_BYTES = 1100  # an entry besides its body and the key's ids: the objects and tuples, the sources (measured)
ID_BYTES = 50  # a str object's own size, besides its characters
TTL_JITTER = 0.5  # an answer lives (1 - TTL_JITTER .. 1) x ttl_s: expiries spread, not one burst of rankings


class CachedList(msgspec.Struct, frozen=True, gc=False):
    """One kept answer: what it was ranked with, its body around the age, and what the metrics count per list.

    Not tracked by Python's garbage collector (``gc=False``; it never takes part in a reference cycle): a full
    cache holds tens of thousands of answers, each of which a full collection would otherwise walk, with the tuple
    and list it held (the long pauses measured in a loaded server were numba's objects, frozen since: see
    ``Service.start``; these entries were the next largest share). Its ``inputs`` tuple is shared by the answers
    ranked with the same inputs, its ``sources`` a tuple of strings (which the collector stops tracking).
    """

    inputs: tuple[object, ...]  # model, weights, trending, catalog view, arm plan: compared by identity
    fresh: FreshUser | None  # compared by value
    expires_at: float  # time.monotonic() after which it is ranked again
    head: bytes  # the body up to and including '"fresh_state_age_s":'
    tail: bytes  # the body from ',"degraded":' on
    sources: tuple[str, ...]
    fallback: bool
    size: int  # bytes counted against the cache's bound: the body, the key's ids and ENTRY_BYTES

    def body(self, age_s: float | None) -> bytes:
        """The answer's bytes with ``fresh_state_age_s`` as of now."""
        return self.head + (b"null" if age_s is None else _encode(age_s)) + self.tail


class AnswerCache:
    """A least-recently-used map ``RecommendQuery -> CachedList`` of at most ``max_bytes`` of answers (their bodies,
    their keys' ids and ``ENTRY_BYTES`` each for the rest; see the module)."""

    def __init__(self, max_bytes: int, ttl_s: float):
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.bytes = 0
        self._data: OrderedDict[RecommendQuery, CachedList] = OrderedDict()
        self._results: dict[str, object] = {}
        self._inputs: tuple[object, ...] = ()  # the inputs of the last answer kept (see _shared)

    def register(self, registry: CollectorRegistry) -> None:
        """``lambdarec_serving_answer_cache_total{result}``: lists answered from the cache (``hit``), ranked
        because none was kept (``miss``), or ranked again because an input changed or it grew too old
        (``changed``)."""
        counter = Counter(
            "lambdarec_serving_answer_cache_total",
            "Requests for a user's list by answer-cache result: hit, miss, changed (an input changed or too old).",
            ["result"],
            registry=registry,
        )
        self._results = {r: counter.labels(r) for r in ("hit", "miss", "changed")}

    def _count(self, result: str) -> None:
        child = self._results.get(result)
        if child is not None:
            child.inc()  # type: ignore[attr-defined]

    def get(self, query: RecommendQuery, inputs: tuple[object, ...], fresh: FreshUser | None) -> CachedList | None:
        """The kept answer of ``query`` if it was ranked with exactly ``inputs`` and ``fresh`` and is young
        enough, else None (a kept answer that no longer holds is dropped)."""
        if self.max_bytes <= 0:
            return None
        kept = self._data.get(query)
        if kept is None:
            self._count("miss")
            return None
        if (
            time.monotonic() >= kept.expires_at
            or len(kept.inputs) != len(inputs)
            or any(a is not b for a, b in zip(kept.inputs, inputs, strict=True))
            or (kept.fresh is not fresh and kept.fresh != fresh)  # an unchanged state is read as the same object
        ):
            self._drop(query)
            self._count("changed")
            return None
        self._data.move_to_end(query)
        self._count("hit")
        return kept

    def put(
        self,
        query: RecommendQuery,
        inputs: tuple[object, ...],
        fresh: FreshUser | None,
        snapshot: str,
        body: bytes,
        age_s: float | None,
        sources: list[str],
        fallback: bool,
    ) -> None:
        """Keep ``body``, the answer ranked for ``query`` from ``inputs`` and ``fresh`` in ``snapshot``, whose
        ``fresh_state_age_s`` is ``age_s``; a body that does not begin as the msgspec encoding lays it out is not
        kept. The least recently used answers go while the cache holds more than ``max_bytes``."""
        if self.max_bytes <= 0:
            return
        split = split_at_age(body, query.user_id, snapshot, age_s)
        if split is None:
            return
        self._drop(query)
        size = len(body) + key_bytes(query) + ENTRY_BYTES
        expires = time.monotonic() + self.ttl_s * (1.0 - TTL_JITTER * random.random())  # noqa: S311 (not secret)
        inputs = self._shared(inputs)
        self._data[query] = CachedList(inputs, fresh, expires, *split, tuple(sources), fallback, size)
        self.bytes += size
        while self.bytes > self.max_bytes and self._data:
            self._drop(next(iter(self._data)))

    def _shared(self, inputs: tuple[object, ...]) -> tuple[object, ...]:
        """The one tuple kept for these inputs (each answer ranked with the same ones holds that tuple)."""
        last = self._inputs
        if len(last) == len(inputs) and all(a is b for a, b in zip(last, inputs, strict=True)):
            return last
        self._inputs = inputs
        return inputs

    def _drop(self, query: RecommendQuery) -> None:
        kept = self._data.pop(query, None)
        if kept is not None:
            self.bytes -= kept.size

    def forget(self, user_id: str) -> None:
        """Drop every kept answer of ``user_id`` (an erasure)."""
        for query in [q for q in self._data if q.user_id == user_id]:
            self._drop(query)

    def __len__(self) -> int:
        return len(self._data)


def key_bytes(query: RecommendQuery) -> int:
    """About what ``query``'s ids hold (a request may name 100 session items of 256 characters, and filters)."""
    categories, excluded, text = query.filters.key if query.filters is not None else ((), (), "")
    ids = (query.user_id or "", *query.session_items, *query.exclude, *categories, *excluded, text)
    return sum(len(i) for i in ids) + ID_BYTES * len(ids)


def split_at_age(body: bytes, user_id: str | None, snapshot: str, age_s: float | None) -> tuple[bytes, bytes] | None:
    """``body`` as (head, tail) around its ``fresh_state_age_s`` value, or None when it does not begin as the
    encoding of :func:`serving_layer.user_list.encode_body` begins (user, snapshot, then the age as msgspec spells
    it)."""
    head = b'{"user_id":' + _encode(user_id) + b',"snapshot":' + _encode(snapshot) + b"," + _AGE_FIELD
    value = b"null" if age_s is None else _encode(age_s)
    if not body.startswith(head) or not body.startswith(value + _AFTER_AGE, len(head)):
        return None
    return head, body[len(head) + len(value) :]
