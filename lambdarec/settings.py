"""One settings tree for every layer, read from a TOML file and ``LAMBDAREC_*`` environment variables.

Precedence, highest first: keyword overrides (CLI flags), environment variables, the TOML file, defaults.
Environment variables name a field by its path with ``__`` between parts, e.g. ``LAMBDAREC_STORE__URL`` or
``LAMBDAREC_BATCH__FACTORS``. The file is ``--config PATH`` or ``LAMBDAREC_CONFIG``.

Every field carries its default and a description; ``docs/configuration.md`` is generated from them.

Example
-------
>>> s = Settings.load(overrides={"batch": {"factors": 32}})
>>> s.batch.factors
32
"""

from __future__ import annotations

import contextvars
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from lambdarec.masking import mask_secrets, mask_url, register_secret

ENV_PREFIX = "LAMBDAREC_"
CONFIG_ENV = "LAMBDAREC_CONFIG"
# Variables with our prefix that are not settings: config path, test endpoints, service dirs, log output.
_NOT_SETTINGS = (
    CONFIG_ENV,
    "LAMBDAREC_TEST_",
    "LAMBDAREC_CACHE",
    "LAMBDAREC_SERVICES_",
    "LAMBDAREC_CASSANDRA_",
    "LAMBDAREC_KAFKA_",
    "LAMBDAREC_JAVA",
    "LAMBDAREC_MVN",
    "LAMBDAREC_LOG_LEVEL",
    "LAMBDAREC_LOG_FORMAT",
    "LAMBDAREC_SEAWEEDFS_",
)

STORE_SCHEMES = ("sqlite", "cassandra")
LOG_SCHEMES = ("sqlite", "kafka")


