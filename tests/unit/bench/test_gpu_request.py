"""A GPU benchmark asked for on a machine without a usable GPU is refused with a message and an exit code."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from batch_layer.train.device import cuda_available
from benchmarks.gpu import EXIT_NO_GPU, missing
from lambdarec.settings import BatchSettings


@pytest.mark.skipif(cuda_available(), reason="this machine has a CUDA device")
def test_gpu_benchmark_without_a_gpu_exits_with_its_code_and_says_what_is_missing() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "gpu", "--scale", "small"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
        check=False,
    )
    assert run.returncode == EXIT_NO_GPU, run.stderr[-2000:]
    assert "no CUDA driver or device" in run.stderr and "nothing ran on the CPU" in run.stderr
    assert '"bench"' not in run.stdout  # no figure was printed as if measured


def test_missing_names_the_faiss_build_on_a_cpu_only_faiss() -> None:
    import faiss

    if hasattr(faiss, "StandardGpuResources"):
        pytest.skip("this FAISS build has GPU support")
    assert any("faiss-gpu-cu12" in reason for reason in missing())


def test_the_benchmark_settings_are_valid_batch_settings() -> None:
    settings = BatchSettings(
        device="cuda", train={"model": "torch", "factors": 64}, torch={"loss": "softmax", "batch_size": 262_144}
    )
    assert settings.torch.batch_size == 262_144 and settings.device == "cuda"
