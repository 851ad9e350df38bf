"""The Ray engine (``batch.engine = "ray"``): every user's candidates scored and written by a pool of Ray actors.

The driver has trained the model, begun the version and written its arrays; :func:`write_users_ray` then

* puts the user factors, the item factors, the seen matrix and (for a FAISS index) the driver's searcher in the
  object store once;
* makes the user indices a Ray Dataset of ``batch.ray.block_users``-user blocks;
* maps the blocks over ``batch.ray.actors`` actors (:class:`batch_layer.ray_actors.UserBlockWriter`, with
  ``ray_cpus_per_actor`` and ``ray_gpus_per_actor`` each). Each fetches the model once, scores its blocks with
  the local engine's code, and writes the rows to a store it opens itself, one part per ``batch.user_block``
  users (``users-{first user}``, as the local engine names them);
* checks that the actors wrote every user once. The driver then writes neighbours and publishes, and
  ``publish`` validates the row counts exactly as for the local engine.

A lost actor is restarted and its block retried up to ``batch.ray.max_restarts`` times; a retried block rewrites
the same parts, which the store counts once. Past that the job fails and the version stays ``writing``, so the
previous snapshot stays current.

Example
-------
>>> write_users_ray(settings.store, version, data, factors, settings.batch)   # doctest: +SKIP
943
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from batch_layer.candidates import Searcher
from batch_layer.matrix import Interactions
from batch_layer.model_index import FaissSearcher
from batch_layer.ray_actors import UserBlockScorer, UserBlockWriter, actor_settings
from batch_layer.ray_cluster import actor_count, check_ray_settings, for_workers, ray_session
from lambdarec.logs import get_logger
from lambdarec.model.factors import Factors
from lambdarec.settings import BatchSettings, StoreSettings

log = get_logger(__name__)


def user_blocks(n_users: int, block: int) -> list[np.ndarray]:
    """The user indices ``0..n_users-1`` in consecutive blocks of ``block``; the Ray Dataset's blocks.

    Example
    -------
    >>> [b.tolist() for b in user_blocks(5, 2)]
    [[0, 1], [2, 3], [4]]
    """
    if n_users < 1 or block < 1:
        raise ValueError(f"user_blocks needs n_users >= 1 and block >= 1; got n_users={n_users}, block={block}")
    return [np.arange(start, min(start + block, n_users), dtype=np.int64) for start in range(0, n_users, block)]


def write_users_ray(
    store: StoreSettings | None,
    version: str,
    data: Interactions,
    factors: Factors,
    batch: BatchSettings,
    *,
    searcher: Searcher | None = None,
    progress: bool = True,
) -> int:
    """Score and write every user's row of ``version`` on Ray actors; returns the rows written.

    Parameters
    ----------
    store
        Store settings the actors open (``settings.store``).
    version
        A version in state ``writing``.
    data, factors
        The interactions (id maps, seen CSR) and the trained factors.
    batch
        Batch settings: ``top_k``, ``user_block``, ``index`` and the ``ray_*`` fields.
    searcher
        The driver's searcher; a FAISS one is shipped to the actors as is (rebuilding it could give another
        index), the exact ones are rebuilt in each actor from the item factors.
    progress
        A progress bar on stderr.

    Raises
    ------
    RayConfigError
        The settings cannot work (see :func:`batch_layer.ray_cluster.check_ray_settings`).
    ray.exceptions.RayError
        An actor was lost more than ``batch.ray.max_restarts`` times, or failed; the version stays ``writing``.
    RuntimeError
        The actors' row counts do not add up to one row per user.
    """
    check_ray_settings(store, batch)
    assert store is not None  # checked above
    n_users = len(data.user_ids)
    with ray_session(batch):
        shared = share_model(factors.user_factors, factors.item_factors, data.matrix, data.user_ids, searcher)
        actors = actor_count(store, batch)
        log.info("ray.scoring", version=version, users=n_users, actors=actors, block=batch.ray.block_users)
        writer_args = {"store": for_workers(store), "version": version}
        with ray_data_quiet():
            dataset = map_user_blocks(UserBlockWriter, shared, writer_args, n_users, batch, actors)
            written = count_rows(dataset, n_users, progress)
    log.info("ray.written", version=version, users=written)
    return written


def share_model(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    seen: sp.csr_matrix,
    user_ids: np.ndarray,
    searcher: Searcher | None = None,
) -> dict[str, Any]:
    """Put what every actor reads in the object store once; returns the refs for :class:`UserBlockScorer`.

    A FAISS ``searcher`` is shipped as built (rebuilding it could give another index); exact searchers are rebuilt
    in each actor from the item factors, which gives the same results.
    """
    import ray  # lazily, as everywhere in the engine: ray is an optional extra

    shared = {
        "user_factors": ray.put(np.ascontiguousarray(user_factors, dtype=np.float32)),
        "item_factors": ray.put(np.ascontiguousarray(item_factors, dtype=np.float32)),
        "user_ids": ray.put(np.asarray(user_ids)),
        "seen": ray.put({"indptr": seen.indptr, "indices": seen.indices, "data": seen.data, "shape": seen.shape}),
    }
    if isinstance(searcher, FaissSearcher):
        shared["searcher"] = ray.put(searcher)
    return shared


def map_user_blocks(
    actor: type[UserBlockScorer],
    shared: dict[str, Any],
    kwargs: dict[str, Any],
    n_users: int,
    batch: BatchSettings,
    actors: int,
) -> Any:
    """The Ray Dataset of ``batch.ray.block_users``-user index blocks mapped over ``actors`` actors of ``actor``.

    ``shared`` comes from :func:`share_model`; ``kwargs`` are the actor's other constructor arguments. Lazy:
    :func:`count_rows` runs it.
    """
    import ray  # lazily: ray is an optional extra, off the local engine's import path
    from ray.data import ActorPoolStrategy  # lazily, as ray above

    with warnings.catch_warnings():
        # Ray 2.5x deprecates ray_remote_args, yet names no other way to set actor restarts.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*", category=DeprecationWarning)
        return ray.data.from_numpy(user_blocks(n_users, batch.ray.block_users)).map_batches(
            actor,
            fn_constructor_kwargs={"shared": shared, "batch": actor_settings(batch), **kwargs},
            batch_size=batch.ray.block_users,
            batch_format="numpy",
            compute=ActorPoolStrategy(size=actors),
            num_cpus=batch.ray.cpus_per_actor,
            num_gpus=batch.ray.gpus_per_actor or None,
            max_restarts=batch.ray.max_restarts,
            max_task_retries=batch.ray.max_restarts,
        )


@contextmanager
def ray_data_quiet() -> Iterator[None]:
    """Ray Data's own progress bars off while datasets are made and run here (ours counts users instead)."""
    from ray.data import DataContext  # lazily: ray is an optional extra

    with warnings.catch_warnings():  # Ray 2.60 warns about its own deprecated fields as it creates the context
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray.data.context")
        context = DataContext.get_current()
    bars, context.enable_progress_bars = context.enable_progress_bars, False
    try:
        yield
    finally:
        context.enable_progress_bars = bars


def count_rows(dataset: Any, n_users: int, progress: bool = False) -> int:
    """Run ``dataset``; check that its blocks handled one row per user, each block once. Returns the rows."""
    bar = tqdm(total=n_users, desc="candidates (ray)", unit="user", disable=not progress, leave=False)
    firsts: list[int] = []
    written = 0
    for row in dataset.iter_rows():
        firsts.append(int(row["first_user"]))
        written += int(row["rows"])
        bar.update(int(row["rows"]))
    bar.close()
    if written != n_users or len(set(firsts)) != len(firsts):
        raise RuntimeError(
            f"the Ray actors handled {written} user rows in {len(firsts)} blocks ({len(set(firsts))} distinct); "
            f"expected {n_users}, each block once"
        )
    return written
