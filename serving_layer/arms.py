"""Experiments in serving: which arm a request falls in, and the arm's inputs to the one ranking path.

A request is assigned by its user id (or, for an anonymous request, its ``session_id``) with
:func:`lambdarec.experiments.served_assignment`; the arm's plan then gives the merge weights, the popular-only
control's inputs, or a pinned snapshot, loaded once in a worker thread and kept while the process runs. Every
response says ``experiment`` and ``arm`` in its body and in the ``X-Lambdarec-Experiment`` and
``X-Lambdarec-Arm`` headers. A pinned snapshot that cannot be loaded (pruned, unreadable) is logged and the arm
is served from the current snapshot meanwhile (its list says which ``snapshot`` it came from); loading is
retried every ``serving.snapshot_poll_s``.

Example
-------
>>> served = await arms.serve(query, service.served_model(), service.store, trending_rows)    # doctest: +SKIP
>>> served.query.arm, served.model.version
('diverse', '20240201T000000000Z-a1b2c3')
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from prometheus_client import CollectorRegistry, Counter

from lambdarec.experiments import ArmPlan, Unit, arm_plans, popular_only_inputs, served_assignment
from lambdarec.logs import get_logger
from lambdarec.model.rows import TrendingItem, UserState
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.rank.merge import MergeWeights
from lambdarec.rank.trending import TrendingScores
from lambdarec.settings import Settings
from lambdarec.store import OnlineStore
from serving_layer.model_cache import load_model
from serving_layer.recommend import RecommendQuery
from serving_layer.trending_cache import trending_for

log = get_logger(__name__)

ASSIGNMENTS_KEPT = 65536  # users and sessions whose arm is remembered per process
EXPERIMENT_HEADER = "X-Lambdarec-Experiment"
ARM_HEADER = "X-Lambdarec-Arm"


class ArmMetrics:
    """Per-arm counters: lists served, impressions stamped, and events ingested carrying an arm."""

    def __init__(self, registry: CollectorRegistry):
        self.lists = Counter(
            "lambdarec_experiment_lists_total", "Lists served in an experiment arm.", ["experiment", "arm"],
            registry=registry,
        )  # fmt: skip
        self.impressions = Counter(
            "lambdarec_experiment_impressions_total",
            "Items shown in lists whose impressions serving stamped, by experiment arm.",
            ["experiment", "arm"],
            registry=registry,
        )
        self.events = Counter(
            "lambdarec_experiment_events_total",
            "Events accepted by POST /v1/events whose context names an experiment arm, by event type.",
            ["experiment", "arm", "event_type"],
            registry=registry,
        )


@dataclass(frozen=True)
class Served:
    """How one request is ranked: the query stamped with its arm, the snapshot, the weights and the trending."""

    query: RecommendQuery
    model: SnapshotModel
    weights: MergeWeights
    trending: TrendingScores | None
    plan: ArmPlan | None = None

    def inputs(self, state: UserState) -> tuple[RecommendQuery, UserState]:
        """The query and state the merge gets: the popular-only control's are stripped of personal inputs."""
        if self.plan is None or not self.plan.popular_only:
            return self.query, state
        state, exclude = popular_only_inputs(state, self.query.session_items, self.query.exclude)
        return replace(self.query, session_items=(), exclude=exclude), state


