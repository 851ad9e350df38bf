"""Batched scoring gives the lists of the plain path: each event scored at once, one fold-in and one merge per
variant through serving's ``rank``, across batches of any size and a snapshot flip."""

from __future__ import annotations

import gc
import random
from dataclasses import replace

import pytest
from msgspec import structs

from lambdarec.events import Event
from lambdarec.rank.merge import MergeWeights, Ranked
from lambdarec.settings import SpeedSettings
from replay.online import OnlineState
from replay.scoring import BatchScorer, ScoredEvent
from replay.variants import Variant, recommend, standard_variants
from serving_layer.recommend import RecommendQuery, rank
from serving_layer.user_cache import UserState
from tests.unit.replay.conftest import RowStore, make_model, user_row

WEIGHTS = {"view": 1.0, "click": 2.0}
K = 8
VARIANTS = [
    *standard_variants(MergeWeights(cf=1.0, session=0.8, trending=0.3)),
    replace(standard_variants(MergeWeights(session=0.5), ["lambda"], fold_in=False)[0], name="lambda-no-fold-in"),
]


def _log(n: int = 240, seed: int = 5) -> list[Event]:
    """Events of eight users (two the snapshot knows) over a day, some in sessions, some clicks."""
    rng = random.Random(seed)
    t, out = 2000.0, []
    for i in range(n):
        t += rng.choice([5.0, 60.0, 900.0, 4000.0])
        user = f"u{rng.randrange(8)}"
        out.append(
            Event(
                event_id=f"e{i}",
                user_id=user,
                item_id=f"i{rng.randrange(30)}",
                event_type=rng.choice(["view", "view", "click"]),
                timestamp=t,
                weight=1.0,
                session_id=f"{user}-s{int(t // 7200)}" if i % 3 else None,
            )
        )
    return out


def _store() -> RowStore:
    return RowStore({"u0": user_row("u0", [5, 6, 7, 8, 9, 10], [0, 1]), "u1": user_row("u1", [2, 3, 11], [4])})


def _plain_ranked(variant: Variant, online: OnlineState, event: Event) -> list[Ranked]:
    """The plain path: the user's solved state read now, one merge for this variant (as replay did per event)."""
    now, user = event.timestamp, event.user_id
    fresh = online.state(user)
    session = online.session(user, now, event.session_id) if variant.session else []
    trending = online.trending(now) if variant.kind == "lambda" and variant.trending else None
    if variant.kind == "batch":
        fresh, session = None, []
    elif fresh is not None and not variant.fold_in:
        fresh = type(fresh)(user_id=fresh.user_id, events=fresh.events, recent=fresh.recent, basis=online.model.version)
    query = RecommendQuery(user, K, session_items=tuple(i for i, _ in session), exclude=online.touched(user))
    ranked, _fallback = rank(
        online.model, query, UserState(online.history(user), fresh), weights=variant.weights, trending=trending,
        now_s=now,
    )  # fmt: skip
    return ranked


def _plain_popular(online: OnlineState, event: Event) -> list[str]:
    user = event.user_id
    state = {"row": online.history(user), "fresh": online.state(user), "session": [], "trending": None}
    popular = VARIANTS[0]
    return recommend(
        popular, online.model, **state, now_s=event.timestamp, k=K, user_id=user, exclude=online.touched(user)
    )


def _same_up_to_ties(got: list[str], plain: list[Ranked], tol: float = 1e-5) -> bool:
    """Ids equal, except that items whose plain scores are within ``tol`` may swap places (or, at the cut-off,
    be replaced by an item tied with them)."""
    if len(got) != len(plain):
        return False
    start = 0
    while start < len(plain):
        end = start + 1
        while end < len(plain) and abs(plain[end].score - plain[end - 1].score) <= tol:
            end += 1
        group = {r.item_id for r in plain[start:end]}
        if end < len(plain) and set(got[start:end]) != group:
            return False
        start = end
    return True


def _with_feedback(events: list[Event]) -> list[Event]:
    """Every fifth event a hide, a dislike or a weighted impression (``FEEDBACK_WEIGHTS``: it counts as a positive
    event, so the user's fresh state keeps an item the user did not touch)."""
    kinds = ["hide", "dislike", "impression"]
    return [structs.replace(e, event_type=kinds[n // 5 % 3]) if n % 5 == 4 else e for n, e in enumerate(events)]


FEEDBACK_WEIGHTS = {**WEIGHTS, "impression": 0.5}


@pytest.mark.parametrize("feedback", [False, True])
@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_batched_scoring_gives_the_plain_lists(batch: int, feedback: bool) -> None:
    """Without feedback the replay hands the touched items' indices for the fresh states' items too (no name is
    looked up); with feedback (a fresh state then names items the user did not touch) the names are looked up."""
    events, weights = (_with_feedback(_log()), FEEDBACK_WEIGHTS) if feedback else (_log(), WEIGHTS)
    first, second = make_model("v1", cutoff_s=1000.0), make_model("v2", cutoff_s=1500.0, seed=1)
    second.manifest["log_positions"] = {"0": 150}
    plain = OnlineState(_store(), first, SpeedSettings(), weights)
    fast = OnlineState(_store(), first, SpeedSettings(), weights)
    expected: list[dict[str, list[Ranked]]] = []
    got: list[tuple[ScoredEvent, dict[str, list[str]]]] = []
    scorer = BatchScorer(VARIANTS, K, lambda event, lists: got.append((event, lists)), batch=batch)
    plain_variants = [v for v in VARIANTS if v.kind != "popular"]
    popular: list[list[str]] = []
    for n, event in enumerate(events):
        if n == 150:  # a flip: the batch is ranked against the snapshot it was read from
            scorer.flush(fast)
            plain.switch(second)
            fast.switch(second)
        if n % 2 == 0:
            expected.append({v.name: _plain_ranked(v, plain, event) for v in plain_variants})
            popular.append(_plain_popular(plain, event))
            scorer.add(fast, event.user_id, event.item_id, event.timestamp, event.session_id)
        plain.apply([event])
        fast.apply([event])
    scorer.flush(fast)
    assert fast.touched_holds_fresh is not feedback
    assert len(got) == len(expected) == 120
    assert [e.target for e, _ in got] == [e.item_id for n, e in enumerate(events) if n % 2 == 0]
    personal = 0
    for (_event, lists), plain_lists, plain_popular in zip(got, expected, popular, strict=True):
        for name, ranked in plain_lists.items():
            assert _same_up_to_ties(lists[name], ranked), (name, lists[name], [r.item_id for r in ranked])
            personal += ranked[0].source != "popular"
        assert lists["popular"] == plain_popular and len(plain_popular) == K
    assert personal > 200  # the lists come from fresh vectors, sessions and batch rows, not only the fallback


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_pauses_while_a_flush_ranks_and_is_left_as_it_was(enabled: bool) -> None:
    online = OnlineState(_store(), make_model("v1", cutoff_s=1000.0), SpeedSettings(), WEIGHTS)
    during: list[bool] = []
    scorer = BatchScorer(VARIANTS, K, lambda event, lists: during.append(gc.isenabled()), batch=1000)
    for event in _log(40):
        scorer.add(online, event.user_id, event.item_id, event.timestamp, event.session_id)
        online.apply([event])
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        scorer.flush(online)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
    assert during == [False] * 40
