"""``impressions --ways neighbour``: the control for "not slowed" on a shared machine. The same positive events
alone, while a process that only spins takes the impressions consumer's place (its CPU when ``--pin``, its
niceness: ``speed.feedback.impressions_nice``), against them alone with nothing beside them. What any busy
neighbour costs the positive path here (caches, memory bandwidth, the host's scheduling of two vCPUs); the
impressions ways' ratios below this one's are what impressions themselves cost it."""

from __future__ import annotations

import multiprocessing
import os
import time

from benchmarks.common import Result, Scale


def _spin(cpu: int | None, nice: int, stop) -> None:  # type: ignore[no-untyped-def]
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    os.nice(nice)
    while not stop.is_set():
        for _ in range(100_000):
            pass


def neighbour(published, apply, positives: list[bytes], scale: Scale, side_cpu: int | None) -> list[Result]:  # type: ignore[no-untyped-def]
    """``published(name)``: settings of a fresh store holding the snapshot; ``apply(settings, lines, 0)``: the
    impressions benchmark's own apply (seconds, CPU s, positive events applied, ...)."""
    ref = published("neighbour-ref")
    ref_s, ref_cpu, ref_n, *_ = apply(ref, positives, 0)
    ours = published("neighbour")
    stop = multiprocessing.get_context("fork").Event()
    spinner = multiprocessing.get_context("fork").Process(
        target=_spin, args=(side_cpu, ours.speed.feedback.impressions_nice, stop), daemon=True
    )
    spinner.start()
    time.sleep(0.2)  # spinning before the first batch
    try:
        ours_s, ours_cpu, ours_n, *_ = apply(ours, positives, 0)
    finally:
        stop.set()
        spinner.join(5)
    where = f"spinner on CPU {side_cpu}" if side_cpu is not None else "spinner unpinned"
    load = f"load average {os.getloadavg()[0]:.2f}"
    note = f"positive events alone, a process that only spins beside them ({where}); {load}"
    cpu_note = f"{note}; CPU s of the positive consumer's process: {ours_cpu:.2f} vs {ref_cpu:.2f} alone"
    return [
        Result("impressions", "positive_events_per_s_spinning_neighbour", ours_n / ours_s, ref_n / ref_s,
               "events/s", scale, note=note),
        Result("impressions", "positive_events_per_cpu_s_spinning_neighbour", ours_n / ours_cpu, ref_n / ref_cpu,
               "events/cpu-s", scale, note=cpu_note),
    ]  # fmt: skip
