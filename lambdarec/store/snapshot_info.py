"""What the store says of one snapshot: its version, state, times, meta and manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

SnapshotState = Literal["writing", "published", "retired"]


@dataclass(frozen=True)
class SnapshotInfo:
    """What ``list_snapshots`` and ``get_snapshot`` return."""

    version: str
    state: SnapshotState
    current: bool
    created_at: datetime
    published_at: datetime | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "state": self.state,
            "current": self.current,
            "created_at": self.created_at.isoformat(),
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "meta": self.meta,
            "manifest": self.manifest,
        }


def stored_info(row: tuple[Any, ...], current: str | None) -> SnapshotInfo:
    """A ``SnapshotInfo`` from a stored (version, state, created, published, meta, manifest) row; times may be
    epoch seconds or naive UTC datetimes, meta and manifest JSON text."""

    def utc(t: Any) -> datetime | None:
        if t is None or isinstance(t, datetime):
            return t if t is None or t.tzinfo else t.replace(tzinfo=UTC)
        return datetime.fromtimestamp(t, UTC)

    version, state, created, published, meta, manifest = row
    return SnapshotInfo(version, state, version == current, utc(created), utc(published),  # type: ignore[arg-type]
                        json.loads(meta), json.loads(manifest) if manifest else None)  # fmt: skip