class ConfigError(ValueError):
    """A setting is unknown or invalid; the message names the key and what would be right."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_scheme(url: str, allowed: tuple[str, ...], what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in allowed:
        raise ValueError(
            f"{what} URL {mask_url(url)!r} has scheme {parts.scheme!r}; expected one of {', '.join(allowed)}"
        )
    if parts.scheme == "kafka" and "@" in parts.netloc:
        raise ValueError(f"{what} URL {mask_url(url)!r} carries credentials; set log.username and log.password instead")
    return url


class StoreSettings(_Section):
    """The online store: snapshots written by the batch layer, fresh state written by the speed layer."""

    url: str = Field(
        "sqlite:///var/store",
        description="Where the store lives. `sqlite:///relative/dir`, `sqlite:////absolute/dir`, or "
        "`cassandra://host1,host2:9042/keyspace?dc=DATACENTER`.",
    )
    username: str | None = Field(None, description="Cassandra user name (password authentication).")
    password: SecretStr | None = Field(None, description="Cassandra password. Masked in `config show`.")
    keep_versions: int = Field(3, ge=1, description="`snapshots prune` keeps this many newest published versions.")
    current_cache_s: float = Field(
        2.0, ge=0, description="How long a reader caches the current-version pointer before asking again."
    )
    write_concurrency: int = Field(
        64, ge=1, le=2048, description="Requests in flight per process for Cassandra bulk writes."
    )
    replication: dict[str, int] = Field(
        default_factory=lambda: {"replication_factor": 1},
        description="Keyspace replication for `store init`: `{replication_factor = N}` gives SimpleStrategy; "
        "a map of datacenter to replicas gives NetworkTopologyStrategy.",
    )
    write_consistency: str = Field("LOCAL_QUORUM", description="Cassandra consistency level for writes.")
    read_consistency: str = Field("LOCAL_ONE", description="Cassandra consistency level for reads.")
    snapshot_ttl_s: int = Field(
        7 * 86400,
        ge=3600,
        description="Default TTL of snapshot tables; must exceed twice `batch.period_hours` so retired "
        "versions expire without deletes.",
    )
    fresh_ttl_s: int = Field(7 * 86400, ge=60, description="TTL of the speed layer's per-user and per-item state.")
    connect_timeout_s: float = Field(10.0, gt=0, description="Timeout for opening a store connection.")
    request_timeout_s: float = Field(5.0, gt=0, description="Timeout for one store request.")
    namespace: str = Field(
        "default",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Namespace inside the store: its own snapshot history, current pointer, fresh state and "
        "locks. Lets several catalogues (or test runs) share one keyspace or directory.",
    )
    read_concurrency: int = Field(
        32, ge=1, le=2048, description="Requests in flight per call for Cassandra multi-key reads."
    )
    abandon_after_s: float = Field(
        86400.0,
        gt=0,
        description="A version still `writing` this long after it began counts as abandoned: `prune` retires it.",
    )
    protocol_version: int = Field(
        5, ge=3, le=5, description="CQL native protocol version: 5 for Cassandra 4.0 and later, 4 for 3.x."
    )
    activate_check_users: int = Field(
        1000,
        ge=0,
        description="User rows read and checked (checksum, item indices), evenly spread over the snapshot's users, "
        "before `snapshots activate` moves the pointer; its arrays and item rows are always checked whole. 0 "
        "checks no user row.",
    )
    reconnect_max_s: float = Field(
        2.0,
        gt=0,
        description="Longest wait between the Cassandra driver's attempts to reconnect to a host that went down "
        "(exponential from 0.1 s, capped here), so a store that comes back is used again within seconds.",
    )
    sqlite_mmap_mb: int = Field(
        1024,
        ge=0,
        description="SQLite: MiB of the snapshots file a connection reads through a memory map (`PRAGMA mmap_size`) "
        "instead of copying pages: a serving read of a user row costs about a third less. Mapped pages count in the "
        "process's resident memory (file-backed, dropped by the kernel under pressure) up to the file's size or "
        "this bound; 0 maps none.",
    )
    sqlite_fresh_mmap_mb: int = Field(
        0,
        ge=0,
        description="SQLite: the same for the fresh-state file, which grows with every user and item the speed layer "
        "sees; 0 (no map, the default) keeps the speed consumer's resident memory flat however many users it has seen.",
    )

    _scheme = field_validator("url")(lambda v: _check_scheme(v, STORE_SCHEMES, "store"))


class LogSettings(_Section):
    """The event log: fresh interactions flowing from producers to the speed layer."""

    url: str = Field(
        "sqlite:///var/events",
        description="Where events are appended. `sqlite:///relative/dir` or `kafka://host1:9092,host2:9092/topic`.",
    )
    consumer_group: str | None = Field(
        None,
        description="Consumer group whose positions the speed layer commits. Unset: `TOPIC-speed` on Kafka "
        "(so two deployments on one cluster never share a group), `lambdarec-speed` on SQLite.",
    )
    dead_letter: str | None = Field(
        None,
        description="Topic (Kafka) or table (SQLite) receiving bad events with the reason. Unset: "
        "`TOPIC-dead-letter` on Kafka, `lambdarec-dead-letter` on SQLite.",
    )
    partitions: int = Field(3, ge=1, description="Partitions when the speed layer creates the topic.")
    max_event_bytes: int = Field(16384, ge=256, description="Events larger than this go to the dead-letter log.")
    username: str | None = Field(None, description="Kafka SASL user name.")
    password: SecretStr | None = Field(None, description="Kafka SASL password. Masked in `config show`.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = Field(
        None, description="Kafka security protocol; unset: SASL_PLAINTEXT when `username` is set, else PLAINTEXT."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="Kafka SASL mechanism used with `username` and `password`."
    )
    replication_factor: int = Field(1, ge=1, description="Replicas per partition when the Kafka topics are created.")
    session_timeout_ms: int = Field(
        10000,
        ge=1000,
        description="A consumer not heard from for this long leaves its group and its partitions move to the "
        "others. Kafka hears heartbeats (the broker allows 6000 and up by default); SQLite hears polls and commits.",
    )
    heartbeat_interval_ms: int = Field(
        3000, ge=100, description="Kafka consumer heartbeat interval; keep it below a third of `session_timeout_ms`."
    )
    max_poll_interval_ms: int = Field(
        300000, ge=1000, description="Kafka: the longest gap between two polls before a consumer leaves its group."
    )
    request_timeout_ms: int = Field(
        30000,
        ge=1000,
        description="Timeout of one Kafka request or producer flush, and how long SQLite waits for a write lock.",
    )
    idle_poll_ms: int = Field(
        50, ge=1, description="SQLite: how often a consumer with nothing to read looks again while a poll waits."
    )

    _scheme = field_validator("url")(lambda v: _check_scheme(v, LOG_SCHEMES, "log"))

    @model_validator(mode="after")
    def _names_from_topic(self) -> LogSettings:
        # Derived, not stored as set: a later change of `url` derives them again unless they were given.
        for name, suffix in (("consumer_group", "speed"), ("dead_letter", "dead-letter")):
            if getattr(self, name) is None or name not in self.model_fields_set:
                self.__dict__[name] = derived_log_name(self.url, suffix)
        return self


def derived_log_name(url: str, suffix: str) -> str:
    """The consumer group or dead-letter name a log URL implies: ``TOPIC-SUFFIX`` on Kafka, ``lambdarec-SUFFIX``
    on SQLite (its directory is the deployment's own).

    >>> derived_log_name("kafka://h:9092/shop-events", "speed"), derived_log_name("sqlite:///var/events", "speed")
    ('shop-events-speed', 'lambdarec-speed')
    """
    parts = urlsplit(url)
    topic = parts.path.strip("/") if parts.scheme == "kafka" else ""
    return f"{topic or 'lambdarec'}-{suffix}"


class ColumnNames(_Section):
    """Column names in the interaction log."""

    user_id: str = Field("user_id", description="Column holding the user id.")
    item_id: str = Field("item_id", description="Column holding the item id.")
    timestamp: str = Field("timestamp", description="Column holding the event time (datetime or epoch s/ms).")
    event_type: str = Field("event_type", description="Optional column holding the event type.")
    weight: str = Field("weight", description="Optional column holding an explicit weight.")
    event_id: str = Field("event_id", description="Optional column used to drop duplicate events.")


# L2 regularisation per model when `batch.regularization` is unset: the scales differ by orders of magnitude.
DEFAULT_REGULARIZATION = {"als": 50.0, "bpr": 0.01, "torch": 0.05}


class GateSettings(_Section):
    """The quality gate: a new model is published only if it earns it on the job's own holdout."""

    min_lift_vs_popular: float = Field(
        1.1,
        ge=0,
        description="Refuse to publish unless the model's NDCG@K on the holdout is at least this multiple of the "
        "popularity baseline's on the same users; 0 turns the check off.",
    )
    max_users: int = Field(
        20000, ge=1, description="Holdout users scored by the gate (a seeded sample when there are more)."
    )


class BatchSettings(_Section):
    """The nightly job: read interactions, train, precompute candidates, publish a snapshot."""

    interactions: str | None = Field(None, description="Interaction log: a parquet/CSV file, a glob or a folder.")
    columns: ColumnNames = Field(default_factory=ColumnNames, description="Column names in the interaction log.")
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "click": 2.0, "cart": 4.0, "purchase": 8.0, "rating": 1.0},
        description="Confidence weight per event type; the speed layer applies the snapshot's copy of this map.",
    )
    lookback_days: float | None = Field(
        None,
        gt=0,
        description="Only events this recent before `--as-of` are used; unset uses the whole log. The job warns "
        "when the window drops more than `max_filtered_share` of the events.",
    )
    on_bad_rows: Literal["skip", "fail"] = Field(
        "skip", description="`skip` counts and reports bad rows; `fail` stops the job naming the first bad row."
    )
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns"] = Field(
        "auto",
        description="Unit of numeric timestamps. `auto` decides per value by magnitude: below 1e11 seconds, "
        "below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds.",
    )
    period_hours: float = Field(24.0, gt=0, description="How often the job runs; sizes table TTLs.")
    model: Literal["als", "bpr", "torch"] = Field(
        "als", description="Trainer: implicit ALS, implicit BPR, or torch MF."
    )
    factors: int = Field(64, ge=2, le=1024, description="Embedding dimension.")
    iterations: int = Field(15, ge=1, description="Training iterations (ALS sweeps, BPR/torch epochs).")
    regularization: float | None = Field(
        None,
        ge=0,
        description="L2 regularisation, on the scale of the model. Unset: the model's default, ALS 50 (added to "
        "each least-squares solve; from the study in docs/quality-study.md), BPR 0.01, torch 0.05. "
        "`lambdarec batch tune` searches it.",
    )
    alpha: float = Field(2.0, gt=0, description="ALS confidence scaling: confidence = 1 + alpha * weight.")
    learning_rate: float = Field(0.05, gt=0, description="BPR and torch learning rate.")
    torch_loss: Literal["bpr", "softmax"] = Field("bpr", description="Torch trainer loss: BPR or sampled softmax.")
    torch_negatives: int = Field(64, ge=1, description="Sampled negatives per positive for the torch softmax loss.")
    torch_batch_size: int = Field(8192, ge=1, description="Torch trainer mini-batch size.")
    seed: int = Field(42, description="Seed for training, sampling and the holdout split.")
    threads: int = Field(0, ge=0, description="CPU threads for training and scoring; 0 uses every core.")
    device: Literal["cpu", "cuda", "auto"] = Field(
        "auto", description="Where to train and score; auto picks CUDA if present."
    )
    top_k: int = Field(200, ge=1, le=10000, description="Candidates precomputed per user.")
    neighbours: int = Field(50, ge=1, le=1000, description="Item-item neighbours precomputed per item.")
    user_block: int = Field(4096, ge=1, description="Users scored per block; bounds peak memory.")
    score_tile_mb: float = Field(
        64.0, gt=0, description="Scores held at once per CPU scoring thread (MiB; the mask adds a quarter)."
    )
    index: Literal["exact", "ivf", "hnsw"] = Field("exact", description="Candidate search: exact, or a FAISS index.")
    ivf_nlist: int = Field(0, ge=0, description="IVF cells; 0 picks about 4*sqrt(items).")
    ivf_nprobe: int = Field(16, ge=1, description="IVF cells visited per query.")
    hnsw_m: int = Field(32, ge=4, description="HNSW graph degree.")
    hnsw_ef_search: int = Field(256, ge=1, description="HNSW search breadth.")
    hnsw_ef_construction: int = Field(80, ge=1, description="HNSW build breadth: a better graph, a slower build.")
    recall_sample: int = Field(1000, ge=1, description="Users sampled to measure an approximate index's recall@K.")
    popularity_recent_days: float = Field(7.0, gt=0, description="Window of the recent popularity list.")
    holdout_fraction: float = Field(
        0.05, ge=0, lt=0.5, description="Newest share of the window held out, by time, for the quality gate."
    )
    gate_k: int = Field(10, ge=1, description="K of the gate's Recall@K and NDCG@K.")
    max_regression: float = Field(
        0.10,
        ge=0,
        description="Refuse to publish when the model's NDCG@K is this fraction below the current snapshot's, "
        "re-scored on the same holdout events (those newer than its data).",
    )
    lock_ttl_s: float = Field(
        60.0, gt=0, description="The job lock lapses this long after a killed job's last renewal (renewed every third)."
    )
    engine: Literal["local", "ray"] = Field("local", description="Where scoring and writing run.")
    ray_address: str | None = Field(
        None, description="Ray cluster to join (`ray://host:10001`); none starts a local one."
    )
    ray_actors: int = Field(
        0,
        ge=0,
        description="Ray actors that score and write user blocks, each holding the model once. 0: as many as "
        "the cluster's CPUs hold at `ray_cpus_per_actor` each when the job starts (1 with a SQLite store, "
        "which takes one writer).",
    )
    ray_cpus_per_actor: float = Field(
        1.0, gt=0, description="CPUs reserved per Ray actor; its scoring threads are this, rounded down (>= 1)."
    )
    ray_gpus_per_actor: float = Field(
        0.0, ge=0, description="GPUs reserved per Ray actor; above 0 its actors score with `device` (0: on CPU)."
    )
    ray_block_users: int = Field(
        65536,
        ge=1,
        description="Users per Ray batch, one actor call: scored in `user_block` pieces, written as one store "
        "part per piece. A multiple of `user_block` keeps the local engine's part boundaries.",
    )
    ray_max_restarts: int = Field(
        3,
        ge=-1,
        description="Times a lost Ray actor is restarted and its block retried (-1: no limit; 0: the job fails "
        "at the first lost actor). Retried blocks rewrite the same store parts, so nothing is counted twice.",
    )
    ray_local_cpus: int = Field(
        0, ge=0, description="CPUs of the local Ray started when no cluster is named (0: every core)."
    )
    ray_object_store_mb: int | None = Field(
        None,
        ge=80,
        description="Object store of the local Ray (MiB; it holds the factors and seen matrix once). "
        "Unset: Ray's default share of memory.",
    )
    source: Literal["auto", "lake", "files"] = Field(
        "auto",
        description="What the job reads. `lake`: one pinned version of the master dataset (`lake.url`). "
        "`files`: `--interactions` / `batch.interactions`. `auto`: files when a path is given, else the lake.",
    )

    # ---- quality: the gate, the tuner, the data-loss warning ----
    gate: GateSettings = Field(default_factory=GateSettings, description="The quality gate.")
    tune_every_days: float | None = Field(
        None,
        gt=0,
        description="The nightly re-tunes the model (as `lambdarec batch tune` does) when the last tuning is this many "
        "days older than its cut-off, and otherwise trains with the last tuned parameters; unset: never tunes, "
        "trains with these settings.",
    )
    tune_budget_s: float = Field(600.0, gt=0, description="Wall-clock budget of one tuning run.")
    tune_trials: int = Field(60, ge=1, description="Most trials of one tuning run (the budget may stop it sooner).")
    tune_models: list[Literal["als", "bpr", "torch"]] = Field(
        default_factory=lambda: ["als", "bpr", "torch"],
        min_length=1,
        description="Model families the tuner searches. Torch only where it is installed, and by default only "
        "on a GPU (set this list to search it on the CPU too).",
    )
    tune_validation_fraction: float = Field(
        0.1,
        gt=0,
        lt=0.5,
        description="Newest share of the window (by time) the tuner validates on; it trains on the rest.",
    )
    max_filtered_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Warn (log, `--json`, manifest) when the lookback or a row filter drops more than this share "
        "of the events at or before the cut-off.",
    )

    @property
    def effective_regularization(self) -> float:
        """``regularization``, or the model's default when it is unset (see :data:`DEFAULT_REGULARIZATION`)."""
        return DEFAULT_REGULARIZATION[self.model] if self.regularization is None else self.regularization

    @model_validator(mode="after")
    def _weights_non_negative(self) -> BatchSettings:
        bad = {k: v for k, v in self.event_weights.items() if v < 0}
        if bad:
            raise ValueError(f"event_weights must be >= 0; got {bad}")
        return self