class Arms:
    """The experiments' arm plans in one serving process, and the pinned snapshots their arms serve."""

    def __init__(self, settings: Settings, registry: CollectorRegistry):
        self.experiments = settings.experiments
        self.plans = arm_plans(settings)
        self.metrics = ArmMetrics(registry)
        self._lists = {key: self.metrics.lists.labels(*key) for key in self.plans}  # bound once: no lookup per list
        self.retry_s = settings.serving.snapshot_poll_s
        self.trending_half_life_s = settings.speed.trending_half_life_s
        self.trending_refresh_s = settings.serving.trending_refresh_s
        self._pinned: dict[str, SnapshotModel] = {}
        self._pinned_trending: dict[str, tuple[float, TrendingScores]] = {}
        self._failed: dict[str, float] = {}  # pinned version -> when it last failed to load
        self._lock = asyncio.Lock()
        # an assignment is a pure function of the id: the recent ones are remembered (hashing costs ~15 us)
        self._plan_of = functools.lru_cache(maxsize=ASSIGNMENTS_KEPT)(self._assigned_plan)

    def plan(self, user_id: str | None, session_id: str | None) -> ArmPlan | None:
        """The arm plan of a user, or of an anonymous session; None outside every enabled experiment."""
        return self._plan_of(user_id or session_id, "user" if user_id else "session")

    def _assigned_plan(self, unit_id: str | None, unit: Unit) -> ArmPlan | None:
        found = served_assignment(self.experiments, unit_id, unit)
        return None if found is None else self.plans[found.experiment, found.arm]  # type: ignore[index]

    def count_events(self, events: list[object], rejected: set[int]) -> None:
        """Count the accepted events whose ``context`` names a configured experiment arm (other values are not
        counted, so callers cannot grow the metric's label set)."""
        for n, event in enumerate(events):
            context = event.get("context") if isinstance(event, dict) and n not in rejected else None
            if not isinstance(context, dict):
                continue
            key = (context.get("experiment"), context.get("arm"))
            if key in self.plans:
                self.metrics.events.labels(*key, str(event.get("event_type"))).inc()

    async def serve(
        self,
        query: RecommendQuery,
        current: SnapshotModel,
        store: Callable[[], OnlineStore],
        weights: MergeWeights,
        trending: Callable[[SnapshotModel], TrendingScores | None],
        trending_rows: Callable[[], dict[str, TrendingItem]],
    ) -> Served:
        """The arm of ``query`` and what it ranks with. ``weights``/``trending`` are the base ones."""
        plan = self.plan(query.user_id, query.session_id) if self.experiments else None
        if plan is None:
            return Served(query, current, weights, trending(current))
        self._lists[plan.experiment, plan.arm].inc()
        query = replace(query, experiment=plan.experiment, arm=plan.arm)
        model = await self._model(plan, current, store)
        if plan.popular_only:
            scores = None
        elif model is current:
            scores = trending(current)
        else:
            scores = self._trending_for(model, trending_rows)
        return Served(query, model, plan.weights, scores, plan)

    async def _model(self, plan: ArmPlan, current: SnapshotModel, store: Callable[[], OnlineStore]) -> SnapshotModel:
        version = plan.snapshot
        if version is None or version == current.version:
            return current
        if (model := self._pinned.get(version)) is not None:
            return model
        if time.monotonic() - self._failed.get(version, -self.retry_s) < self.retry_s:
            return current
        async with self._lock:
            if (model := self._pinned.get(version)) is not None:
                return model
            try:
                model = await asyncio.to_thread(load_model, store(), version)
            except Exception as exc:  # the arm keeps serving, from the current snapshot, until it loads
                self._failed[version] = time.monotonic()
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("serving.pinned_snapshot_unavailable", experiment=plan.experiment, arm=plan.arm,
                            snapshot=version, reason=reason, served=current.version)  # fmt: skip
                return current
            self._pinned[version] = model
            log.info("serving.pinned_snapshot_loaded", experiment=plan.experiment, arm=plan.arm, snapshot=version)
            return model

    def _trending_for(self, model: SnapshotModel, rows: Callable[[], dict[str, TrendingItem]]) -> TrendingScores | None:
        """Trending over a pinned snapshot's items, re-scored at most every ``serving.trending_refresh_s``."""
        now = time.monotonic()
        kept = self._pinned_trending.get(model.version)
        if kept is None or now - kept[0] >= self.trending_refresh_s:
            current_rows = rows()
            if not current_rows:
                return None
            kept = (now, trending_for(current_rows, model, self.trending_half_life_s))
            self._pinned_trending[model.version] = kept
        return kept[1]


def arm_headers(query: RecommendQuery) -> dict[str, str]:
    """The experiment and arm headers of one list's response (none outside experiments)."""
    if query.experiment is None or query.arm is None:
        return {}
    return {EXPERIMENT_HEADER: query.experiment, ARM_HEADER: query.arm}
