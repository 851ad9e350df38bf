"""Brand-new items, dislikes, hides and impression fatigue through the whole loop on real backends: events into the
log, the speed consumer, serving over HTTP. Runs on SQLite store + SQLite log, and on Cassandra + Kafka.

The issue's test: a new item with 50 interactions from one taste cluster appears in the top-20 of at least half of
that cluster's active users, and in trending, before the next nightly run.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from batch_layer.job import run_batch
from batch_layer.synth import SynthLog, SynthSpec, synthesize
from lambdarec.eventlog import open_log
from lambdarec.events import Event
from lambdarec.settings import Settings
from serving_layer.auth import hash_key
from speed_layer.consumer import SpeedConsumer
from tests.integration.speed.backends import backend_settings
from tests.unit.serving.conftest import serving, wait_for

AS_OF = datetime(2024, 2, 1, tzinfo=UTC)
NEW = "new-item-1"


@pytest.fixture(scope="module")
def synth() -> SynthLog:
    return synthesize(SynthSpec(users=1500, items=300, events=45_000, clusters=6, max_tastes=1, seed=11))


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory, synth: SynthLog) -> Path:
    path = tmp_path_factory.mktemp("feedback") / "log.parquet"
    synth.events.write_parquet(path)
    return path


@pytest.fixture(params=["embedded", "real"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    s = {
        "batch": {"top_k": 50, "train": {"iterations": 8, "factors": 16}, "lock_ttl_s": 5},
        "serving": {"trending_refresh_s": 0.1, "snapshot_poll_s": 0.1, "ingest_key_hashes": [hash_key("k")]},
        "store": {"current_cache_s": 0},
    }
    return backend_settings(request, tmp_path, s, "feedback")


def cluster_users(synth: SynthLog) -> tuple[int, list[str]]:
    """The cluster with the most users, and its users (each draws every session from their one cluster)."""
    clusters = synth.tastes[:, 0]
    cluster = Counter(clusters.tolist()).most_common(1)[0][0]
    seen = set(synth.events["user_id"].unique().to_list())
    return cluster, [f"u{u}" for u in np.flatnonzero(clusters == cluster) if f"u{u}" in seen]


def send(settings: Settings, events: list[Event]) -> None:
    with open_log(settings) as log:
        log.ensure_topic()
        log.append(events)
    with SpeedConsumer(settings) as consumer:
        consumer.run(until_idle_s=3.0)


def event(n: int, user: str, item: str, etype: str, ts: float, items: tuple[str, ...] = ()) -> Event:
    return Event(event_id=f"fb-{n}-{secrets.token_hex(3)}", user_id=user, item_id=item, event_type=etype,
                 timestamp=ts, item_ids=items)  # fmt: skip


def top(client, user: str, k: int = 20, explain: bool = False) -> list[dict]:
    response = client.get(f"/v1/users/{user}/recommendations", params={"k": k, "explain": explain})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_new_item_dislike_hide_and_fatigue_reach_serving(settings: Settings, log_file: Path, synth: SynthLog) -> None:
    run_batch(settings, interactions=str(log_file), as_of=AS_OF, force=True, progress=False)
    cluster, members = cluster_users(synth)
    assert len(members) >= 120
    buyers, active = members[:50], members[50:110]
    popular_in_cluster = (
        synth.events.filter(pl.col("item_id").is_in([f"i{i}" for i in np.flatnonzero(synth.item_cluster == cluster)]))
        ["item_id"].value_counts(sort=True)["item_id"].head(10).to_list()
    )  # fmt: skip
    now = time.time() - 600
    events = [event(n, u, NEW, "purchase", now + n) for n, u in enumerate(buyers)]
    for n, u in enumerate(active):  # recent activity in their cluster: a fresh vector each
        events += [event(1000 + 2 * n, u, popular_in_cluster[n % 10], "view", now + 100 + n),
                   event(1001 + 2 * n, u, popular_in_cluster[(n + 3) % 10], "click", now + 101 + n)]  # fmt: skip
    send(settings, events)

    with serving(settings) as client:
        service = client.app.state.service
        wait_for(lambda: NEW in service.served_model().item_index, "the new item to be served", timeout_s=20)
        model = service.served_model()
        assert model.fresh_items >= 1 and model.version == service.models.model.version
        hits = sum(NEW in [r["item_id"] for r in top(client, u)] for u in active)
        assert hits >= len(active) / 2, f"{hits} of {len(active)} active users of the cluster got {NEW}"
        scores = service.trending.scores_for(model)
        assert scores is not None and NEW in model.item_ids[scores.order[:10]].tolist()
        similar = client.get(f"/v1/items/{NEW}/similar", params={"k": 5})
        assert similar.status_code == 200, similar.text
        assert any(r["item_id"] in popular_in_cluster for r in similar.json()["items"])
        assert NEW not in [r["item_id"] for r in top(client, buyers[0])]  # they have it already

        # negative feedback and fatigue from one active user, seen by their next list
        user = active[0]
        first = [r["item_id"] for r in top(client, user, k=10)]
        hidden, disliked, shown = first[0], first[1], first[2]
        later = time.time() - 60
        send(
            settings,
            [event(5000, user, hidden, "hide", later), event(5001, user, disliked, "dislike", later + 1)]
            + [event(5002 + n, user, shown, "impression", later + 2 + n, (shown, first[5])) for n in range(6)],
        )
        # seen by their next list once serving knows of the write: at once where every request reads the store
        # (SQLite), within a poll of the store's change list where states are kept (Cassandra)
        lists: list[list[dict]] = []

        def reached() -> bool:
            lists.append(top(client, user, k=100, explain=True))
            return not {hidden, disliked} & {r["item_id"] for r in lists[-1]}

        wait_for(reached, "the hide and the dislike to reach the user's list", timeout_s=10)
        after = lists[-1]
        ids = [r["item_id"] for r in after]
        by_id = {r["item_id"]: r for r in after}
        assert by_id[shown]["components"]["fatigue"] == pytest.approx(0.5)
        assert ids.index(shown) > 2  # it was third
        assert "shown 6 times without a click" in by_id[shown]["reason"]
        demoted = [r for r in after if r["components"]["dislike"] < 1]
        assert all(f"similar to {disliked}, which you disliked" in r["reason"] for r in demoted)
