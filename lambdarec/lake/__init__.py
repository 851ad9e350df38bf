"""The master dataset port: an append-only Delta Lake table of every event that entered the system.

Example
-------
>>> lake = open_lake(settings)                  # doctest: +SKIP
>>> lake.positions()
{0: 1200, 1: 1187, 2: 1210}
"""

from __future__ import annotations

from lambdarec.lake.commits import AppendResult, app_id
from lambdarec.lake.delta import Lake
from lambdarec.lake.erasures import Erasure
from lambdarec.lake.errors import LakeEmptyError, LakeError
from lambdarec.lake.schema import EVENTS_SCHEMA, IMPORT_PREFIX, SOURCE_LOG, dead_letter_rows, event_rows
from lambdarec.settings import LakeSettings, Settings

__all__ = [
    "EVENTS_SCHEMA",
    "IMPORT_PREFIX",
    "SOURCE_LOG",
    "AppendResult",
    "Erasure",
    "Lake",
    "LakeEmptyError",
    "LakeError",
    "app_id",
    "dead_letter_rows",
    "event_rows",
    "open_lake",
]


def open_lake(settings: Settings | LakeSettings) -> Lake:
    """The lake that ``lake.url`` names; ``LakeError`` when it is unset."""
    return Lake(settings.lake if isinstance(settings, Settings) else settings)
