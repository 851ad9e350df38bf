"""A user's impressions row joined to their fresh row, as serving reads them: pure, no I/O.

With ``speed.feedback.own_consumer`` the impressions consumer keeps a user's impressions in a row of their own
(:class:`~lambdarec.model.rows.ShownItems`) and never learns of positive events, which the positive-event
consumer keeps in the fresh row. The join drops, per item, the impressions at or before the user's newest
positive event on it (the user acted on the item: it is not fatigued), exactly as the one-consumer path does when
it applies them in order, and adds what the fresh row holds itself (impressions applied by the positive-event
consumer before the setting was turned on; the impressions consumer, a new group, reads those again from the log:
an item's impression at the same event time in both rows counts once). The merge reads ``FreshUser.shown``.

Example
-------
>>> fresh = FreshUser(user_id="u1", recent=[("i7", 20.0)])
>>> row = ShownItems(user_id="u1", shown={"i7": [10.0, 30.0], "i9": [15.0]})
>>> join_shown(fresh, row, "u1").shown
{'i7': [30.0], 'i9': [15.0]}
"""

from __future__ import annotations

import msgspec

from lambdarec.model.rows import FreshUser, ShownItems


def last_positives(fresh: FreshUser) -> dict[str, float]:
    """Per item, the event time of the user's newest positive event the fresh row knows of."""
    out: dict[str, float] = {}
    for item, ts, *_ in (*fresh.events, *fresh.recent):
        if ts > out.get(item, float("-inf")):
            out[item] = ts
    return out


def join_shown(fresh: FreshUser | None, row: ShownItems | None, user_id: str) -> FreshUser | None:
    """``fresh`` with ``row``'s impressions after each item's newest positive event added to its ``shown``
    (a bare ``FreshUser`` when the user has impressions only); ``fresh`` itself when ``row`` adds nothing."""
    if row is None or not row.shown:
        return fresh
    base = fresh if fresh is not None else FreshUser(user_id=user_id)
    acted = last_positives(base)
    shown = dict(base.shown)
    for item, times in row.shown.items():
        after = acted.get(item)
        kept = times if after is None else [t for t in times if t > after]
        if kept:
            shown[item] = sorted({*shown[item], *kept}) if item in shown else kept  # once each (see above)
    return msgspec.structs.replace(base, shown=shown)
