"""What explain says the rules did to a list: each item's ``components`` gain ``rule:<name>``, the number of items
that would have ranked above it without the rules and that this rule removed (``rule:unavailable: 2`` means two
items above it are unavailable, so it moved up two places). An item no rule moved has no ``rule:`` component.

Example
-------
>>> with_rule_components(filtered, unfiltered, view_reason)      # doctest: +SKIP
[Ranked(item_id='i9', ..., components={'cf': 0.8, ..., 'rule:expired': 1.0})]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import msgspec

from lambdarec.rank.merge import Ranked

EXPLAIN_DEPTH = 200  # items of the list without rules looked at beyond the page: explain's extra work is bounded


def with_rule_components(
    ranked: list[Ranked], unfiltered: list[Ranked], reason_of: Callable[[str], str | None]
) -> list[Ranked]:
    """``ranked`` (the list under the rules) with ``rule:<name>`` components, from ``unfiltered`` (the same
    request's list without them, from the top) and ``reason_of(item_id)`` (the rule that removes it, or None)."""
    position = {r.item_id: i for i, r in enumerate(unfiltered)}
    reasons = [reason_of(r.item_id) for r in unfiltered]
    out = []
    for item in ranked:
        above = Counter(x for x in reasons[: position.get(item.item_id, len(reasons))] if x is not None)
        moved = {f"rule:{name}": float(n) for name, n in sorted(above.items())}
        out.append(msgspec.structs.replace(item, components={**item.components, **moved}) if moved else item)
    return out
