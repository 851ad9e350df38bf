"""``lambdarec serve`` in a subprocess on a free port, as an operator runs it: its settings written to a TOML
file, its base URL handed out once ``/readyz`` says 200, stopped (SIGTERM, then SIGKILL) afterwards."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from lambdarec.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_toml(settings: Settings) -> str:
    """The store, log, lake (when set) and serving settings a test changed, as a config file holds them."""
    s, lg, lake = settings.serving, settings.log, settings.lake
    text = (
        f'[store]\nurl = "{settings.store.url}"\n'
        f'[log]\nurl = "{lg.url}"\ndead_letter = "{lg.dead_letter}"\nconsumer_group = "{lg.consumer_group}"\n'
        f"[serving]\ningest_key_hashes = {s.ingest_key_hashes}\nadmin_key_hashes = {s.admin_key_hashes}\n"
        f"snapshot_poll_s = {s.snapshot_poll_s}\ntrending_refresh_s = {s.trending_refresh_s}\n"
        f"store_timeout_ms = {s.store_timeout_ms}\n"
    )
    if lake.url is not None:
        options = "".join(f'{k} = "{v}"\n' for k, v in lake.storage_options.items())
        text += f'[lake]\nurl = "{lake.url}"\n[lake.storage_options]\n{options}'
    return text.replace("'", '"')


@contextmanager
def serve_process(
    settings: Settings, root: Path, ready_s: float = 120, extra_toml: str = "", ready_path: str = "/readyz"
) -> Iterator[str]:
    """``lambdarec serve`` on ``settings`` (config and ``server.log`` under ``root``); yields its base URL once
    ``ready_path`` answers 200 (``/livez``: a process that may have no snapshot). ``extra_toml``: more settings,
    appended to the config file (e.g. ``[experiments.NAME]`` tables)."""
    cfg = root / "serve.toml"
    cfg.write_text(settings_toml(settings) + extra_toml)
    port = free_port()
    with (root / "server.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lambdarec", "serve", "--port", str(port), "--config", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_s
        while True:
            try:
                if httpx.get(f"{base}{ready_path}", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (root / "server.log").read_text()[-3000:]
                raise AssertionError(f"server not ready (exit {proc.poll()}):\n{log}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
