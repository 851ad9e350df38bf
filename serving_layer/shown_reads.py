"""Users' impressions rows joined to their states (``speed.feedback.own_consumer``): read with the user's other
reads, and joined per user by :func:`lambdarec.model.shown.join_shown`, so the merge reads ``FreshUser.shown``
whichever consumer wrote the impressions. An impressions row that does not decode costs that user their fatigue
only, never their list (logged).

Example
-------
>>> states = with_shown(states, read_shown_rows(store, ["u1"]))   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from lambdarec.logs import get_logger
from lambdarec.model.rows import ShownItems, UserState
from lambdarec.model.shown import join_shown
from lambdarec.store import OnlineStore
from lambdarec.store.errors import CorruptRowError

log = get_logger(__name__)


def usable(rows: Mapping[str, ShownItems] | CorruptRowError) -> Mapping[str, ShownItems]:
    """The rows that decoded (a ``CorruptRowError`` carries them; the bad ones are logged and left out)."""
    if isinstance(rows, CorruptRowError):
        log.warning("serving.corrupt_impressions_row", users=[str(k) for k in rows.keys][:20], reason=str(rows),
                    effect="served without their impression fatigue")  # fmt: skip
        return rows.rows
    return rows


def read_shown_rows(store: OnlineStore, user_ids: list[str]) -> Mapping[str, ShownItems]:
    """The users' impressions rows (blocking)."""
    try:
        return store.read_shown(user_ids) if user_ids else {}
    except CorruptRowError as exc:
        return usable(exc)


def with_shown(states: dict[str, UserState], rows: Mapping[str, ShownItems]) -> dict[str, UserState]:
    """``states`` with each user's impressions row joined to their fresh state (in place; returned)."""
    for user_id, row in rows.items():
        if (state := states.get(user_id)) is not None and row.shown:
            states[user_id] = replace(state, fresh=join_shown(state.fresh, row, user_id))
    return states
