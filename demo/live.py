"""The demo's live part, over HTTP as a product service would do it: a user's list, a burst of fresh events from a
taste the user never showed, and the list again once the speed layer has applied them.

The taste comes from the synthetic log's truth: a cluster the user never touched, and of those the one their
nightly candidates hold least of, so what the burst brings into the list visibly comes through the speed layer.
Among a few users with a middling history (and no fresh state yet: a rerun picks someone new), the demo takes
the one with the emptiest such cluster. On a log of the caller's, the burst is the popular item least like the
user's history (by the snapshot's item factors) and its neighbours. Events carry the wall-clock time, after the
snapshot's cut-off, so they count as fresh.

Example
-------
>>> live = show_fresh_events(Api("http://127.0.0.1:8000", key), log, console, seed=42, snapshot=view)  # doctest: +SKIP
>>> live["changes"]["sources_after"]                                                                  # doctest: +SKIP
{'speed': 6, 'batch': 4}
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from demo import console as show
from demo.workspace import DemoLog
from lambdarec.settings import Settings

APPLIED_TIMEOUT_S = 60.0  # covers a consumer-group hand-over from a member an earlier run left (10 s)
BURST_ITEMS = 8
TOUCHES = ("view", "click", "cart", "purchase")  # an item's events in the burst: 3 or 4 of these, in this order
LIST_K = 10
USERS_TRIED = 25


@dataclass(frozen=True)
class SnapshotView:
    """What step 5 reads of the served snapshot in-process: item ids, unit item factors, neighbours, and a
    user's nightly candidates (item ids, best first)."""

    item_ids: np.ndarray
    unit: np.ndarray
    neighbours: np.ndarray
    candidates: Callable[[str], list[str]]

    @classmethod
    def served(cls, settings: Settings, version: str) -> SnapshotView:
        """Snapshot ``version`` as step 5 reads it, in-process from the embedded store."""
        from lambdarec.model.snapshot import SnapshotModel
        from lambdarec.store import open_store

        with open_store(settings) as store:
            model = SnapshotModel.load(store, version)

        def candidates(user: str) -> list[str]:
            with open_store(settings) as store:
                row = store.read_user(model.version, user)
            return [] if row is None else [str(model.item_ids[i]) for i in row.candidates]

        return cls(model.item_ids, model.unit_factors, model.neighbours, candidates)


@dataclass(frozen=True)
class Burst:
    """The items of a burst, where they come from in words, their taste cluster (None without truth), and how
    many items of that taste the user's nightly candidates already hold."""

    items: list[str]
    where: str
    cluster: int | None
    in_candidates: int


class LiveError(RuntimeError):
    """The server answered something the demo cannot go on with; the message carries its answer."""


