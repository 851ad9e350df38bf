"""Bad input over HTTP gets a 4xx or a per-event refusal, never a 500 or a reset (issue 12, findings 1, 4, 14)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.unit.serving.conftest import ingest, make_settings

NOW = time.time()


def event(**fields: object) -> dict:
    return {"event_id": f"h-{time.time_ns()}", "user_id": "u1", "item_id": "i1", "event_type": "view"} | {
        "timestamp": NOW - 10,
        **fields,
    }


def post_raw(client: TestClient, body: bytes, content_type: str = "application/json") -> httpx.Response:
    return client.post("/v1/events", content=body, headers={**ingest(), "Content-Type": content_type})


@pytest.mark.parametrize("depth", [1_000, 5_000])
def test_a_deeply_nested_body_is_a_422_not_a_500(client: TestClient, depth: int) -> None:
    response = post_raw(client, b"[" * depth + b"]" * depth)
    assert response.status_code == 422, response.text
    assert "nested" in response.text and "events.max_json_depth" in response.text


def test_a_deeply_nested_event_in_a_batch_is_refused_on_its_own(client: TestClient) -> None:
    deep = "[" * 1000 + "]" * 1000
    good = json.dumps(event())
    body = f'[{good}, {{"event_id": "d", "user_id": "u", "item_id": "i", "event_type": "view", "x": {deep}}}]'
    response = post_raw(client, body.encode())
    assert response.status_code in (202, 422), response.text
    if response.status_code == 202:
        assert response.json()["accepted"] == 1 and response.json()["rejections"][0]["index"] == 1


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"timestamp": 1e30}, "timestamp"),
        ({"weight": 1e308}, "events.max_weight"),
        ({"user_id": "   "}, "field 'user_id'"),
        ({"item_id": "a\u0000b"}, "field 'item_id'"),
    ],
)
def test_out_of_range_values_are_refused_per_event(client: TestClient, fields: dict, reason: str) -> None:
    response = client.post("/v1/events", json=[event(), event(**fields)], headers=ingest())
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert body["rejections"][0]["index"] == 1 and reason in body["rejections"][0]["reason"]


def test_a_thirty_digit_timestamp_is_refused_per_event(client: TestClient) -> None:
    raw = json.dumps(event(timestamp=0)).replace('"timestamp": 0', '"timestamp": ' + "1" * 30)
    response = post_raw(client, raw.encode())
    assert response.status_code == 202, response.text
    assert response.json()["rejected"] == 1 and "out of range" in response.json()["rejections"][0]["reason"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_json_endpoints_refuse_other_content_types_with_415(client: TestClient, content_type: str) -> None:
    body = json.dumps(event()).encode()
    response = post_raw(client, body, content_type)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["message"]
    response = client.post("/v1/recommendations", content=b'{"users": ["u1"]}', headers={"Content-Type": content_type})
    assert response.status_code == 415, response.text


def test_json_with_a_charset_or_a_json_suffix_is_accepted(client: TestClient) -> None:
    for content_type in ("application/json; charset=utf-8", "application/problem+json", "Application/JSON"):
        assert post_raw(client, json.dumps(event()).encode(), content_type).status_code == 202


def test_a_missing_content_type_on_a_json_body_is_415(client: TestClient) -> None:
    response = client.post("/v1/events", content=json.dumps(event()).encode(), headers=ingest())
    assert response.status_code == 415, response.text


@pytest.mark.parametrize("user", ["   ", "%20", "%09u1"])
def test_a_blank_user_id_in_a_path_or_body_is_a_422(client: TestClient, user: str) -> None:
    assert client.get(f"/v1/users/{user}/recommendations").status_code == 422
    response = client.post("/v1/recommendations", json={"users": ["   "]})
    assert response.status_code == 422, response.text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raw_response(port: int, head: bytes) -> bytes:
    """Everything the server answers to ``head`` until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


def _status_of_raw_request(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head)
        data = b""
        while b"\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


@contextmanager
def _real_server(tmp_path: Path, serving: str = "") -> Iterator[int]:
    """``lambdarec serve`` in a subprocess on a free port, ready; yields the port."""
    settings = make_settings(tmp_path)
    port = _free_port()
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'[store]\nurl = "{settings.store.url}"\n[log]\nurl = "{settings.log.url}"\n[serving]\n{serving}\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "lambdarec", "serve", "--port", str(port), "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


PARSERS = pytest.mark.parametrize("parser", ["httptools", "h11"])


