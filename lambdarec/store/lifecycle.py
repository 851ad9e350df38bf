"""The snapshot lifecycle rules every backend applies alike: what may be written, published, activated, pruned.

A backend calls :func:`check_publishable` before its flip and :func:`check_activatable` before it moves the
pointer, so both backends refuse the same things with the same messages.

Example
-------
>>> prune_plan(snapshots, keep=2, now=datetime.now(UTC), abandon_after_s=86400)  # doctest: +SKIP
['20261101T000000000Z-a1b2c3']
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from lambdarec.store.errors import CorruptRowError, SnapshotNotFoundError, SnapshotStateError, ValidationFailedError
from lambdarec.store.port import OnlineStore
from lambdarec.store.snapshot_info import SnapshotInfo, SnapshotState


def meta_json(value: Mapping[str, Any], what: str) -> str:
    """``value`` as JSON text; a ``ValueError`` naming ``what`` when it is not JSON-able."""
    try:
        return json.dumps(dict(value), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"snapshot {what} must be JSON-able (str, numbers, lists, dicts): {exc}") from None


def expected_counts(version: str, manifest: Mapping[str, Any]) -> tuple[int, int]:
    """``(user_rows, item_rows)`` from ``manifest["counts"]``; a ``ValueError`` naming what is missing."""
    counts = manifest.get("counts")
    if not isinstance(counts, Mapping):
        raise ValueError(
            f"publish({version}): manifest needs a 'counts' mapping with 'user_rows' and 'item_rows'; got {counts!r}"
        )
    out = []
    for key in ("user_rows", "item_rows"):
        value = counts.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"publish({version}): manifest counts.{key} must be an integer >= 0; got {value!r}")
        out.append(value)
    return out[0], out[1]


def missing_arrays(manifest: Mapping[str, Any], stored: Iterable[str]) -> list[str]:
    """Problems for arrays the manifest lists under ``"arrays"`` that were never written."""
    have = set(stored)
    return [
        f"array {name!r} is listed in the manifest but was not written"
        for name in manifest.get("arrays", ())
        if name not in have
    ]


def require_writing(version: str, state: SnapshotState | None) -> None:
    """Raise unless ``version`` exists and is still being written (published snapshots are immutable)."""
    if state is None:
        raise SnapshotNotFoundError(f"no snapshot has version {version!r}; begin_snapshot() creates one")
    if state != "writing":
        raise SnapshotStateError(
            f"snapshot {version} is {state}, so it can no longer be written; begin a new version instead"
        )


def require_activatable(info: SnapshotInfo, expired: bool = False) -> None:
    """Raise ``SnapshotStateError`` saying why ``info`` cannot become current."""
    why = {
        "writing": "it was never published (its write did not finish, or did not pass validation)",
        "retired": "it was retired by prune; its rows are deleted or expiring",
    }.get(info.state)
    if why is None and expired:
        why = "its rows have outlived the store's snapshot TTL"
    if why:
        raise SnapshotStateError(f"cannot activate snapshot {info.version}: {why}")


def prune_plan(snapshots: Iterable[SnapshotInfo], keep: int, now: datetime, abandon_after_s: float) -> list[str]:
    """Versions ``prune(keep)`` retires: published ones beyond the newest ``keep`` (never the current one) and
    writes abandoned for longer than ``abandon_after_s``."""
    if keep < 1:
        raise ValueError(f"prune keeps at least 1 published version; got keep={keep}")
    newest_first = sorted(snapshots, key=lambda s: (s.created_at, s.version), reverse=True)
    published = [s for s in newest_first if s.state == "published"]
    retire = [s.version for s in published[keep:] if not s.current]
    retire += [
        s.version
        for s in newest_first
        if s.state == "writing" and (now - s.created_at).total_seconds() > abandon_after_s
    ]
    return retire


def array_problems(store: OnlineStore, version: str) -> list[str]:
    """One problem per stored array of ``version`` whose chunks are missing or fail their checksum."""
    problems = []
    for name in store.array_names(version):
        try:
            store.read_array(version, name)
        except CorruptRowError as exc:
            problems.append(str(exc))
    return problems


def check_publishable(store: OnlineStore, version: str, manifest: Mapping[str, Any]) -> tuple[int, int]:
    """What every backend's ``publish`` checks before the flip; returns the expected (user rows, item rows).

    Raises ``SnapshotNotFoundError``, ``SnapshotStateError`` (not ``writing``), ``ValueError`` (manifest lacks
    counts) or ``ValidationFailedError`` (rows missing, arrays corrupt or missing).
    """
    users, items = expected_counts(version, manifest)
    require_writing(version, store.get_snapshot(version).state)
    problems = store.validate(version, users, items) + missing_arrays(manifest, store.array_names(version))
    if problems:
        raise ValidationFailedError(version, problems)
    return users, items


def check_activatable(store: OnlineStore, info: SnapshotInfo, expired: bool = False) -> None:
    """What every backend's ``activate`` checks before it moves the pointer: the state (``SnapshotStateError``),
    then the rows and arrays against the manifest as ``publish`` did (``ValidationFailedError``), so a version
    corrupted since its publish is refused and current stays as it was."""
    require_activatable(info, expired)
    manifest = info.manifest or {}
    try:
        users, items = expected_counts(info.version, manifest)
    except ValueError as exc:
        raise ValidationFailedError(info.version, [str(exc)]) from None
    problems = store.validate(info.version, users, items) + missing_arrays(manifest, store.array_names(info.version))
    if problems:
        raise ValidationFailedError(info.version, problems)
