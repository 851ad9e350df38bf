"""How large a batch over several partitions may be before the Cassandra node warns, read from the node itself.

Cassandra logs a warning for every unlogged batch over ``batch_size_warn_threshold`` (5 KiB unless the operator
set it) or across more than ``unlogged_batch_across_partitions_warn_threshold`` partitions (10), and refuses one
over ``batch_size_fail_threshold`` (50 KiB). Batches of one partition are exempt from the first two since
Cassandra 3.6. The speed layer writes a poll's user states as batches of one replica's partitions, and on a
small node it is the request, more than the bytes, that costs: each batch is a request to the driver and to the
node. So those batches are sized to the thresholds the node reports (``system_views.settings``, Cassandra 4.0
and later): a cluster whose operator raised them gets fewer, larger batches, and no node ever logs a warning for
them. A node that does not report them (an older release, or a role that may not read ``system_views``) is taken
to have the stock thresholds. The table is the answering node's own; a cluster's nodes normally share one
configuration.

Example
-------
>>> limits_from({"batch_size_warn_threshold": "32KiB", "unlogged_batch_across_partitions_warn_threshold": "32"})
BatchLimits(bytes=26214, partitions=32)
>>> limits_from({})  # the stock thresholds: 5 KiB and 10 partitions
BatchLimits(bytes=4096, partitions=10)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from lambdarec.store.errors import StoreError, StoreUnavailableError

WARN_BYTES, FAIL_BYTES, PARTITIONS = (
    "batch_size_warn_threshold",
    "batch_size_fail_threshold",
    "unlogged_batch_across_partitions_warn_threshold",
)
# Cassandra 4.0 names the sizes in KiB (``..._in_kb``); 4.1 and later take units and report both
NAMES = (WARN_BYTES, FAIL_BYTES, PARTITIONS, f"{WARN_BYTES}_in_kb", f"{FAIL_BYTES}_in_kb")
STOCK = {WARN_BYTES: 5 * 1024, FAIL_BYTES: 50 * 1024, PARTITIONS: 10}
SELECT_SETTINGS = "SELECT name, value FROM system_views.settings WHERE name IN ?"
# Cassandra counts a batch's size from its mutations, keys and overhead included: the rows fill 80% of a threshold
FILL = 0.8
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_SIZE = re.compile(r"\s*(\d+)\s*([KMG]iB|B)\s*")


@dataclass(frozen=True)
class BatchLimits:
    """At most ``bytes`` of rows and ``partitions`` partitions in one unlogged batch over several partitions."""

    bytes: int
    partitions: int


def size_bytes(value: str | None, unit: int = 1) -> int | None:
    """A size setting in bytes: ``"5KiB"`` (4.1 and later), or a bare number of ``unit`` bytes (4.0's
    ``..._in_kb``); None for no value or one that is not a size (a threshold turned off reads as null)."""
    if value is None:
        return None
    if value.strip().isdigit():
        return int(value) * unit
    match = _SIZE.fullmatch(value)
    return int(match[1]) * _UNITS[match[2]] if match else None


def limits_from(settings: Mapping[str, str | None]) -> BatchLimits:
    """The batch limits under the thresholds in ``settings`` (a node's ``system_views.settings``; a threshold
    missing from it, or not a size, counts as Cassandra's stock one)."""

    def threshold(name: str) -> int:
        found = size_bytes(settings.get(name), 1024)  # a bare number under either name is in KiB, as yaml had it
        if found is None:
            found = size_bytes(settings.get(f"{name}_in_kb"), 1024)
        return found if found is not None and found > 0 else STOCK[name]

    partitions = settings.get(PARTITIONS)
    count = int(partitions) if partitions is not None and partitions.strip().isdigit() else STOCK[PARTITIONS]
    size = min(threshold(WARN_BYTES), threshold(FAIL_BYTES))
    return BatchLimits(bytes=max(1, int(size * FILL)), partitions=max(1, count))


def read_limits(query: Callable[[str, tuple[list[str]]], Iterable[tuple[str, str | None]]]) -> tuple[BatchLimits, str]:
    """The limits under the node's thresholds, and where they came from: ``query(cql, params)`` runs a prepared
    statement and returns its rows. A node that refuses the query (no such table, a role not allowed to read it)
    gets the stock limits, with the reason; a node that does not answer raises ``StoreUnavailableError``."""
    try:
        rows = dict(query(SELECT_SETTINGS, (list(NAMES),)))
    except StoreUnavailableError:
        raise
    except StoreError as exc:
        return limits_from({}), f"stock thresholds: the node did not report its own ({exc})"
    return limits_from(rows), "the node's system_views.settings"
