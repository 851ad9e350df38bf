"""The readiness probes behind ``deploy/local/services up`` and ``status``: a hand-written CQL client and Kafka
client that prove a server answers a query. They run against the real Cassandra and Kafka the tests use, against a
closed port, and against servers that answer something else; ``wait_for`` on top of them says which service did
not come up and why."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from svc.cql import probe_cql
from svc.kafka import probe_kafka
from svc.wait import wait_for
from svc.wire import ProbeError

from tests.unit.deploy_local.conftest import SVCTOOL, free_port, svctool


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


@pytest.fixture(params=[b"", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"], ids=["closes", "http"])
def wrong_server(request: pytest.FixtureRequest) -> Iterator[int]:
    """A loopback server that reads a little, answers ``request.param`` (nothing, or an HTTP reply) and hangs up."""
    answer: bytes = request.param
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    conn.recv(1024)
                    conn.sendall(answer)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    listener.close()


@pytest.mark.integration
@pytest.mark.cassandra
def test_the_cql_probe_reads_the_release_version_of_a_real_cassandra(cassandra_endpoint: tuple[str, int]) -> None:
    host, port = cassandra_endpoint
    info = probe_cql(host, port)
    assert re.fullmatch(r"release_version \d+\.\d+\.\d+\S*", info), info
    cli = svctool("probe-cql", host, str(port))
    assert (cli.returncode, cli.stdout.strip()) == (0, info)


@pytest.mark.integration
@pytest.mark.kafka
def test_the_kafka_probe_lists_the_live_brokers_of_a_real_kafka(kafka_endpoint: tuple[str, int]) -> None:
    host, port = kafka_endpoint
    info = probe_kafka(host, port)
    match = re.fullmatch(r"cluster (\S+), controller (-?\d+), brokers (.+)", info)
    assert match, info
    assert f":{port}" in match.group(3), "the broker we asked lists itself"
    cli = svctool("probe-kafka", host, str(port))
    assert cli.returncode == 0 and cli.stdout.startswith(f"cluster {match.group(1)}, ")


@pytest.mark.parametrize(("kind", "probe"), [("cql", probe_cql), ("kafka", probe_kafka)])
def test_a_closed_port_fails_the_probe_and_names_the_address(kind: str, probe, closed_port: int) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConnectionRefusedError):
        probe("127.0.0.1", closed_port)
    cli = svctool(f"probe-{kind}", "127.0.0.1", str(closed_port))
    assert cli.returncode == 1 and cli.stdout == ""
    assert cli.stderr.startswith(f"{kind} 127.0.0.1:{closed_port}: ")
    assert "refused" in cli.stderr.lower()


@pytest.mark.parametrize("probe", [probe_cql, probe_kafka], ids=["cql", "kafka"])
def test_a_server_that_speaks_another_protocol_is_not_ready(probe, wrong_server: int) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProbeError):
        probe("127.0.0.1", wrong_server)


def _spec(name: str, kind: str, port: int, pidfile: Path, marker: str, log: Path) -> str:
    return "\x1f".join([name, kind, "127.0.0.1", str(port), str(pidfile), marker, str(log)])


@pytest.fixture
def this_process(tmp_path: Path) -> tuple[Path, str]:
    """A pid file naming a live process whose command line carries a marker: this test's own interpreter."""
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    return pidfile, Path(f"/proc/{os.getpid()}/cmdline").read_bytes().split(b"\0")[0].decode()


@pytest.mark.integration
@pytest.mark.cassandra
@pytest.mark.kafka
def test_wait_returns_once_every_service_answers(
    cassandra_endpoint: tuple[str, int], kafka_endpoint: tuple[str, int], this_process, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    pidfile, marker = this_process
    log = tmp_path / "server.log"
    specs = [
        _spec("cassandra", "cql", cassandra_endpoint[1], pidfile, marker, log),
        _spec("kafka", "kafka", kafka_endpoint[1], pidfile, marker, log),
    ]
    assert wait_for(30, specs) == []
    err = capsys.readouterr().err
    assert f"services: cassandra is up on 127.0.0.1:{cassandra_endpoint[1]}" in err
    assert f"services: kafka is up on 127.0.0.1:{kafka_endpoint[1]}" in err


def test_wait_names_a_service_that_does_not_answer_in_time_with_its_log(
    closed_port: int, this_process, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    pidfile, marker = this_process
    log = tmp_path / "system.log"
    log.write_text("INFO starting\nERROR could not bind the native transport\n")
    assert wait_for(2, [_spec("cassandra", "cql", closed_port, pidfile, marker, log)]) == ["cassandra"]
    err = capsys.readouterr().err
    assert f"cassandra did not answer on 127.0.0.1:{closed_port} within 2s" in err
    assert "refused" in err.lower(), "the last probe error is shown"
    assert "ERROR could not bind the native transport" in err
    assert "LAMBDAREC_SERVICES_TIMEOUT" in err


def test_wait_gives_up_at_once_on_a_service_that_exited(closed_port: int, tmp_path: Path) -> None:
    pidfile, log = tmp_path / "kafka.pid", tmp_path / "server.log"
    pidfile.write_text("999999999\n")
    log.write_text("FATAL the controller port is in use\n")
    spec = _spec("kafka", "kafka", closed_port, pidfile, "-Dlambdarec.service.home=x", log)
    cli = subprocess.run(
        [sys.executable, str(SVCTOOL), "wait", "60", spec],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 1
    assert cli.stdout.strip() == "kafka", "the failed services, for `services up` to stop"
    assert "services: ERROR: kafka exited during startup (pid 999999999)." in cli.stderr
    assert "FATAL the controller port is in use" in cli.stderr
