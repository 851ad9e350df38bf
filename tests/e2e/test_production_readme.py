"""The README's "Production in ten minutes", run as written on a real Cassandra and a real Kafka.

The shell blocks of that section are read from README.md (never copied here) and run in order in one bash, in a
folder of the test's own. What differs from a reader's terminal is only the environment: the test's own keyspace,
topic and ports (the section reads them as ``${KEYSPACE:-recs}`` and so on), and ``deploy/local/services`` is the
folder's own small script answering ``up`` with the endpoints the test session already has (the shared services,
which the real script would also just report, since they are running). Then it checks what the reader would see.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.cassandra, pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Production in ten minutes"
RUN_TIMEOUT_S = 540


def readme_blocks() -> list[str]:
    """The ```sh blocks of the README section, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end >= 0 else len(text)]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def services_script(cassandra: tuple[str, int], kafka: tuple[str, int]) -> str:
    return (
        "#!/bin/sh\n# the test session's services, reported as `deploy/local/services up` reports running ones\n"
        f'[ "$1" = up ] || exit 2\necho "export LAMBDAREC_TEST_CASSANDRA={cassandra[0]}:{cassandra[1]}"\n'
        f'echo "export LAMBDAREC_TEST_KAFKA={kafka[0]}:{kafka[1]}"\n'
    )


def test_the_readme_section_has_every_step() -> None:
    script = "\n".join(readme_blocks())
    for step in ("deploy/local/services up", "?dc=$DC", "lambdarec store init", "lambdarec batch run",
                 "lambdarec speed run", "lambdarec serve", "serve new-key", "lambdarec events send",
                 "/v1/events", "/recommendations", "/metrics"):  # fmt: skip
        assert step in script, f"the README section lost the step {step!r}"


def test_production_in_ten_minutes_runs_as_written(
    tmp_path: Path, cassandra_endpoint: tuple[str, int], kafka_endpoint: tuple[str, int]
) -> None:
    work = tmp_path / "work"
    (work / "deploy" / "local").mkdir(parents=True)
    shim = work / "deploy" / "local" / "services"
    shim.write_text(services_script(cassandra_endpoint, kafka_endpoint))
    shim.chmod(0o755)
    keyspace, topic = f"lambdarec_readme_{secrets.token_hex(4)}", f"readme-{secrets.token_hex(4)}"
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDAREC_")}
    env |= {
        "KEYSPACE": keyspace,
        "TOPIC": topic,
        "PORT": str(port),
        "METRICS_PORT": str(metrics_port),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
    }
    script = "set -euo pipefail\n" + "\n".join(readme_blocks())
    proc = subprocess.Popen(["bash", "-c", script], cwd=work, env=env, text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the README section did not finish in {RUN_TIMEOUT_S} s\n{out[-3000:]}\n{err[-3000:]}")
    finally:
        _stop_group(proc.pid)
        try:
            _drop(cassandra_endpoint, keyspace, kafka_endpoint, topic)
        except Exception as exc:  # cleanup must not hide the run's own failure
            print(f"could not drop {keyspace} / {topic}: {exc}", file=sys.stderr)
    logs = {
        name: (work / "prod" / name).read_text()
        for name in ("speed.log", "serve.log")
        if (work / "prod" / name).exists()
    }
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-4000:]}\n{err[-4000:]}\n{logs}"

    nightly = json.loads((work / "prod" / "nightly.json").read_text())
    assert nightly["published"] is True
    version = nightly["version"]
    effective = (work / "prod" / "effective.toml").read_text()
    assert f'consumer_group = "{topic}-speed"' in effective and f'dead_letter = "{topic}-dead-letter"' in effective
    assert "datacenter" not in err  # the URL names its datacenter: no warning

    body = json.loads(next(line for line in out.splitlines() if line.startswith("{") and '"user_id":"u42"' in line))
    assert body["snapshot"] == version and len(body["items"]) == 5
    assert body["fresh_state_age_s"] is not None, body  # the list used the user's fresh state
    assert {"i7", "i9"}.isdisjoint(item["item_id"] for item in body["items"])  # fresh items are not recommended back
    assert re.search(r'^lambdarec_event_to_served_seconds_count\{serve="first"\} 1\.0$', out, re.M), out
    assert re.search(rf'^lambdarec_speed_snapshot_info\{{version="{version}"\}} 1\.0$', out, re.M), out
    assert re.search(r"^lambdarec_serving_snapshot_data_age_seconds \d", out, re.M), out

    for name, text in logs.items():  # one format per stream: kafka-python, cassandra-driver, uvicorn included
        lines = [line for line in text.splitlines() if line.strip()]
        assert lines, f"{name} is empty"
        bad = [line for line in lines if not _is_json(line)]
        assert not bad, f"{name} has lines that are not JSON: {bad[:5]}"


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _stop_group(pgid: int) -> None:
    """The README's background processes, if a failed step left them running (they are in the script's group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _drop(cassandra: tuple[str, int], keyspace: str, kafka: tuple[str, int], topic: str) -> None:
    from cassandra.cluster import Cluster
    from kafka import KafkaAdminClient

    cluster = Cluster([cassandra[0]], port=cassandra[1])
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
    finally:
        cluster.shutdown()
    admin = KafkaAdminClient(bootstrap_servers=f"{kafka[0]}:{kafka[1]}")
    try:
        existing = set(admin.list_topics())
        doomed = [t for t in (topic, f"{topic}-dead-letter") if t in existing]
        if doomed:
            admin.delete_topics(doomed)
    finally:
        admin.close()
