"""``[batch.index]`` and ``[batch.ray]``: how candidates are searched, and the Ray engine that scores and writes
them on a cluster."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lambdarec.settings.section import Section


class IndexSettings(Section):
    """Candidate search: exact, or a FAISS index with its options."""

    kind: Literal["exact", "ivf", "hnsw"] = Field("exact", description="Candidate search: exact, or a FAISS index.")
    ivf_nlist: int = Field(0, ge=0, description="IVF cells; 0 picks about 4*sqrt(items).")
    ivf_nprobe: int = Field(16, ge=1, description="IVF cells visited per query.")
    hnsw_m: int = Field(32, ge=4, description="HNSW graph degree.")
    hnsw_ef_search: int = Field(256, ge=1, description="HNSW search breadth.")
    hnsw_ef_construction: int = Field(80, ge=1, description="HNSW build breadth: a better graph, a slower build.")
    recall_sample: int = Field(1000, ge=1, description="Users sampled to measure an approximate index's recall@K.")


class RaySettings(Section):
    """The Ray engine (``batch.engine = "ray"``): actors that score and write user blocks."""

    address: str | None = Field(None, description="Ray cluster to join (`ray://host:10001`); none starts a local one.")
    actors: int = Field(
        0,
        ge=0,
        description="Ray actors that score and write user blocks, each holding the model once. 0: as many as "
        "the cluster's CPUs hold at `cpus_per_actor` each when the job starts (1 with a SQLite store, "
        "which takes one writer).",
    )
    cpus_per_actor: float = Field(
        1.0, gt=0, description="CPUs reserved per Ray actor; its scoring threads are this, rounded down (>= 1)."
    )
    gpus_per_actor: float = Field(
        0.0, ge=0, description="GPUs reserved per Ray actor; above 0 its actors score with `batch.device` (0: on CPU)."
    )
    block_users: int = Field(
        65536,
        ge=1,
        description="Users per Ray batch, one actor call: scored in `batch.user_block` pieces, written as one store "
        "part per piece. A multiple of `batch.user_block` keeps the local engine's part boundaries.",
    )
    max_restarts: int = Field(
        3,
        ge=-1,
        description="Times a lost Ray actor is restarted and its block retried (-1: no limit; 0: the job fails "
        "at the first lost actor). Retried blocks rewrite the same store parts, so nothing is counted twice.",
    )
    local_cpus: int = Field(
        0, ge=0, description="CPUs of the local Ray started when no cluster is named (0: every core)."
    )
    object_store_mb: int | None = Field(
        None,
        ge=80,
        description="Object store of the local Ray (MiB; it holds the factors and seen matrix once). "
        "Unset: Ray's default share of memory.",
    )