class SpeedSettings(_Section):
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
    poll_max_records: int = Field(1000, ge=1, description="Events taken from the log per poll.")
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


class ServingSettings(_Section):
    """The HTTP service that merges batch and speed and re-ranks with the session."""

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=1, le=65535, description="Port to bind.")
    workers: int = Field(1, ge=1, description="uvicorn worker processes.")
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
        "for SQLite, thread for Cassandra.",
    )
    access_log: bool = Field(False, description="Log every request (uvicorn's access log); costs throughput.")
    # Store health (hysteresis): degraded after a sustained failure, healthy after a sustained success.
    store_fail_after: int = Field(
        3,
        ge=1,
        description="Failed or timed-out store calls in a row that put serving in degraded mode (requests skip "
        "the store and are served from memory, `/readyz` is 503); one slow answer under load does not.",
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
        "(uvicorn's h11 limit): a longer head is answered 431 with a body naming this setting. Keep it above "
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


class EventSettings(_Section):
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
        "trending, across restarts and consumers; the ids are kept in the store this long. 0 turns it off.",
    )
    max_consecutive_failures: int = Field(
        100,
        ge=1,
        description="The speed consumer stops with an error after this many records in a row fail with an "
        "unexpected error (a bug, not a bad event), instead of dead-lettering the whole log; fewer are "
        "dead-lettered one by one and the consumer moves on.",
    )

    @field_validator("id_pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return pattern


LAKE_SCHEMES = ("", "file", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")


class LakeSettings(_Section):
    """The master dataset: the append-only Delta Lake table of every event that entered, and its dead letters."""

    url: str | None = Field(
        "var/lake",
        description="Root of the lake: a local directory (relative or absolute, or `file:///...`), or "
        "`s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`. The events table lives at "
        "`URL/events`, dead letters at `URL/dead_letters`, erasures at `URL/erasures`. Unset: no lake.",
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="delta-rs object-store options (e.g. `AWS_ENDPOINT_URL`, `AWS_REGION`, "
        "`AWS_ALLOW_HTTP`); the usual `AWS_*`, `GOOGLE_*`, `AZURE_*` environment variables apply too. "
        "On `s3://` the lake sets `AWS_CONDITIONAL_PUT=etag` unless given, so concurrent writers commit safely; "
        "the unsafe-rename option is refused.",
    )
    target_file_mb: int = Field(128, ge=1, description="`lake compact` rewrites small files towards this size.")
    vacuum_min_retain_hours: float = Field(
        168.0,
        ge=0,
        description="Safety floor of `lake vacuum --retain-hours`: files a reader pinned to a version younger "
        "than this may still need are never removed.",
    )
    commit_retries: int = Field(
        20, ge=1, description="Attempts of one lake commit that races other writers before it fails."
    )

    @field_validator("url")
    @classmethod
    def _lake_scheme(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not url.strip():
            raise ValueError("lake URL must not be empty; unset it to run without a lake")
        scheme = urlsplit(url).scheme
        if len(scheme) > 1 and scheme not in LAKE_SCHEMES:  # one letter: a Windows drive
            raise ValueError(f"lake URL {url!r} has scheme {scheme!r}; expected a path, file, s3, gs or az")
        return url

    @field_validator("storage_options")
    @classmethod
    def _no_unsafe_rename(cls, options: dict[str, str]) -> dict[str, str]:
        if any(k.upper() == "AWS_S3_ALLOW_UNSAFE_RENAME" and v.lower() == "true" for k, v in options.items()):
            raise ValueError(
                "AWS_S3_ALLOW_UNSAFE_RENAME loses commits when two writers race; use conditional puts "
                "(AWS_CONDITIONAL_PUT=etag) or a locking provider"
            )
        return options


class ArchiveSettings(_Section):
    """The archiver: event log -> lake, exactly once."""

    consumer_group: str = Field("lambdarec-archive", description="The archiver's own consumer group on the event log.")
    max_batch_events: int = Field(50_000, ge=1, description="Most events in one lake commit (a micro-batch).")
    max_batch_s: float = Field(
        10.0, gt=0, description="Longest time a micro-batch collects events before it is committed to the lake."
    )
    poll_max_records: int = Field(5000, ge=1, description="Records taken from the log per poll.")
    # Waiting out a log or lake that does not answer (capped exponential backoff with jitter).
    retry_initial_s: float = Field(
        0.2, gt=0, description="First wait before retrying a log or lake call that failed; doubles each time."
    )
    retry_max_s: float = Field(10.0, gt=0, description="Longest wait between retries of a failing log or lake.")
    give_up_after_s: float = Field(
        0.0,
        ge=0,
        description="Exit (non-zero) once the log or the lake has failed for this long without a break; "
        "0 retries forever, resuming by itself when it answers again.",
    )


_config_path: contextvars.ContextVar[Path | None] = contextvars.ContextVar("lambdarec_config", default=None)


class _EnvSource(EnvSettingsSource):
    """The environment, less our variables that are not settings (config path, test endpoints)."""

    def _load_env_vars(self):  # type: ignore[override]
        env = super()._load_env_vars()
        skip = tuple(p.lower() for p in _NOT_SETTINGS)
        return {k: v for k, v in env.items() if not k.lower().startswith(skip)}


class Settings(BaseSettings):
    """The whole settings tree."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    store: StoreSettings = Field(default_factory=StoreSettings, description="The online store.")
    log: LogSettings = Field(default_factory=LogSettings, description="The event log.")
    batch: BatchSettings = Field(default_factory=BatchSettings, description="The nightly batch job.")
    speed: SpeedSettings = Field(default_factory=SpeedSettings, description="The speed layer consumer.")
    serving: ServingSettings = Field(default_factory=ServingSettings, description="The HTTP serving layer.")
    events: EventSettings = Field(default_factory=EventSettings, description="Bounds on event values.")
    lake: LakeSettings = Field(default_factory=LakeSettings, description="The master dataset (Delta Lake).")
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings, description="The archiver (log -> lake).")

    @model_validator(mode="after")
    def _ttl_covers_two_periods(self) -> Settings:
        if self.store.snapshot_ttl_s <= 2 * self.batch.period_hours * 3600:
            raise ValueError(
                f"store.snapshot_ttl_s ({self.store.snapshot_ttl_s}) must exceed twice batch.period_hours "
                f"({self.batch.period_hours} h = {2 * self.batch.period_hours * 3600:.0f} s)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvSource(settings_cls)]
        path = _config_path.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @classmethod
    def load(cls, config: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
        """Read the settings: ``config`` (or ``$LAMBDAREC_CONFIG``), then the environment, then ``overrides``.

        Raises
        ------
        ConfigError
            naming each unknown or invalid key and where it came from.
        """
        raw = config if config is not None else os.environ.get(CONFIG_ENV)
        path = Path(raw) if raw else None
        if path is not None:
            if not path.is_file():
                raise ConfigError(f"config file {path} does not exist (from --config or ${CONFIG_ENV})")
            try:
                with path.open("rb") as fh:
                    tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        _check_env_sections(cls)
        token = _config_path.set(path)
        try:
            settings = cls(**(overrides or {}))
        except ValidationError as exc:
            raise ConfigError(_describe(exc, path)) from None
        finally:
            _config_path.reset(token)
        settings.register_secrets()
        return settings

    def register_secrets(self) -> None:
        """Have every secret of these settings masked in errors and logs (see ``lambdarec.masking``)."""
        for secret in (self.store.password, self.log.password):
            register_secret(secret.get_secret_value() if secret is not None else None)
        for url in (self.store.url, self.log.url):
            try:
                register_secret(urlsplit(url).password)
            except ValueError:
                continue

    def masked(self) -> dict[str, Any]:
        """The settings as plain data with every secret (passwords, credentials in URLs) masked."""
        data = self.model_dump(mode="json")
        for section in ("store", "log"):
            data[section]["url"] = mask_url(data[section]["url"])
        lake = data["lake"]
        lake["url"] = mask_url(lake["url"]) if lake["url"] else None
        secret = ("SECRET", "TOKEN", "PASSWORD", "ACCESS_KEY", "SAS", "ACCOUNT_KEY", "CREDENTIAL")
        lake["storage_options"] = {
            k: "***" if any(w in k.upper() for w in secret) else v for k, v in lake["storage_options"].items()
        }
        return data


def _check_env_sections(cls: type[Settings]) -> None:
    # pydantic-settings ignores a prefixed variable whose first part names no section; we refuse it.
    sections = set(cls.model_fields)
    for name in os.environ:
        if not name.startswith(ENV_PREFIX) or name.startswith(_NOT_SETTINGS):
            continue
        head = name[len(ENV_PREFIX) :].split("__", 1)[0].lower()
        if head not in sections:
            raise ConfigError(
                f"unknown setting in environment variable ${name}: '{head}' is not a section "
                f"({', '.join(sorted(sections))}); nested keys use '__', e.g. {ENV_PREFIX}STORE__URL"
            )


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f"config file {path}, " if path else ""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        env = ENV_PREFIX + "__".join(str(p) for p in err["loc"]).upper()
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown setting '{key}' (check {where}${env} or the overrides)")
        else:
            lines.append(f"invalid setting '{key}': {err['msg']} (got {err.get('input')!r})")
    return mask_secrets("; ".join(lines))
