"""Appending raw lines to the event log as a producer that skips validation would (shared by the speed and
archiver integration tests)."""

from __future__ import annotations

import json

from lambdarec.eventlog import open_log
from lambdarec.settings import Settings


def append_raw(settings: Settings, lines: list[bytes]) -> None:
    """Append ``lines`` unchecked, each keyed by its user id where one can be read (else no key)."""
    keys = []
    for raw in lines:
        try:
            keys.append(json.loads(raw).get("user_id"))
        except (ValueError, RecursionError):
            keys.append(None)
    with open_log(settings) as log:
        log.ensure_topic()
        log.append(lines, keys=keys)
