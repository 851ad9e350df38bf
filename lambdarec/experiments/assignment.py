"""Sticky assignment of users (or anonymous sessions) to experiment arms: pure functions of the settings and the id.

Two independent stable hashes of (salt, id), never Python's per-process ``hash``:

- the **traffic** hash puts a unit in the experiment when it falls below ``traffic``, so raising the share only
  adds units and lowering it only removes some;
- the **arm** is picked by weighted rendezvous hashing: each arm draws ``-ln(u) / share`` from its own hash of
  (salt, arm name, id) and the smallest draw wins. An arm wins with probability ``share / sum(shares)``, and since
  an arm's draw depends only on its own share, changing one arm's share moves units only into or out of that arm,
  and adding or removing an arm moves only the units it gains or loses: the fewest moves possible.

Example
-------
>>> exp = ExperimentSettings(salt="s1", arms=[{"name": "a"}, {"name": "b"}])
>>> assign_arm(exp, "u42") in {"a", "b"}
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from lambdarec.settings import ExperimentSettings

Unit = Literal["user", "session"]
_SCALE = float(1 << 64)


def unit_hash(salt: str, part: str, unit_id: str) -> float:
    """A stable uniform number in (0, 1) for (salt, part, id): BLAKE2b, the same on every machine and version."""
    digest = hashlib.blake2b(f"{salt}\x1f{part}\x1f{unit_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _SCALE


def in_traffic(exp: ExperimentSettings, unit_id: str) -> bool:
    """Whether ``unit_id`` falls in the experiment's traffic share."""
    return unit_hash(exp.salt, "traffic", unit_id) < exp.traffic


def assign_arm(exp: ExperimentSettings, unit_id: str) -> str | None:
    """The arm of ``unit_id`` in ``exp``, or None when the unit is outside the experiment's traffic."""
    if not in_traffic(exp, unit_id):
        return None
    best, best_draw = None, math.inf
    for arm in exp.arms:
        if arm.share <= 0:
            continue
        draw = -math.log(unit_hash(exp.salt, f"arm:{arm.name}", unit_id)) / arm.share
        if draw < best_draw:
            best, best_draw = arm.name, draw
    return best


@dataclass(frozen=True)
class Assignment:
    """A unit's place in one experiment; ``arm`` None: outside its traffic."""

    experiment: str
    arm: str | None
    unit: Unit
    enabled: bool
    served: bool = False  # whether this assignment shapes the unit's lists (the first enabled one that has an arm)


def assignments(experiments: Mapping[str, ExperimentSettings], unit_id: str, unit: Unit = "user") -> list[Assignment]:
    """The unit's assignment in every experiment, in settings order; the first enabled one with an arm is served."""
    out, served = [], False
    for name, exp in experiments.items():
        arm = assign_arm(exp, unit_id)
        serve = not served and exp.enabled and arm is not None
        served = served or serve
        out.append(Assignment(name, arm, unit, exp.enabled, serve))
    return out


def served_assignment(
    experiments: Mapping[str, ExperimentSettings], unit_id: str | None, unit: Unit = "user"
) -> Assignment | None:
    """The one assignment that shapes the unit's lists (the first enabled experiment that has it in an arm)."""
    if not unit_id:
        return None
    for name, exp in experiments.items():
        if exp.enabled and (arm := assign_arm(exp, unit_id)) is not None:
            return Assignment(name, arm, unit, True, True)
    return None
