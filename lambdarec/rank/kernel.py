"""Whether a merge runs the fused kernel (:mod:`lambdarec.rank.fused`, numba) or the numpy steps, and when the
kernel is loaded.

Loading it imports numba and compiles the kernel, or loads it from numba's cache: about ten seconds of CPU on a
machine's (or a fresh container's) first run, about a second after, and about 120 MiB of memory. So only serving
loads it, in a background thread when it starts (:func:`load_in_background`), ranking with the numpy steps until
it is ready: no request waits for a compile. Everything else (a replay, whose blocks rarely hold one request;
``lambdarec recommend``, one list) runs the numpy steps unless it calls :func:`load`. ``LAMBDAREC_FUSED_MERGE=0``
keeps every merge on the numpy steps (and numba unloaded): the same lists, for a comparison or a machine where
numba cannot run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from lambdarec.logs import get_logger

log = get_logger(__name__)

ENABLED = os.environ.get("LAMBDAREC_FUSED_MERGE", "1") != "0"
_WARMING, _OFF = "warming", "off"
# "kernel": rank_fused once loaded, or _OFF after a failed load; "warming": loading; "thread": the background load
_state: dict[str, Any] = {}
_lock = threading.Lock()


def kernel() -> Callable[..., Any] | None:
    """``lambdarec.rank.fused.rank_fused`` once loaded; None before (or while it loads), after a failed load, or
    when switched off."""
    found = _state.get("kernel")
    return found if ENABLED and found is not None and found is not _OFF else None


def loaded() -> bool:
    """Whether merges run the fused kernel now."""
    return kernel() is not None


def load(timeout_s: float = 300.0) -> bool:
    """Load the kernel now, in this thread; when a background load is under way, wait for it (up to
    ``timeout_s``). Whether merges run the kernel."""
    with _lock:
        here = ENABLED and "kernel" not in _state and _WARMING not in _state
        if here:
            _state[_WARMING] = True
    if here:
        _load()
    return wait(timeout_s)


def load_in_background(then: Callable[[], object] | None = None) -> threading.Thread | None:
    """Load the kernel in a daemon thread (serving's start); merges run the numpy steps until it is ready.
    ``then`` runs in that thread once the load has ended, loaded or not (not when no load starts here)."""
    with _lock:
        if not ENABLED or "kernel" in _state or _WARMING in _state:
            return None
        _state[_WARMING] = True
        thread = _state["thread"] = threading.Thread(
            target=_load, args=(then,), name="lambdarec-merge-kernel", daemon=True
        )
    thread.start()
    return thread


def wait(timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for a background load to end; whether the kernel is loaded (benchmarks measure
    the path serving settles on, not the start-up)."""
    thread = _state.get("thread")
    if thread is not None:
        thread.join(timeout_s)
    return loaded()


def _load(then: Callable[[], object] | None = None) -> None:
    try:
        from lambdarec.rank.fused import rank_fused, warm

        warm()
        _state["kernel"] = rank_fused
        log.info("merge.kernel_loaded")
    except Exception as exc:  # the numpy steps rank every list as well; the log says why they do
        _state["kernel"] = _OFF
        log.warning("merge.kernel_unavailable", reason=repr(exc), effect="every merge runs the numpy steps")
    finally:
        _state.pop(_WARMING, None)
        if then is not None:
            then()
