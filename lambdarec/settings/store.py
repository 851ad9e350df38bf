"""``[store]``: the online store, with the options of each backend."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from lambdarec.settings.section import Section, check_scheme

STORE_SCHEMES = ("sqlite", "cassandra")


class SQLiteStoreSettings(Section):
    """The SQLite store (``sqlite:///DIR``): two files in one directory, snapshots and fresh state."""

    mmap_mb: int = Field(
        1024,
        ge=0,
        description="MiB of the snapshots file a connection reads through a memory map (`PRAGMA mmap_size`) "
        "instead of copying pages: a serving read of a user row costs about a third less. Mapped pages count in the "
        "process's resident memory (file-backed, dropped by the kernel under pressure) up to the file's size or "
        "this bound; 0 maps none.",
    )
    fresh_mmap_mb: int = Field(
        0,
        ge=0,
        description="The same for the fresh-state file, which grows with every user and item the speed layer "
        "sees; 0 (no map, the default) keeps the speed consumer's resident memory flat however many users it has "
        "seen.",
    )


class CassandraStoreSettings(Section):
    """The Cassandra store (``cassandra://HOSTS/KEYSPACE``): its credentials, consistency and concurrency."""

    username: str | None = Field(None, description="Cassandra user name (password authentication).")
    password: SecretStr | None = Field(None, description="Cassandra password. Masked in `config show`.")
    write_concurrency: int = Field(
        64, ge=1, le=2048, description="Requests in flight per process for Cassandra bulk writes."
    )
    read_concurrency: int = Field(
        32, ge=1, le=2048, description="Requests in flight per call for Cassandra multi-key reads."
    )
    replication: dict[str, int] = Field(
        default_factory=lambda: {"replication_factor": 1},
        description="Keyspace replication for `store init`: `{replication_factor = N}` gives SimpleStrategy; "
        "a map of datacenter to replicas gives NetworkTopologyStrategy.",
    )
    write_consistency: str = Field("LOCAL_QUORUM", description="Cassandra consistency level for writes.")
    read_consistency: str = Field("LOCAL_ONE", description="Cassandra consistency level for reads.")
    protocol_version: int = Field(
        5, ge=3, le=5, description="CQL native protocol version: 5 for Cassandra 4.0 and later, 4 for 3.x."
    )
    reconnect_max_s: float = Field(
        2.0,
        gt=0,
        description="Longest wait between the Cassandra driver's attempts to reconnect to a host that went down "
        "(exponential from 0.1 s, capped here), so a store that comes back is used again within seconds.",
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="Timeout for opening a store connection.")
    user_rows_per_partition: int = Field(
        2048,
        ge=1,
        le=1_000_000,
        description="About how many users' batch rows share one partition of a new snapshot (at K = 200 about 3.5 "
        "MiB): the partition count comes from the user count the nightly announces when it begins the version, "
        "and each partition's rows are written as one-partition batches (one mutation per batch, not per row). "
        "Fixed per version when it begins; older versions keep their layout.",
    )


class StoreSettings(Section):
    """The online store: snapshots written by the batch layer, fresh state written by the speed layer."""

    url: str = Field(
        "sqlite:///var/store",
        description="Where the store lives. `sqlite:///relative/dir`, `sqlite:////absolute/dir`, or "
        "`cassandra://host1,host2:9042/keyspace?dc=DATACENTER`.",
    )
    keep_versions: int = Field(3, ge=1, description="`snapshots prune` keeps this many newest published versions.")
    current_cache_s: float = Field(
        2.0, ge=0, description="How long a reader caches the current-version pointer before asking again."
    )
    snapshot_ttl_s: int = Field(
        7 * 86400,
        ge=3600,
        description="Default TTL of snapshot tables; must exceed twice `batch.period_hours` so retired "
        "versions expire without deletes.",
    )
    fresh_ttl_s: int = Field(7 * 86400, ge=60, description="TTL of the speed layer's per-user and per-item state.")
    request_timeout_s: float = Field(5.0, gt=0, description="Timeout for one store request.")
    namespace: str = Field(
        "default",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Namespace inside the store: its own snapshot history, current pointer, fresh state and "
        "locks. Lets several catalogues (or test runs) share one keyspace or directory.",
    )
    abandon_after_s: float = Field(
        86400.0,
        gt=0,
        description="A version still `writing` this long after it began counts as abandoned: `prune` retires it.",
    )
    activate_check_users: int = Field(
        1000,
        ge=0,
        description="User rows read and checked (checksum, item indices), evenly spread over the snapshot's users, "
        "before `snapshots activate` moves the pointer; its arrays and item rows are always checked whole. 0 "
        "checks no user row.",
    )
    sqlite: SQLiteStoreSettings = Field(default_factory=SQLiteStoreSettings, description="The SQLite backend.")
    cassandra: CassandraStoreSettings = Field(
        default_factory=CassandraStoreSettings, description="The Cassandra backend."
    )

    _scheme = field_validator("url")(lambda v: check_scheme(v, STORE_SCHEMES, "store"))
