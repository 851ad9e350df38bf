"""batch.device and batch.threads resolved for this machine."""

from __future__ import annotations

import os

import pytest

from batch_layer.train import device


def test_auto_follows_the_cuda_probe(monkeypatch) -> None:
    monkeypatch.setattr(device, "cuda_available", lambda: True)
    assert device.resolve_device("auto") == "cuda"
    monkeypatch.setattr(device, "cuda_available", lambda: False)
    assert device.resolve_device("auto") == "cpu"
    assert device.resolve_device("cuda") == "cuda"  # explicit: the trainer or searcher says if it cannot


def test_bad_values_are_named() -> None:
    with pytest.raises(ValueError, match=r"batch\.device"):
        device.resolve_device("tpu")
    with pytest.raises(ValueError, match=r"batch\.threads"):
        device.resolve_threads(-1)


def test_zero_threads_means_every_core_we_may_use() -> None:
    assert device.resolve_threads(0) == len(os.sched_getaffinity(0))
    assert device.resolve_threads(5) == 5
    assert isinstance(device.cuda_available(), bool)
