"""The row types live in the core: the math that reads them loads no storage module (issue 13)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from lambdarec.model.rows import NO_STATE, UserRow, UserState
from lambdarec.store import FreshUser as StoreFreshUser
from lambdarec.store import UserRow as StoreUserRow


def test_the_math_imports_no_storage_module() -> None:
    probe = (
        "import sys, lambdarec.model.freshstate, lambdarec.rank.merge, lambdarec.rank.trending, lambdarec.model.rows\n"
        "print(sorted(m for m in sys.modules if m.startswith('lambdarec.store')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_store_exports_the_core_types_and_user_state_holds_them() -> None:
    assert StoreUserRow is UserRow and StoreFreshUser.__module__ == "lambdarec.model.rows"
    row = UserRow("u1", np.array([1], np.int32), np.array([0.5], np.float32), np.array([], np.int32),
                  np.array([], np.float32))  # fmt: skip
    state = UserState(batch_row=row)
    assert state.batch_row is row and state.fresh is None and UserState() == NO_STATE