@dataclass(frozen=True)
class Api:
    """A tiny HTTP client (the standard library's) for the demo's server."""

    base: str
    key: str

    def recommendations(self, user: str, k: int = LIST_K) -> dict[str, Any]:
        """``GET /v1/users/USER/recommendations?k=K&explain=true``."""
        path = f"/v1/users/{urllib.parse.quote(user, safe='')}/recommendations?k={k}&explain=true"
        return self._call(urllib.request.Request(self.base + path))  # noqa: S310 (the demo's own http URL)

    def post_events(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """``POST /v1/events`` with the ingest key."""
        req = urllib.request.Request(  # noqa: S310 (the demo's own http URL)
            self.base + "/v1/events",
            data=json.dumps(events).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"},
        )
        return self._call(req)

    def _call(self, req: urllib.request.Request) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (the demo's own http URL)
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise LiveError(f"{req.get_method()} {req.full_url} answered {exc.code}: {detail}") from None


def show_fresh_events(api: Api, log: DemoLog, console: Any, *, seed: int, snapshot: SnapshotView) -> dict[str, Any]:
    """Step 5: a user's list, a burst of events from a foreign taste, the list once they are applied.

    Returns the summary's part: user, before, after, changes, burst, applied.
    """
    user, before, burst = choose(api, log, snapshot, seed)

    def taste(item_id: str) -> str:
        c = log.cluster_of(item_id)
        return "?" if c < 0 else f"{c}" + (" (burst)" if c == burst.cluster else "")

    column = taste if log.item_cluster is not None else None
    show.rec_table(console, before, f"{user} before", taste=column)
    events = burst_events(user, burst.items, time.time())
    show.note(console, f"posting {len(events)} events on {len(burst.items)} items from {burst.where}:")
    show.note(console, "  " + ", ".join(burst.items))
    result = api.post_events(events)
    show.note(console, f"POST /v1/events: {result['accepted']} accepted, {result['rejected']} rejected")
    t0 = time.perf_counter()
    with console.status("waiting for the speed layer to apply them"):
        after, applied = wait_applied(api, user, before, APPLIED_TIMEOUT_S)
    took = time.perf_counter() - t0
    if applied:
        show.note(console, f"applied: the list changed {took:.1f} s after the post")
    else:
        show.note(console, f"the list did not change within {APPLIED_TIMEOUT_S:.0f} s")
    changes = list_changes(before, after)
    show.rec_table(console, after, f"{user} after (* new in the list)", entered=set(changes["entered"]), taste=column)
    show.note(console, f"sources before {changes['sources_before']} -> after {changes['sources_after']}")
    show.note(console, f"{len(changes['entered'])} items entered the top {LIST_K}, {len(changes['left'])} left")
    return {
        "user": user,
        "before": before,
        "after": after,
        "changes": changes,
        "burst": {**burst.__dict__, "events": len(events), "post": result},
        "applied": {"seen": applied, "seconds": round(took, 2)},
    }


def choose(api: Api, log: DemoLog, snapshot: SnapshotView, seed: int) -> tuple[str, dict[str, Any], Burst]:
    """The user (with their list now) and the burst; see the module docstring for how."""
    by_count = log.frame.group_by("item_id").len().sort(["len", "item_id"], descending=[True, False])
    best: tuple[str, dict[str, Any], Burst] | None = None
    users = candidate_users(log, seed)
    for user in users:
        body = api.recommendations(user)
        if body["fresh_state_age_s"] is not None:
            continue  # an earlier run's burst: the speed layer already holds this user
        burst = burst_items(log, user, snapshot, by_count)
        if best is None or burst.in_candidates < best[2].in_candidates:
            best = (user, body, burst)
        if burst.in_candidates == 0:
            break
    if best is None:  # every user tried has fresh state (many reruns): take the first anyway
        best = (users[0], api.recommendations(users[0]), burst_items(log, users[0], snapshot, by_count))
    return best


def candidate_users(log: DemoLog, seed: int) -> list[str]:
    """Users with a middling history (between the median and the 90th percentile of events), seeded order."""
    counts = log.frame.group_by("user_id").len().sort("user_id")
    lo, hi = counts["len"].quantile(0.5), counts["len"].quantile(0.9)
    pool = counts.filter(pl.col("len").is_between(lo, hi))["user_id"].to_list() or counts["user_id"].to_list()
    order = np.random.default_rng(seed).permutation(len(pool))[:USERS_TRIED]
    return [pool[i] for i in order]


def burst_items(log: DemoLog, user: str, snapshot: SnapshotView, by_count: pl.DataFrame) -> Burst:
    """Items of one taste foreign to ``user``, none of them touched (``by_count``: item ids by events, desc)."""
    history = set(log.frame.filter(pl.col("user_id") == user)["item_id"].to_list())
    pool = snapshot.candidates(user)
    ids = by_count["item_id"].to_list()
    if log.item_cluster is None:
        items, where = _far_items(snapshot, history | set(pool), ids, user)
        return Burst(items, where, None, 0)
    cluster = {i: log.cluster_of(i) for i in ids}
    known = log.user_tastes(user) | {cluster[i] for i in history if i in cluster}
    mass: dict[int, int] = {}
    for i, n in zip(ids, by_count["len"].to_list(), strict=True):
        mass[cluster[i]] = mass.get(cluster[i], 0) + n
    held = {c: sum(log.cluster_of(i) == c for i in pool) for c in mass}
    foreign = sorted((c for c in mass if c not in known), key=lambda c: (held[c], -mass[c], c))
    chosen = foreign[0] if foreign else min(mass, key=lambda c: (held[c], -mass[c], c))
    items = [i for i in ids if cluster[i] == chosen and i not in history][:BURST_ITEMS]
    where = f"taste cluster {chosen}, which {user} never touched ({held[chosen]} of their nightly candidates)"
    return Burst(items, where, chosen, held[chosen])


def _far_items(snapshot: SnapshotView, exclude: set[str], by_count: list[str], user: str) -> tuple[list[str], str]:
    """The popular item least like the user's history, then its nearest neighbours; none of them in ``exclude``
    (the user's history and nightly candidates)."""
    index = {str(i): n for n, i in enumerate(snapshot.item_ids)}
    unit = snapshot.unit
    seen = [index[i] for i in exclude if i in index]
    profile = unit[seen].mean(axis=0) if seen else np.zeros(unit.shape[1], dtype=unit.dtype)
    popular = [index[i] for i in by_count[: max(50, len(by_count) // 5)] if i in index and i not in exclude]
    if not popular:
        raise LiveError(f"every popular item is in {user}'s history or candidates; no foreign taste to show")
    seed = min(popular, key=lambda n: float(unit[n] @ profile))
    items = [str(snapshot.item_ids[seed])]
    items += [str(snapshot.item_ids[n]) for n in snapshot.neighbours[seed] if n >= 0]
    items = [i for i in dict.fromkeys(items) if i == items[0] or i not in exclude]
    return items[:BURST_ITEMS], f"the popular item least like {user}'s history ({items[0]}) and its neighbours"


def burst_events(user: str, items: list[str], now_s: float) -> list[dict[str, Any]]:
    """One session of fresh events over ``items``, a few seconds apart, ending just before ``now_s``."""
    session = f"demo-{uuid.uuid4().hex[:12]}"
    events = []
    for n, item in enumerate(items):
        for touch in TOUCHES[: 3 + n % 2]:  # every other item bought: a believable funnel
            events.append({"user_id": user, "item_id": item, "event_type": touch, "session_id": session})
    for n, event in enumerate(events):
        event["event_id"] = f"{session}-{n}"
        event["timestamp"] = round(now_s - 2.0 * (len(events) - n), 3)
    return events


def wait_applied(api: Api, user: str, before: dict[str, Any], timeout_s: float) -> tuple[dict[str, Any], bool]:
    """Poll the user's list until the speed layer's state shows (fresh state present, list changed).

    Returns the last list and whether the change was seen within ``timeout_s``.
    """
    ids_before = [i["item_id"] for i in before["items"]]
    deadline = time.monotonic() + timeout_s
    while True:
        after = api.recommendations(user)
        changed = [i["item_id"] for i in after["items"]] != ids_before
        if after["fresh_state_age_s"] is not None and changed:
            return after, True
        if time.monotonic() >= deadline:
            return after, False
        time.sleep(0.25)


def list_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the fresh events changed: items in and out of the list, and the count of items per source."""
    ids_b = [i["item_id"] for i in before["items"]]
    ids_a = [i["item_id"] for i in after["items"]]

    def sources(body: dict[str, Any]) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in body["items"]:
            out[item["source"]] = out.get(item["source"], 0) + 1
        return out

    return {
        "entered": [i for i in ids_a if i not in ids_b],
        "left": [i for i in ids_b if i not in ids_a],
        "kept": [i for i in ids_a if i in ids_b],
        "sources_before": sources(before),
        "sources_after": sources(after),
    }
