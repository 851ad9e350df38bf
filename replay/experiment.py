"""``lambdarec replay --experiment NAME``: the arms of an experiment as replay variants, scored on the same past
events before any traffic sees them.

Each arm ranks exactly as serving ranks it (:func:`lambdarec.experiments.arm_plans`): an arm's ``[serving]``
overrides become its merge weights and pool sizes through the one merge; the popular-only control is the
``popular`` variant (the snapshot's popularity, minus what the user has seen, as serving's control is). Every
arm is scored on every event (a paired comparison: no traffic split is needed offline). An arm pinned to a
snapshot version is scored on the replay's own snapshot, since replay trains its snapshots from the log; a
warning says so.

Example
-------
>>> variants = experiment_variants(settings, "home-v2")               # doctest: +SKIP
>>> [v.name for v in variants]
['home-v2/control', 'home-v2/diverse']
"""

from __future__ import annotations

from dataclasses import replace

from lambdarec.experiments import arm_plans
from lambdarec.logs import get_logger
from lambdarec.settings import Settings
from replay.variants import Variant, make_variant

log = get_logger(__name__)


def experiment_variants(settings: Settings, name: str) -> list[Variant]:
    """One variant per arm of experiment ``name``, named ``NAME/ARM``.

    Raises ``ValueError`` naming the configured experiments when ``name`` is not one of them.
    """
    exp = settings.experiments.get(name)
    if exp is None:
        known = ", ".join(settings.experiments) or "none"
        raise ValueError(f"--experiment {name!r} is not in the settings ([experiments.{name}]); configured: {known}")
    plans = arm_plans(settings)
    variants = []
    for arm in exp.arms:
        plan = plans[name, arm.name]
        variant = make_variant("popular" if plan.popular_only else "lambda", plan.weights)
        variants.append(replace(variant, name=f"{name}/{arm.name}"))
        if plan.snapshot is not None:
            log.warning("replay.pinned_arm", experiment=name, arm=arm.name, snapshot=plan.snapshot,
                        effect="scored on the replay's own snapshot")  # fmt: skip
    return variants
