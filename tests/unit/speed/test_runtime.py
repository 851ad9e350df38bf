"""The consumer's process settings: the garbage collector's youngest generation is raised, never lowered."""

from __future__ import annotations

import gc

from lambdarec.settings import Settings
from speed_layer.runtime import collector_paused, raise_gc_threshold, restore_gc_threshold


def test_gc_threshold_is_raised_to_the_setting_and_never_lowered() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, *before[1:])
        raise_gc_threshold(Settings.load().speed.gc_young_threshold)
        assert gc.get_threshold() == (10_000, *before[1:])
        raise_gc_threshold(5_000)  # lower than what the process has: kept
        raise_gc_threshold(0)
        assert gc.get_threshold()[0] == 10_000
    finally:
        gc.set_threshold(*before)


def test_the_thresholds_before_come_back_when_the_consumer_is_done() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, *before[1:])
        saved = raise_gc_threshold(10_000)
        assert gc.get_threshold()[0] == 10_000
        restore_gc_threshold(saved)
        assert gc.get_threshold() == (700, *before[1:]), "other code in the process keeps its own collector setting"
    finally:
        gc.set_threshold(*before)


def test_the_collector_is_paused_for_the_work_and_runs_again_after_it_even_on_error() -> None:
    assert gc.isenabled()
    try:
        with collector_paused():
            assert not gc.isenabled()
            with collector_paused():  # nested (a replay flush inside a paused cycle): the outer one re-enables
                pass
            assert not gc.isenabled()
            raise RuntimeError("the work failed")
    except RuntimeError:
        pass
    assert gc.isenabled()
