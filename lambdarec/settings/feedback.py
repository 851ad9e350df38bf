"""Settings of negative feedback and impression fatigue: ``[serving.fatigue]`` and the speed layer's bounds on the
feedback it keeps per user (``[speed.feedback]``)."""

from __future__ import annotations

from pydantic import Field

from lambdarec.settings.section import Section


class FatigueSettings(Section):
    """An item shown often without a positive event is demoted: the user has seen it and passed."""

    after: int = Field(
        5,
        ge=1,
        description="Impressions (without a positive event on the item since) within `window_s` that make an "
        "item fatigued. At most `speed.feedback.impressions_per_item`.",
    )
    window_s: float = Field(
        86400.0,
        gt=0,
        description="The window, in event time before the request, the impressions must lie in; older ones stop "
        "counting, so the demotion wears off as they age.",
    )
    factor: float = Field(
        0.5, ge=0, le=1, description="A fatigued item's score is multiplied by this; 1 turns fatigue off."
    )


class SpeedFeedbackSettings(Section):
    """How much negative feedback and impression history the speed layer keeps per user (in the fresh state)."""

    max_hidden: int = Field(
        1000, ge=0, description="Hidden items kept per user, newest first; a hidden item is never recommended again."
    )
    max_disliked: int = Field(200, ge=0, description="Disliked items kept per user, newest first.")
    max_shown_items: int = Field(
        500, ge=0, description="Items whose impressions are kept per user (the most recently shown ones)."
    )
    impressions_per_item: int = Field(
        20, ge=1, description="Newest impressions kept per item (at least `serving.fatigue.after`)."
    )
    impressions_kept_s: float = Field(
        7 * 86400.0,
        gt=0,
        description="Impressions older than this in event time (before the user's newest event) are dropped; at "
        "least `serving.fatigue.window_s`.",
    )
    own_consumer: bool = Field(
        False,
        description="Impressions are applied by a consumer of their own (`lambdarec speed run --impressions`, "
        "group `impressions_group`) into a store row of their own per user, which serving joins to the user's fresh "
        "row; the positive-event consumer skips them after a look at `event_type`, so ten times the click volume of "
        "impressions does not slow it. Run both consumers when set. Off: one consumer applies every event.",
    )
    impressions_group: str | None = Field(
        None, description="Consumer group of the impressions consumer. Unset: `log.consumer_group` + `-impressions`."
    )
    apart_poll_records: int = Field(
        16000,
        ge=1,
        description="Most records the positive-event consumer polls at once when impressions have their own consumer: "
        "it skips them, so it polls more to keep about `speed.poll_max_records` positive events per batch.",
    )
    impressions_poll_records: int = Field(
        10000,
        ge=1,
        description="Most records the impressions consumer (`lambdarec speed run --impressions`) polls at once: a "
        "user's impressions in one poll cost one read and one write of their impressions row, so a larger poll "
        "costs less per impression (fatigue is seen up to one poll later).",
    )
    impressions_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="How much the impressions consumer raises its CPU niceness by at start (`lambdarec speed run "
        "--impressions`; added to the niceness it was started with, capped at 19): where it shares cores with the "
        "positive-event consumer, the positive path gets the CPU first and fatigue waits (its lag is its own). 0 "
        "keeps the priority it was started with.",
    )
    impressions_linger_ms: int = Field(
        500,
        ge=0,
        description="How long the impressions consumer keeps polling after its first record before it applies a "
        "batch (unless `impressions_poll_records` came sooner): a user's impressions in one batch cost one read and "
        "one write of their row, so at ten times the click volume a fuller batch costs less CPU per impression; "
        "fatigue is seen up to this much later. 0: apply whatever one poll returns.",
    )
    impressions_claims_per_txn: int = Field(
        500,
        ge=1,
        description="On the SQLite store, most event ids the impressions consumer claims in one transaction. Its "
        "claims live in `shown.sqlite` beside its rows (impressions are claimed apart from every other event), so "
        "the positive-event consumer never waits for them; smaller transactions hold that file's write lock for "
        "less time at once (its other writers, the consumer's row writes and `lambdarec forget`, wait less).",
    )
