"""Where the batch layer trains and scores: ``batch.device`` and ``batch.threads`` resolved for this machine.

The CUDA probe asks the driver directly (``libcuda``), so ``device = "auto"`` never imports torch.

Example
-------
>>> resolve_device("cpu")
'cpu'
>>> resolve_threads(3)
3
"""

from __future__ import annotations

import ctypes
import functools
import os
from typing import Literal

Device = Literal["cpu", "cuda"]


@functools.cache
def cuda_available() -> bool:
    """True when the CUDA driver loads and reports at least one device."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    try:
        return lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    except AttributeError:
        return False


def resolve_device(requested: str) -> Device:
    """``"cpu"`` or ``"cuda"`` for ``batch.device``: ``"auto"`` picks CUDA when a device is present.

    Raises
    ------
    ValueError
        ``requested`` is not ``cpu``, ``cuda`` or ``auto``.
    """
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested not in ("cpu", "cuda"):
        raise ValueError(f"batch.device must be 'cpu', 'cuda' or 'auto'; got {requested!r}")
    return requested  # type: ignore[return-value]


def resolve_threads(threads: int) -> int:
    """``batch.threads`` with 0 meaning every core this process may run on."""
    if threads < 0:
        raise ValueError(f"batch.threads must be >= 0 (0 = every core); got {threads}")
    if threads:
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