@PARSERS
def test_a_one_megabyte_url_gets_414_from_the_real_server(tmp_path: Path, parser: str) -> None:
    with _real_server(tmp_path, f'http_parser = "{parser}"') as port:
        for size in (100_000, 1_000_000):
            status = _status_of_raw_request(
                port, b"GET /v1/users/u1/recommendations?x=" + b"a" * size + b" HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            assert status.startswith(b"HTTP/1.1 414"), status
        assert httpx.get(f"http://127.0.0.1:{port}/livez", timeout=5).status_code == 200


@PARSERS
def test_request_headers_beyond_the_head_limit_get_431_naming_the_setting(tmp_path: Path, parser: str) -> None:
    with _real_server(tmp_path, f'http_parser = "{parser}"\nmax_url_bytes = 4096\nmax_head_bytes = 32768') as port:
        head = b"GET /livez HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"
        response = _raw_response(port, head)
        status, _, rest = response.partition(b"\r\n")
        assert status.startswith(b"HTTP/1.1 431"), response[:300]
        body = json.loads(rest.partition(b"\r\n\r\n")[2])
        assert body["status"] == 431
        assert "32768 bytes" in body["message"] and "serving.max_head_bytes" in body["message"]
        assert httpx.get(f"http://127.0.0.1:{port}/livez", timeout=5).status_code == 200


@PARSERS
def test_a_url_above_65535_bytes_is_served_where_max_url_bytes_allows_it(tmp_path: Path, parser: str) -> None:
    """httptools' URL parser stops at 65,535 bytes; the limit that holds is still ``serving.max_url_bytes``."""
    with _real_server(tmp_path, f'http_parser = "{parser}"\nmax_url_bytes = 200000') as port:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"GET /livez?pad=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            assert _read_response(conn).startswith(b"HTTP/1.1 200")
        status = _status_of_raw_request(port, b"GET /livez?pad=" + b"a" * 300_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 414"), status


def test_the_head_limit_counts_heads_not_bodies_nor_pipelined_requests(tmp_path: Path) -> None:
    """httptools (the default parser) has no head limit of its own: ours counts a head's bytes across reads and
    starts again at the next head, so a head trickled in under the limit, a body far over it, and requests
    pipelined on one connection are all answered as usual."""
    with _real_server(tmp_path, "max_url_bytes = 4096\nmax_head_bytes = 32768") as port:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            head = b"GET /livez HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 30_000 + b"\r\n\r\n"
            for i in range(0, len(head), 1000):  # one head in 31 reads, 30 KB of it: under the limit
                conn.sendall(head[i : i + 1000])
                time.sleep(0.002)
            assert _read_response(conn).startswith(b"HTTP/1.1 200")
        body = b"x" * 200_000  # far over the head limit: refused for what it is (no key), not as a head
        post = b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        post += b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        get = b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(post + get + get)  # pipelined: the body and the next heads in the same reads
            statuses = [_read_response(conn).split(b"\r\n", 1)[0] for _ in range(3)]
        assert statuses[0].startswith(b"HTTP/1.1 401"), statuses
        assert all(s.startswith(b"HTTP/1.1 200") for s in statuses[1:]), statuses


def _read_response(conn: socket.socket) -> bytes:
    """One whole response (head and a Content-Length body) from ``conn``, byte by byte past its head."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(1)
    head = data.decode("latin-1").lower()
    length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0]) if "content-length:" in head else 0
    body = b""
    while len(body) < length:
        body += conn.recv(length - len(body))
    return data + body


def test_a_poisoned_trending_row_leaves_every_list_finite_and_is_counted(fresh_store) -> None:
    import math

    from lambdarec.model.rows import TrendingItem
    from lambdarec.store import open_store
    from tests.unit.serving.conftest import serving, wait_for

    settings, _ = fresh_store
    with open_store(settings) as store:
        store.write_trending(
            [
                TrendingItem(item_id="i5", partition=0, count=math.inf, as_of=NOW),
                TrendingItem(item_id="i7", partition=0, count=3.0, as_of=NOW),
                TrendingItem(item_id="i8", partition=1, count=2.0, as_of=NOW),
            ]
        )
    with serving(settings) as client:
        wait_for(lambda: "i7" in client.get("/v1/users/nobody/recommendations").text, "trending items to serve")
        for user in ("nobody", "u1"):
            body = client.get(f"/v1/users/{user}/recommendations", params={"explain": "true"}).json()
            assert body["items"]
            for item in body["items"]:
                assert math.isfinite(item["score"]) and all(math.isfinite(v) for v in item["components"].values())
        anonymous = client.get("/v1/users/nobody/recommendations", params={"explain": "true"}).json()["items"]
        assert [i["item_id"] for i in anonymous[:2]] == ["i7", "i8"]
        assert anonymous[0]["components"]["trending"] == 1.0
        known = client.get("/v1/users/u1/recommendations", params={"explain": "true"}).json()["items"]
        assert len({i["score"] for i in known}) > 1 and any(i["components"]["cf"] > 0 for i in known)
        metrics = client.get("/metrics").text
        assert 'lambdarec_rank_nonfinite_total{where="trending"}' in metrics
