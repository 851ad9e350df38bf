"""Settings keys that moved, and the error that names the new key when a file, a variable or an override uses an
old one. A renamed key is refused, never silently taken: a deployment learns of the move at its first start.

Example
-------
>>> renamed_message("nope.nothing", 1, "LAMBDAREC_") is None
True
"""

from __future__ import annotations

from typing import Any

# old dotted key -> new dotted key (issue 13: sub-tables per concern and per backend).
RENAMED: dict[str, str] = {
    **{f"batch.{k}": f"batch.train.{k}" for k in ("model", "factors", "iterations", "regularization", "alpha")},
    "batch.learning_rate": "batch.train.learning_rate",
    **{f"batch.torch_{k}": f"batch.torch.{k}" for k in ("loss", "negatives", "batch_size")},
    "batch.index": "batch.index.kind",
    **{f"batch.{k}": f"batch.index.{k}" for k in ("ivf_nlist", "ivf_nprobe", "hnsw_m", "hnsw_ef_search")},
    "batch.hnsw_ef_construction": "batch.index.hnsw_ef_construction",
    "batch.recall_sample": "batch.index.recall_sample",
    **{
        f"batch.ray_{k}": f"batch.ray.{k}"
        for k in ("address", "actors", "cpus_per_actor", "gpus_per_actor", "block_users", "max_restarts")
    },
    "batch.ray_local_cpus": "batch.ray.local_cpus",
    "batch.ray_object_store_mb": "batch.ray.object_store_mb",
    "batch.holdout_fraction": "batch.gate.holdout_fraction",
    "batch.gate_k": "batch.gate.k",
    "batch.max_regression": "batch.gate.max_regression",
    **{f"batch.tune_{k}": f"batch.tune.{k}" for k in ("every_days", "budget_s", "trials", "models")},
    "batch.tune_validation_fraction": "batch.tune.validation_fraction",
}


def renamed_message(key: str, value: Any, env_prefix: str) -> str | None:
    """The error for an old ``key`` (a dotted path) given ``value``, or None when the key was not renamed.

    A key that became a table (``batch.index``) is an old key only when given a plain value, not a table.
    """
    new = RENAMED.get(key)
    if new is None or (isinstance(value, dict) and new.startswith(f"{key}.")):
        return None
    env = env_prefix + "__".join(new.split(".")).upper()
    return f"setting '{key}' was renamed '{new}' (environment variable ${env}); see the README's changelog"
