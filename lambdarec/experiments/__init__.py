"""A/B experiments: sticky assignment of users (or sessions) to arms, and what each arm changes in serving.

Pure functions of the settings and the request, shared by serving and replay. The per-arm report reading the
master dataset is :mod:`lambdarec.experiments.report`.
"""

from lambdarec.experiments.arms import POPULAR_ONLY, ArmPlan, arm_plan, arm_plans, arm_serving, popular_only_inputs
from lambdarec.experiments.assignment import (
    Assignment,
    Unit,
    assign_arm,
    assignments,
    in_traffic,
    served_assignment,
    unit_hash,
)

__all__ = [
    "POPULAR_ONLY",
    "ArmPlan",
    "Assignment",
    "Unit",
    "arm_plan",
    "arm_plans",
    "arm_serving",
    "assign_arm",
    "assignments",
    "in_traffic",
    "popular_only_inputs",
    "served_assignment",
    "unit_hash",
]
