"""``[serving]``: the HTTP service."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from lambdarec.settings.catalog import CatalogSettings
from lambdarec.settings.feedback import FatigueSettings
from lambdarec.settings.section import Section


class MergeSettings(Section):
    """The merge's candidate pool: how many items each source brings before the re-rank scores them."""

    speed_top_n: int = Field(
        100, ge=1, description="Items the fresh fold-in vector brings: its top scores over the catalogue."
    )
    neighbours_per_seed: int = Field(
        20, ge=1, description="Precomputed neighbours taken per session or recent item (at most `batch.neighbours`)."
    )
    trending_top_n: int = Field(50, ge=1, description="Most-trending unseen items brought to the pool.")


class ServingSettings(Section):
    """The HTTP service that merges batch and speed and re-ranks with the session."""

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=1, le=65535, description="Port to bind.")
    workers: int = Field(1, ge=1, description="uvicorn worker processes.")
    http_parser: Literal["httptools", "h11"] = Field(
        "httptools",
        description="HTTP/1.1 parser: `httptools` (llhttp, in C; 1.2x to 1.6x the requests a core serves) or `h11` "
        "(pure Python). Both answer a head over `max_head_bytes` with 431.",
    )
    default_k: int = Field(10, ge=1, description="Items returned when `k` is not given.")
    max_k: int = Field(100, ge=1, description="Largest `k` a request may ask for.")
    weight_cf: float = Field(1.0, ge=0, description="Weight of the collaborative-filtering score.")
    weight_session: float = Field(0.5, ge=0, description="Weight of similarity to the session's items.")
    weight_trending: float = Field(0.1, ge=0, description="Weight of the trending score.")
    session_half_life_s: float = Field(1800.0, gt=0, description="Recency decay of session items.")
    mmr_lambda: float = Field(0.0, ge=0, le=1, description="MMR diversity trade-off; 0 turns diversity off.")
    snapshot_poll_s: float = Field(
        5.0, gt=0, description="How often serving checks whether the current snapshot moved."
    )
    store_timeout_ms: int = Field(100, ge=1, description="Timeout of one store call on the request path.")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body accepted.")
    max_batch: int = Field(1000, ge=1, description="Most users or events in one request.")
    ingest_key_hashes: list[str] = Field(
        default_factory=list, description="SHA-256 hex digests of API keys allowed to post events."
    )
    admin_key_hashes: list[str] = Field(
        default_factory=list, description="SHA-256 hex digests of API keys allowed to list and activate snapshots."
    )
    max_offset: int = Field(1000, ge=0, description="Largest `offset` a request may page to.")
    max_request_items: int = Field(
        100, ge=1, description="Most items in a request's `session_items` (or basket) and in its `exclude`."
    )
    max_id_chars: int = Field(256, ge=1, description="Longest user or item id a request may name.")
    trending_refresh_s: float = Field(
        5.0, gt=0, description="How often serving re-reads the trending counts in the background."
    )
    user_cache_size: int = Field(
        10000,
        ge=0,
        description="Users whose last store read is kept in memory, to serve them personalised lists "
        "(marked degraded) while the store is unavailable; 0 keeps none.",
    )
    store_retry_s: float = Field(
        0.5,
        gt=0,
        description="How often a background probe reads the store's current pointer; while the store is "
        "degraded, requests skip it and only this probe (and the snapshot and trending watchers) try it.",
    )
    store_threads: int = Field(8, ge=1, description="Threads per worker that run store calls with the timeout.")
    store_reads: Literal["auto", "thread", "inline"] = Field(
        "auto",
        description="How requests read the store. `thread`: in the store threads, under `store_timeout_ms`. "
        "`inline`: on the event loop, bounded by the backend's own timeout (`store.request_timeout_s`); a hop "
        "to a thread costs more than a local SQLite read (WAL readers never wait on writers). `auto`: inline "
        "for SQLite; for Cassandra, every read of a request sent at once without waiting (the driver's "
        "non-blocking requests, awaited on the event loop under `store_timeout_ms`, no thread per request).",
    )
    cassandra_reads: Literal["auto", "driver", "native"] = Field(
        "auto",
        description="What reads a user's fresh state from a Cassandra store on each request (with `store_reads` "
        "auto). `native`: the C++ driver (acsylla), its answers awaited on the event loop, about half of "
        "cassandra-driver's CPU per read, a third for a read of many users; serving refuses to start where acsylla "
        "cannot be imported. `driver`: cassandra-driver, as every other read. `auto`: native where acsylla can be "
        "imported, else the driver. Until the C++ driver connects, the driver reads and it is tried again every "
        "10 s; the log says which reads and why (`serving.cassandra_reads`).",
    )
    access_log: bool = Field(False, description="Log every request (uvicorn's access log); costs throughput.")
    # Store health (hysteresis): degraded after a sustained failure, healthy after a sustained success.
    store_fail_after: int = Field(
        3,
        ge=1,
        description="Failed or timed-out store calls in a row that put serving in degraded mode (requests skip "
        "the store and are served from memory, `/readyz` is 503); one slow answer under load does not, nor do "
        "requests that were in flight together and time out in the same slow moment (they count once).",
    )
    store_recover_after: int = Field(
        3, ge=1, description="Successful store calls (probes) in a row that end degraded mode."
    )
    store_probe_timeout_ms: int = Field(
        1000,
        ge=1,
        description="Timeout of the background health probe; longer than `store_timeout_ms`, so a busy store is "
        "not taken for a dead one.",
    )
    max_url_bytes: int = Field(
        65536, ge=1024, description="Longest request URL (path and query) accepted; longer ones get 414."
    )
    max_head_bytes: int = Field(
        2 << 20,
        ge=16384,
        description="Most bytes of a request line and headers the server reads before giving up on a request "
        "(either `http_parser`): a longer head is answered 431 with a body naming this setting. Keep it above "
        "`max_url_bytes` so long URLs get a 414 answer.",
    )
    fresh_boost: float = Field(
        2.0,
        ge=0,
        description="Drift: the session weight is multiplied by 1 + fresh_boost x e / (1 + e), e the "
        "recency-weighted count (halving every `session_half_life_s`) of the user's fresh events and session "
        "items, so recent evidence outweighs the nightly list when it disagrees with it; 0 turns it off. 2 lifts the "
        "new taste's share of the top-10 on the synthetic drift log from .49 to .72 by day 2 after the shift, and "
        "warm-user NDCG@10 on MovieLens-100K from .073 to .085.",
    )
    merge: MergeSettings = Field(default_factory=MergeSettings, description="The merge's candidate pool.")
    catalog_poll_s: float = Field(
        5.0, gt=0, description="How often serving reads the catalog's changes: an upsert is served within this."
    )
    catalog: CatalogSettings = Field(
        default_factory=CatalogSettings, description="The item catalog's bounds and the global business rules."
    )
    # ---- negative feedback and fatigue (lambdarec.rank.feedback) ----
    dislike_neighbour_factor: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A disliked item is never recommended to that user again, and the scores of its "
        "`dislike_neighbours` nearest neighbours are multiplied by this; 1 demotes none.",
    )
    dislike_neighbours: int = Field(
        10, ge=0, description="Nearest neighbours of a disliked item that are demoted (at most `batch.neighbours`)."
    )
    fatigue: FatigueSettings = Field(default_factory=FatigueSettings, description="Impression fatigue.")
    # ---- the answer cache (serving_layer.answer_cache) ----
    answer_cache_mb: float = Field(
        32.0,
        ge=0,
        description="Memory per worker for users' kept lists (a list of 10 items takes about 2.2 KB), so that a "
        "repeat of a request with nothing changed is a lookup: the user's fresh state (read on every request, or "
        "kept until the store lists a change: `fresh_state_keep`), "
        "the snapshot, trending, the catalog's view and the experiment arm must all be the ones it was ranked "
        "with; the least recently used lists go first; 0 turns it off.",
    )
    fresh_state_cache_mb: float = Field(
        32.0,
        ge=0,
        description="Memory per worker for users' fresh states as decoded from the store: a state read again (on "
        "every request, or once changed with `fresh_state_keep`) is decoded only when its stored bytes changed "
        "since it was last read (a decoded state "
        "takes about 5 times its stored size); the least recently read go first; 0 turns it off.",
    )
    fresh_state_keep: Literal["auto", "off"] = Field(
        "auto",
        description="`auto`: where the store lists which users' fresh state each write changed (Cassandra), keep "
        "each user's state in memory and read it again only once the list names them, polled every "
        "`fresh_changes_poll_ms` (the first event of a user quiet for `fresh_state_active_s` then shows about "
        "one poll after its state is written, instead of at once); while the list cannot be read, every request "
        "reads the store. `off`: every request reads its user's fresh state (and the store is not polled).",
    )
    fresh_state_keep_mb: float = Field(
        64.0,
        ge=0,
        description="Memory per worker for kept fresh states (`fresh_state_keep`), each counted at about what its "
        "decoded objects hold (about 4.4 KB for 3 events, 3 recent items and a 64-factor vector); the least "
        "recently used go first; 0 keeps none.",
    )
    fresh_state_keep_s: float = Field(
        30.0,
        gt=0,
        description="Longest a kept fresh state is used without being read again, even when no change was listed: "
        "a bound on a change the list missed, e.g. one written by a release that does not list changes. Each is "
        "kept between half of it and all of it, at random, so that states are not read again in bursts.",
    )
    fresh_state_active_s: float = Field(
        5.0,
        ge=1.0,
        le=3600,
        description="A user whose fresh state changed within this long is read from the store on every request, "
        "not kept (`fresh_state_keep`): a user acting now sees each new event in their next list with no poll in "
        "between; and a read at `LOCAL_ONE` that reached a replica the quorum write did not wait for is never "
        "kept. At least 1 s.",
    )
    fresh_changes_poll_ms: int = Field(
        50, ge=5, le=1000, description="How often each worker reads the store's list of changed fresh states "
        "(`fresh_state_keep`): a bound on how late a new state is served. Kept states are used only while the "
        "last poll answered within a second (or 4 intervals, if longer).",
    )  # fmt: skip
    fresh_changes_overlap_s: float = Field(
        2.0,
        ge=1.5,
        le=600,
        description="Each poll of the change list reads again the changes stamped in this window before the "
        "previous poll (skipping those seen), so that a change that landed late, or came from a host whose clock "
        "is a little behind, is still seen: writers list a change again under a new stamp until one write lands "
        "within 1 s of its stamp, so this must exceed 1 s plus the hosts' clock skew (at least 1.5 s).",
    )
    answer_cache_ttl_s: float = Field(
        5.0,
        gt=0,
        description="Longest a cached list is reused even when nothing changed: it bounds how far the time decay "
        "of session and fresh events (half-life `session_half_life_s`) and fatigue may lag; no longer than "
        "serving already lags the snapshot, trending and catalog (`snapshot_poll_s`, `trending_refresh_s`, "
        "`catalog_poll_s`).",
    )

    @field_validator("ingest_key_hashes", "admin_key_hashes")
    @classmethod
    def _sha256_hex(cls, digests: list[str]) -> list[str]:
        bad = [d for d in digests if len(d) != 64 or any(c not in "0123456789abcdefABCDEF" for c in d)]
        if bad:
            raise ValueError(
                f"key hashes must be SHA-256 hex digests (64 hex characters; `lambdarec serve hash-key KEY` prints "
                f"one); got {len(bad)} that are not, e.g. one of {len(bad[0])} characters"
            )
        return [d.lower() for d in digests]
