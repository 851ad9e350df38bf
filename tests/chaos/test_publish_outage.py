"""Cassandra killed (SIGKILL) while the nightly job writes a snapshot (``make chaos`` only: a second restart).

Checks: the job exits non-zero naming its own failure (a store write), not the lock release that failed after
it; the previous snapshot stays current and intact, and serving keeps serving it; a rerun before the lock lapses
says how long is left; a rerun after it publishes; serving swaps to it by itself.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import time

import pytest

from tests.chaos.conftest import TRIALS
from tests.chaos.deployment import Deployment, get, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.cassandra,
    pytest.mark.slow,
    pytest.mark.chaos_full,
    pytest.mark.timeout(1500),
]


@pytest.mark.parametrize("trial", range(TRIALS))
def test_cassandra_killed_mid_publish(deployment: Deployment, rng: random.Random, trial: int) -> None:
    services = deployment.services
    first = deployment.publish_first_snapshot()
    serve = deployment.start_serve()
    from batch_layer.synth import SynthSpec, synthesize

    path = deployment.root / "bigger.parquet"
    synthesize(SynthSpec(users=20_000, items=500, events=200_000, seed=rng.randrange(1000))).events.write_parquet(path)
    cmd = [sys.executable, "-m", "lambdarec", "batch", "run", "-i", str(path), "--as-of", "2024-02-01T00:00:00Z",
           "--no-progress", "--force"]  # fmt: skip
    job = subprocess.Popen(cmd, env=deployment.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    assert job.stderr is not None
    for line in job.stderr:
        seen.append(line)
        if '"batch.writing"' in line:
            break
    time.sleep(rng.uniform(0.0, 0.3))  # 20k user rows take about 1.5-3 s in one-partition batches: kill inside them
    services.kill("cassandra")
    _, err = job.communicate(timeout=300)
    err = "".join(seen) + err
    assert job.returncode not in (0, None), err[-3000:]
    message = next(ln for ln in err.splitlines() if ln.startswith("error:"))
    assert "locks" not in message, f"the lock release hid the real error: {message}"
    assert "Cassandra" in message, message

    services.up("cassandra")
    wait_until(lambda: get(serve + "/readyz")[0] == 200, "serve to be ready again", 90)
    assert get(serve + "/readyz")[1]["snapshot"] == first
    locked = deployment.lambdarec(*cmd[3:], timeout=600)
    if locked.returncode == 4:  # the killed job's lock has not lapsed yet: the message says for how long
        assert re.search(r"lapses in \d+ s", locked.stderr), locked.stderr[-2000:]
        time.sleep(int(re.search(r"lapses in (\d+) s", locked.stderr).group(1)) + 1)
        locked = deployment.lambdarec(*cmd[3:], timeout=600)
    assert locked.returncode == 0, locked.stderr[-3000:]
    pinged = deployment.lambdarec("store", "ping", "--json", timeout=120)
    assert pinged.returncode == 0 and first not in pinged.stdout
    wait_until(lambda: get(serve + "/readyz")[1]["snapshot"] != first, "serve to swap to the new snapshot", 60)
    assert deployment.alive("serve")
