"""numba's ``njit`` as the project's compiled kernels use it: without the GIL, and cached on disk where numba finds
a writable place for the cache (``NUMBA_CACHE_DIR`` where set: the image sets ``/tmp/numba``; else the package's
``__pycache__``, else the user's cache folder); where none is writable, compiled once per process, and the log says
so (``numba.cache_unavailable``).

Importing this module loads numba (about half a second): only the modules holding kernels import it, and they are
imported where a kernel is first needed (:mod:`lambdarec.model.survivors`, :mod:`lambdarec.rank.fused_kernels`).
"""

from __future__ import annotations

from numba import njit

from lambdarec.logs import get_logger

log = get_logger(__name__)


def compiled(fn=None, *, reassociate: bool = False):  # type: ignore[no-untyped-def]
    """``fn`` compiled without the GIL, cached on disk where numba finds a writable place for it. ``reassociate``:
    float sums may be regrouped (vectorised) and multiply-adds fused, so they round differently from a loop's
    order; NaN and inf keep their meaning (no other fast-math flag is given)."""
    if fn is None:
        return lambda f: compiled(f, reassociate=reassociate)
    fastmath = {"reassoc", "contract"} if reassociate else False
    try:
        return njit(nogil=True, cache=True, fastmath=fastmath)(fn)
    except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available" (read-only filesystem)
        log.warning("numba.cache_unavailable", function=fn.__name__, reason=str(exc))
        return njit(nogil=True, fastmath=fastmath)(fn)
