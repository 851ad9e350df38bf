"""``[speed]`` and ``[events]``: the speed layer and the bounds every event is held to."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from lambdarec.settings.feedback import SpeedFeedbackSettings
from lambdarec.settings.section import Section


class SpeedSettings(Section):
    """The consumer that turns fresh events into per-user and per-item state."""

    recent_items: int = Field(50, ge=1, description="Recent items kept per user.")
    recent_ttl_s: float = Field(
        7 * 86400.0, gt=0, description="Recent items older than this (in event time, before the newest) are dropped."
    )
    history_cache_users: int = Field(
        100_000,
        ge=0,
        description="Users' batch rows the consumer keeps in memory per snapshot (LRU); 0 reads each time.",
    )
    max_fresh_events: int = Field(
        1000, ge=1, description="Fresh events since the snapshot's cut-off kept per user for fold-in; oldest dropped."
    )
    poll_max_records: int = Field(
        4000,
        ge=1,
        description="Most events taken from the log per poll. A poll takes what has arrived, so this bounds only a "
        "backlog's batches, whose fixed costs (on Cassandra, one claim round per bucket partition and the requests) "
        "more events then share.",
    )
    max_wait_ms: int = Field(100, ge=1, description="Longest wait before a partial batch is applied and committed.")
    trending_half_life_s: float = Field(6 * 3600.0, gt=0, description="Half-life of trending counts, in event time.")
    future_tolerance_s: float = Field(
        300.0, ge=0, description="Events stamped further than this in the future go to the dead-letter log."
    )
    # Waiting out a log or store that does not answer (capped exponential backoff with jitter).
    retry_initial_s: float = Field(
        0.2, gt=0, description="First wait before retrying a log or store call that failed; doubles each time."
    )
    retry_max_s: float = Field(10.0, gt=0, description="Longest wait between retries of a failing log or store.")
    give_up_after_s: float = Field(
        0.0,
        ge=0,
        description="Exit (non-zero) once the log or the store has failed for this long without a break; "
        "0 retries forever, resuming by itself when it answers again.",
    )
    fresh_item_users: int = Field(
        500,
        ge=1,
        description="Users kept per brand-new item and log partition (the strongest) to solve its vector from.",
    )
    feedback: SpeedFeedbackSettings = Field(
        default_factory=SpeedFeedbackSettings, description="Negative feedback and impressions kept per user."
    )
    gc_young_threshold: int = Field(
        10_000,
        ge=0,
        description="The consumer process's youngest garbage-collector generation runs after this many new "
        "objects (Python's default 700): a poll allocates hundreds of thousands, and collecting every 700 cost "
        "15-20% of the consumer's CPU. Only ever raised; 0 leaves the interpreter's setting.",
    )


class EventSettings(Section):
    """Bounds on the values an event may carry, and how the speed layer treats repeated and failing events.

    Every producer path (HTTP ingest, `events send`, the speed consumer reading the log) applies the same bounds:
    an event outside them is refused with the reason (HTTP: in the per-event report; log: dead-letter log).
    """

    max_weight: float = Field(
        1000.0, gt=0, description="Largest `weight` an event may carry; weights must be finite and in [0, this]."
    )
    min_timestamp_s: float = Field(
        631152000.0,
        ge=0,
        description="Earliest event time accepted, in epoch seconds (default 1990-01-01T00:00:00Z, before the public "
        "datasets people replay, such as MovieLens). The latest is now plus `speed.future_tolerance_s`.",
    )
    max_id_chars: int = Field(
        256, ge=1, le=65536, description="Longest `event_id`, `user_id`, `item_id` or `session_id`, in characters."
    )
    id_pattern: str = Field(
        r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$",
        description="Regular expression every id must match in full. The default refuses blank ids, leading or "
        "trailing whitespace and control characters.",
    )
    max_json_depth: int = Field(
        8, ge=2, le=64, description="Deepest nesting of arrays and objects in one event (the event object is 1)."
    )
    dedup_window_s: float = Field(
        86400.0,
        ge=0,
        description="A repeated `event_id` seen within this long (store time) changes nothing in fresh state or "
        "trending, across restarts and consumers; the ids are kept this long (where: `events.dedup`). 0 turns "
        "it off.",
    )
    dedup: Literal["auto", "store", "state"] = Field(
        "auto",
        description="Where the speed consumer looks a repeated `event_id` up. `state`: in the user's own fresh "
        "state, which it reads and writes anyway: no request of its own; exact for a resend by the same user (a "
        "user's events share a log partition, so one writer); the same id from another user is that user's "
        "event; after `forget` the user's window starts again. `store`: claims in the store, one conditional "
        "write per id (on Cassandra a Paxos round per id bucket a poll: about a third of the node's CPU per "
        "event, measured), exact for an id repeated by any user. `auto`: `state` from when the store says no "
        "claim of an earlier release can still be live (at once in a new namespace; one window after the first "
        "consumer of this release ran in one that holds claims), `store` until then. Impressions keep their "
        "claims in the store in every mode, and every mode records the ids in the states.",
    )
    dedup_ids_per_user: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Most event ids one user's fresh state keeps (8-byte hashes with their append second, about "
        "15 bytes each; the newest kept; impressions' ids are not kept): a user sending more within "
        "`dedup_window_s` is checked over their newest this many where repeats are looked up in states.",
    )
    max_consecutive_failures: int = Field(
        100,
        ge=1,
        description="The speed consumer stops with an error after this many records in a row fail with an "
        "unexpected error (a bug, not a bad event), instead of dead-lettering the whole log; fewer are "
        "dead-lettered one by one and the consumer moves on.",
    )
    max_impression_items: int = Field(
        100, ge=1, le=100, description="Most `item_ids` one `impression` event may list (unique ids)."
    )

    @field_validator("id_pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return pattern
