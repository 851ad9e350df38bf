"""The speed consumer's process settings: what a long-running, allocation-heavy consumer changes in the
interpreter it runs in."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

from lambdarec.logs import get_logger

log = get_logger(__name__)


def raise_gc_threshold(young: int) -> tuple[int, ...]:
    """Let the youngest garbage-collector generation grow to ``young`` new objects before it runs (never lowered;
    0 changes nothing). The consumer allocates a few hundred objects per event that mostly die within the poll:
    collecting every 700 of them (Python's default) rescans the survivors over and over. Returns the thresholds
    before, for :func:`restore_gc_threshold` when the consumer closes (other code in the process keeps its own)."""
    before = gc.get_threshold()
    current, *older = before
    if young > current:
        gc.set_threshold(young, *older)
        log.debug("speed.gc_threshold", young=young, was=current)
    return before


def restore_gc_threshold(before: tuple[int, ...]) -> None:
    gc.set_threshold(*before)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cycle collector paused for one unit of work (a poll-to-commit cycle, a replay flush), then left to run:
    the work allocates many short-lived containers that reference counting frees by its end, so the collector's
    passes over them meanwhile find nothing (about a quarter of the impressions consumer's CPU). Left alone where
    it was paused already."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
