"""The trending scores serving keeps per snapshot version: the served version's and the one being swapped in."""

from __future__ import annotations

from serving_layer.trending_cache import TrendingCache
from tests.unit.rank.test_merge import make_model


def test_an_unchanged_refresh_of_the_served_version_keeps_it_past_the_next_prepare() -> None:
    served, abandoned, next_one = make_model("v1"), make_model("v2"), make_model("v3")
    cache = TrendingCache(half_life_s=3600.0, refresh_s=1.0, read_timeout_s=0.1)
    cache.prepare(served)
    first = cache.scores_for(served)
    cache.prepare(abandoned)  # prepared, never swapped in (its load failed)
    cache.prepare(served)  # a refresh of the served version that changed nothing
    assert cache.scores_for(served) is first  # the same object: answers cached with it stay valid
    cache.prepare(next_one)  # the next snapshot being swapped in
    assert cache.scores_for(served) is first, "the served version's scores were dropped while it is still served"
    assert cache.scores_for(next_one) is not None and cache.scores_for(abandoned) is None
