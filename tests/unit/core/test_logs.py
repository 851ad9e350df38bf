"""One log format per stream: the libraries' stdlib loggers (kafka-python, cassandra-driver, uvicorn, ray) render
through the same structured pipeline as lambdarec's own logs (issue 18 item 7: kafka-python's plain-text lines were
interleaved with the JSON lines on stderr)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from lambdarec.logs import configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    configure_logging()  # what a command would configure: the environment's level and format


def _lines(err: str) -> list[dict]:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]  # every line is one JSON object, or this raises


def test_library_records_are_json_lines_with_our_keys(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="INFO", fmt="json")
    get_logger("lambdarec.test").info("ours.event", answer=42)
    logging.getLogger("kafka.conn").warning("<BrokerConnection node_id=1>: Connection closed")
    logging.getLogger("cassandra.cluster").error("Control connection failed")
    logging.getLogger("uvicorn.error").info("Uvicorn running on http://127.0.0.1:8000")
    logging.getLogger("ray").warning("ray says")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("kafka.consumer").exception("failed")
    records = _lines(capsys.readouterr().err)
    by_event = {r["event"]: r for r in records}
    assert by_event["ours.event"]["answer"] == 42 and by_event["ours.event"]["level"] == "info"
    closed = by_event["<BrokerConnection node_id=1>: Connection closed"]
    assert (closed["level"], closed["logger"]) == ("warning", "kafka.conn")
    assert by_event["Control connection failed"]["level"] == "error"
    assert by_event["Uvicorn running on http://127.0.0.1:8000"]["level"] == "info"
    assert by_event["ray says"]["logger"] == "ray"
    assert "ValueError: boom" in by_event["failed"]["exception"]
    assert all("timestamp" in r and "level" in r for r in records)


def test_client_libraries_info_chatter_is_debug(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="INFO", fmt="json")
    logging.getLogger("kafka.consumer.fetcher").info("Resetting offset for partition TopicPartition(topic='t')")
    logging.getLogger("cassandra.policies").info("Using datacenter 'datacenter1'")
    logging.getLogger("uvicorn.error").info("Started server process")
    events = [r["event"] for r in _lines(capsys.readouterr().err)]
    assert events == ["Started server process"]
    configure_logging(level="DEBUG", fmt="json")
    logging.getLogger("kafka.consumer.fetcher").info("Resetting offset")
    assert [r["event"] for r in _lines(capsys.readouterr().err)] == ["Resetting offset"]


@pytest.mark.integration
@pytest.mark.kafka
def test_a_real_kafka_python_client_logs_json_only(kafka_endpoint: tuple[str, int]) -> None:
    host, port = kafka_endpoint
    code = (
        "from lambdarec.logs import configure_logging; configure_logging(level='DEBUG', fmt='json')\n"
        "from kafka import KafkaAdminClient\n"
        f"admin = KafkaAdminClient(bootstrap_servers='{host}:{port}')\n"
        "admin.list_topics(); admin.close()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = _lines(proc.stderr)
    assert any(r.get("logger", "").startswith("kafka") for r in records)


@pytest.mark.slow
def test_a_local_ray_logs_json_only() -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed")
    code = (
        "from lambdarec.logs import configure_logging; configure_logging(fmt='json')\n"
        "from lambdarec.settings import BatchSettings\n"
        "from batch_layer.ray_cluster import ray_session\n"
        "import ray\n"
        'with ray_session(BatchSettings(ray={"local_cpus": 1, "object_store_mb": 100})):\n'
        "    @ray.remote\n"
        "    def f():\n        print('a worker prints'); return 1\n"
        "    assert ray.get(f.remote()) == 1\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = _lines(proc.stderr)
    assert any(r.get("logger", "").startswith("ray") for r in records)
    assert "a worker prints" not in proc.stderr + proc.stdout  # worker output stays in Ray's session logs
