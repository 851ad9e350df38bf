"""Session-scoped real services for the tests.

Each service comes from, in order: ``LAMBDAREC_TEST_CASSANDRA`` / ``LAMBDAREC_TEST_KAFKA`` (``host:port``) when set;
testcontainers when a Docker engine answers; else ``deploy/local/services up`` (real Apache Cassandra and Kafka on
the JDK). With ``CI=true`` a service that cannot be provided fails the run with the reason; elsewhere the tests
that need it are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ROOT / "deploy" / "local" / "services"
CASSANDRA_IMAGE = "cassandra:5.0.9"  # the versions deploy/local and deploy/compose.yaml run
KAFKA_IMAGE = "apache/kafka:4.4.0"


def service_unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and a required service is unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def _parse(endpoint: str, var: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise pytest.UsageError(f"${var}={endpoint!r} is not host:port")
    return host, int(port)


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _from_deploy_local(service: str, var: str) -> tuple[str, int]:
    proc = subprocess.run([str(SERVICES), "up", service], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        service_unavailable(
            f"deploy/local/services up {service} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    for raw in proc.stdout.splitlines():
        line = raw.removeprefix("export ").strip()
        if line.startswith(var + "="):
            return _parse(line.split("=", 1)[1].strip("'\""), var)
    service_unavailable(f"deploy/local/services up {service} printed no {var} line:\n{proc.stdout}")
    raise AssertionError("unreachable")


def _provide(service: str, var: str, request: pytest.FixtureRequest) -> tuple[str, int]:
    if os.environ.get(var):
        return _parse(os.environ[var], var)
    if _docker_answers():
        if service == "cassandra":
            from testcontainers.cassandra import CassandraContainer

            container = CassandraContainer(CASSANDRA_IMAGE)
            container.start()
            request.addfinalizer(container.stop)
            return container.get_container_host_ip(), int(container.get_exposed_port(9042))
        from testcontainers.kafka import KafkaContainer

        container = KafkaContainer(KAFKA_IMAGE).with_kraft()
        container.start()
        request.addfinalizer(container.stop)
        return _parse(container.get_bootstrap_server(), var)
    return _from_deploy_local(service, var)


@pytest.fixture(scope="session")
def cassandra_endpoint(request: pytest.FixtureRequest) -> tuple[str, int]:
    """(host, port) of a real Apache Cassandra answering CQL."""
    return _provide("cassandra", "LAMBDAREC_TEST_CASSANDRA", request)


@pytest.fixture(scope="session")
def kafka_endpoint(request: pytest.FixtureRequest) -> tuple[str, int]:
    """(host, port) of a real Apache Kafka broker in KRaft mode."""
    return _provide("kafka", "LAMBDAREC_TEST_KAFKA", request)


# ---- the lake's S3-compatible server (SeaweedFS; never MinIO) ------------------------------------------------
SEAWEEDFS_IMAGE = "chrislusf/seaweedfs:latest"  # only where a Docker engine answers; deploy/local pins a version
S3_BUCKET = "lambdarec"  # deploy/local/seaweedfs.py creates it; the testcontainers branch below too


def _create_bucket(host: str, port: int) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + 120
    while True:
        try:
            req = urllib.request.Request(f"http://{host}:{port}/{S3_BUCKET}", method="PUT", data=b"")
            urllib.request.urlopen(req, timeout=5).close()
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 409:
                return
            error: Exception = exc
        except OSError as exc:
            error = exc
        if time.monotonic() > deadline:
            service_unavailable(f"the S3 server at {host}:{port} did not create bucket {S3_BUCKET}: {error}")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def s3_endpoint(request: pytest.FixtureRequest) -> tuple[str, int]:
    """(host, port) of a real S3-compatible server (SeaweedFS) with the bucket ``lambdarec``.

    ``LAMBDAREC_TEST_S3`` when set; else testcontainers; else ``deploy/local/services up seaweedfs`` (which builds
    the server once from source, about 17 CPU-minutes, and caches it).
    """
    var = "LAMBDAREC_TEST_S3"
    if os.environ.get(var):
        host, port = _parse(os.environ[var], var)
    elif _docker_answers():
        from testcontainers.core.container import DockerContainer

        container = (
            DockerContainer(SEAWEEDFS_IMAGE).with_command("server -s3 -ip.bind=0.0.0.0").with_exposed_ports(8333)
        )
        container.start()
        request.addfinalizer(container.stop)
        host, port = container.get_container_host_ip(), int(container.get_exposed_port(8333))
    else:
        proc = subprocess.run([str(SERVICES), "up", "seaweedfs"], capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            service_unavailable(
                f"deploy/local/services up seaweedfs failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
            )
        line = next((x for x in proc.stdout.splitlines() if x.startswith(f"export {var}=")), None)
        if line is None:
            service_unavailable(f"deploy/local/services up seaweedfs printed no {var} line:\n{proc.stdout}")
        host, port = _parse(line.split("=", 1)[1].strip("'\""), var)  # type: ignore[union-attr]
    _create_bucket(host, port)
    return host, port


@pytest.fixture(scope="session")
def s3_storage_options(s3_endpoint: tuple[str, int]) -> dict[str, str]:
    """delta-rs storage options for the test S3 server (conditional puts are the lake's own default)."""
    host, port = s3_endpoint
    return {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "lambdarec",
        "AWS_SECRET_ACCESS_KEY": "lambdarec",
    }
