"""Secrets never reach an error, a log line or a traceback (issue 12, finding 9).

The failing commands run as a user would run them (a subprocess of the console entry point), and their whole
output is searched for the secret.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lambdarec.masking import mask_secrets, register_secret
from lambdarec.settings import ConfigError, Settings

SECRET = "Pa55-w0rd-never-shown"
ROOT = Path(__file__).resolve().parents[3]


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "lambdarec", *args], env=full, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    line = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": 1764400000}
    path.write_text(json.dumps(line) + "\n")
    return path


LOG_CASES = {
    "kafka-userinfo": {
        "LAMBDAREC_LOG__URL": f"kafka://svc:{SECRET}@127.0.0.1:9/events"
    },  # refused: use log.kafka.password
    "bad-scheme": {"LAMBDAREC_LOG__URL": f"kafkaa://svc:{SECRET}@127.0.0.1:9/events"},
    "sqlite-host": {"LAMBDAREC_LOG__URL": f"sqlite://svc:{SECRET}@host/var/events"},
    "kafka-sasl": {  # nobody answers; the password is a setting
        "LAMBDAREC_LOG__URL": "kafka://127.0.0.1:9/events",
        "LAMBDAREC_LOG__KAFKA__USERNAME": "svc",
        "LAMBDAREC_LOG__KAFKA__PASSWORD": SECRET,
        "LAMBDAREC_LOG__REQUEST_TIMEOUT_MS": "1000",
    },
}
STORE_CASES = {  # only `speed run` opens the store
    "cassandra-down": {"LAMBDAREC_STORE__URL": f"cassandra://svc:{SECRET}@127.0.0.1:9/ks"},
    "cassandra-bad-keyspace": {"LAMBDAREC_STORE__URL": f"cassandra://svc:{SECRET}@127.0.0.1:9/bad-keyspace"},
    "sqlite-store-host": {"LAMBDAREC_STORE__URL": f"sqlite://svc:{SECRET}@host/var/store"},
}
CASES = [("speed", name, env) for name, env in {**LOG_CASES, **STORE_CASES}.items()] + [
    ("events", name, env) for name, env in LOG_CASES.items()
]


@pytest.mark.parametrize(("command", "name", "env"), CASES, ids=[f"{c}-{n}" for c, n, _ in CASES])
def test_failing_commands_never_print_the_password(
    tmp_path: Path, events_file: Path, command: str, name: str, env: dict[str, str]
) -> None:
    args = ["speed", "run", "--until-idle", "1"] if command == "speed" else ["events", "send", str(events_file)]
    if command == "speed":  # it waits out a dependency that does not answer, forever unless bounded
        env = env | {"LAMBDAREC_SPEED__GIVE_UP_AFTER_S": "2", "LAMBDAREC_SPEED__RETRY_MAX_S": "0.5"}
    result = run(args, env | {"LAMBDAREC_LOG_FORMAT": "json", "LAMBDAREC_LOG_LEVEL": "DEBUG"}, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert SECRET not in output, output
    assert output.strip(), "the command must still say what went wrong"


def test_mask_secrets_masks_url_passwords_and_registered_values() -> None:
    text = f"cannot reach kafka://u:{SECRET}@h:9092/t and cassandra://a:b%40c@h/ks; user=u"
    masked = mask_secrets(text)
    assert SECRET not in masked and "kafka://u:***@h:9092/t" in masked and "cassandra://a:***@h/ks" in masked
    register_secret("sasl-secret-value")
    assert mask_secrets("auth failed for password sasl-secret-value") == "auth failed for password ***"
    assert mask_secrets("nothing to hide") == "nothing to hide"


def test_settings_errors_mask_the_url_they_quote() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(overrides={"log": {"url": f"nope://u:{SECRET}@h/t"}})
    assert SECRET not in str(info.value) and "nope://u:***@h/t" in str(info.value)


def test_log_lines_and_tracebacks_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    from lambdarec.logs import configure_logging, get_logger

    configure_logging("INFO", "json")
    log = get_logger("test.masking")
    try:
        raise RuntimeError(f"broker kafka://u:{SECRET}@h/t refused")
    except RuntimeError:
        log.exception("failed", url=f"cassandra://u:{SECRET}@h/ks")
    logging.getLogger("kafka.conn").warning("connect to kafka://u:%s@h failed", SECRET)
    err = capsys.readouterr().err
    assert "failed" in err and "connect to" in err
    assert SECRET not in err, err
