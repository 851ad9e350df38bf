"""A synthetic log with a taste drift planted after the split, and headless Chromium to open reports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

START = datetime(2024, 1, 1, tzinfo=UTC)
SPLIT = START + timedelta(days=20)
DRIFT = START + timedelta(days=21)
CHROMIUM_INSTALL = "apt-get install -y chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)


@pytest.fixture(scope="session")
def drift_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 days of clickstream, 400 users, 300 items; from day 21 every user's taste clusters change."""
    from batch_layer.datasets import write_log
    from batch_layer.synth import SynthSpec, synthesize

    spec = SynthSpec(users=400, items=300, events=40_000, seed=7, days=30, start=START, drift_at=DRIFT)
    return write_log(synthesize(spec).events, tmp_path_factory.mktemp("replay") / "drift.parquet")


@pytest.fixture(scope="session")
def small_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Settings that keep the batch job quick on the small log."""
    path = tmp_path_factory.mktemp("replay-config") / "settings.toml"
    path.write_text("[batch.train]\nfactors = 32\niterations = 10\n")
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``lambdarec ARGS`` in a child process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "lambdarec", *args], capture_output=True, text=True, timeout=300, env=os.environ.copy()
    )


def chromium() -> str:
    """The headless Chromium binary; missing, the test fails under CI=true (with the install command) or skips."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    reason = f"headless Chromium is needed to open the HTML report; install it with `{CHROMIUM_INSTALL}`"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)
    raise AssertionError("unreachable")


def open_in_chromium(page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Open ``page`` in headless Chromium with a throwaway profile; console messages land on stderr."""
    with tempfile.TemporaryDirectory(prefix="lambdarec-chromium-") as profile:
        return subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
