"""The stdlib tools behind ``deploy/local/services`` (``deploy/local/svctool.py`` and its ``svc/`` modules).

They run under the machine's ``python3`` with ``deploy/local`` as the script's folder, so the tests put that folder
on ``sys.path`` the same way to import ``svc``, and run ``svctool.py`` as ``services`` does.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

LOCAL = Path(__file__).resolve().parents[3] / "deploy" / "local"
SVCTOOL = LOCAL / "svctool.py"

if str(LOCAL) not in sys.path:
    sys.path.insert(0, str(LOCAL))


def svctool(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python3 deploy/local/svctool.py ARGS`` as ``deploy/local/services`` runs it."""
    return subprocess.run([sys.executable, str(SVCTOOL), *args], capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
