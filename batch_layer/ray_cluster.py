"""Where the Ray engine runs: join the cluster ``batch.ray.address`` (or ``$RAY_ADDRESS``) names, or start a local
one, and size the actor pool. Ray is imported only here and in :mod:`batch_layer.ray_engine`, and only when
``batch.engine = "ray"``.

Example
-------
>>> with ray_session(BatchSettings(engine="ray", ray={"local_cpus": 2})):       # doctest: +SKIP
...     actor_count(StoreSettings(url="cassandra://db:9042/recs"), BatchSettings(engine="ray"))
2
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from batch_layer.errors import BadInputError
from lambdarec.logs import get_logger
from lambdarec.settings import BatchSettings, ConfigError, StoreSettings

log = get_logger(__name__)

RAY_REQUIREMENT = "ray[data]>=2.40,<3"


class RayConfigError(ConfigError, BadInputError):
    """The Ray engine's settings cannot work together (or Ray is missing); the message says what would.

    A settings error that ``lambdarec batch run`` reports as bad input (exit 2), so a scheduler does not retry it.
    """


def check_ray_settings(store: StoreSettings | None, batch: BatchSettings) -> None:
    """Refuse Ray settings that cannot work, before anything is trained or written.

    Raises
    ------
    RayConfigError
        Ray is not installed; no store settings were given for the actors to open; or the store is SQLite
        (one writer) and ``batch.ray.actors`` asks for more than one actor.
    """
    if importlib.util.find_spec("ray") is None:
        raise RayConfigError(
            f"batch.engine = 'ray' needs Ray: pip install 'lambdarec[ray]' ({RAY_REQUIREMENT}), "
            "or set batch.engine = 'local'"
        )
    if store is None:
        raise RayConfigError(
            "batch.engine = 'ray': the actors open the store themselves, so write_snapshot needs "
            "store_settings=settings.store"
        )
    if urlsplit(store.url).scheme == "sqlite" and batch.ray.actors > 1:
        raise RayConfigError(
            f"batch.ray.actors = {batch.ray.actors} with a SQLite store ({store.url}): SQLite takes one writer. "
            "Set batch.ray.actors = 1 (or 0, which picks 1 for SQLite), or use a cassandra:// store to write "
            "from several actors"
        )


def actor_count(store: StoreSettings, batch: BatchSettings) -> int:
    """``batch.ray.actors``, or with 0 as many actors as the connected cluster's CPUs (and GPUs) hold now.

    A SQLite store always gets one actor: it takes one writer.
    """
    if urlsplit(store.url).scheme == "sqlite":
        return 1
    if batch.ray.actors:
        return batch.ray.actors
    import ray  # lazily: ray is an optional extra, off the local engine's import path

    resources = ray.cluster_resources()
    fits = int(resources.get("CPU", 1) // batch.ray.cpus_per_actor)
    if batch.ray.gpus_per_actor > 0:
        fits = min(fits, int(resources.get("GPU", 0) // batch.ray.gpus_per_actor))
    return max(1, fits)


def for_workers(store: StoreSettings) -> StoreSettings:
    """``store`` as Ray workers should open it: a relative SQLite directory made absolute, since a worker's
    working directory need not be the driver's."""
    parts = urlsplit(store.url)
    if parts.scheme != "sqlite" or parts.path.startswith("//"):
        return store
    return store.model_copy(update={"url": f"sqlite:///{os.path.abspath(parts.path[1:])}"})


@contextmanager
def ray_session(batch: BatchSettings) -> Iterator[None]:
    """Use the Ray this process already joined, else join ``batch.ray.address`` or ``$RAY_ADDRESS``, else start a
    local Ray with ``batch.ray.local_cpus`` CPUs and ``batch.ray.object_store_mb``; leave only what it started.

    Joining a cluster needs the same lambdarec and Ray versions on the driver and the workers (one image).
    """
    import ray  # lazily: ray is an optional extra, off the local engine's import path

    if ray.is_initialized():  # the caller's session (a test, a notebook): theirs to shut down
        yield
        return
    address = batch.ray.address or os.environ.get("RAY_ADDRESS")
    # Ray's own logger renders through ours (configure_logging=False), and workers' output stays in Ray's session
    # logs (`ray logs`): forwarded to the driver it would arrive as "(pid=...)"-prefixed lines inside the JSON
    # stream. A worker's failure still reaches the driver as the task's exception.
    quiet = {"configure_logging": False, "log_to_driver": False}
    ray_logger = logging.getLogger("ray")  # importing ray gave it a plain-text handler of its own
    ray_logger.handlers.clear()
    ray_logger.propagate = True
    if address:
        log.info("ray.join", address=address)
        ray.init(address=address, **quiet)
    else:
        store_mb = batch.ray.object_store_mb
        ray.init(
            num_cpus=batch.ray.local_cpus or None,
            object_store_memory=store_mb * (1 << 20) if store_mb else None,
            include_dashboard=False,
            **quiet,
        )
        log.info("ray.started", cpus=ray.cluster_resources().get("CPU"))
    try:
        yield
    finally:
        ray.shutdown()
