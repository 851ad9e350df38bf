"""A million events: generated, written and read back within seconds, never per-row Python."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from batch_layer.datasets import write_log
from batch_layer.interactions import read_interactions
from batch_layer.matrix import build_matrix
from batch_layer.synth import SynthSpec, synthesize
from lambdarec.settings import BatchSettings


@pytest.mark.slow
def test_one_million_events_synthesise_read_and_aggregate_quickly(tmp_path):
    started = time.perf_counter()
    log = synthesize(SynthSpec(users=50_000, items=10_000, events=1_000_000, seed=1))
    write_log(log.events, tmp_path / "log.parquet")
    synth_s = time.perf_counter() - started

    started = time.perf_counter()
    frame, report = read_interactions(tmp_path / "log.parquet", BatchSettings(), as_of=datetime(2024, 3, 1, tzinfo=UTC))
    read_s = time.perf_counter() - started
    data = build_matrix(frame)

    assert report.rows_kept == 1_000_000
    assert data.matrix.sum() == pytest.approx(float(frame["weight"].sum()), rel=1e-4)
    # Measured about 1 s and 0.4 s on two cores; the bounds leave room for a slow CI machine.
    assert synth_s < 15, f"synthesising 1M events took {synth_s:.1f} s"
    assert read_s < 10, f"reading 1M rows took {read_s:.1f} s"
