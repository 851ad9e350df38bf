"""/livez, /readyz (503 until a snapshot is loaded and the store answers) and /metrics."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.unit.serving.conftest import make_settings, publish, serving, wait_for


def test_readyz_is_503_until_a_snapshot_is_published(tmp_path: Path, log_file: Path) -> None:
    settings = make_settings(tmp_path)
    with serving(settings, ready=False) as client:
        assert client.get("/livez").json() == {"status": "alive"}
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "no snapshot loaded yet" in response.json()["reasons"][0]
        recs = client.get("/v1/users/u1/recommendations")
        assert recs.status_code == 503 and "no snapshot is loaded yet" in recs.json()["message"]
        version = publish(settings, log_file)
        wait_for(lambda: client.get("/readyz").status_code == 200, "readiness after the first publish")
        assert client.get("/readyz").json() == {"ready": True, "snapshot": version, "reasons": []}


def test_a_store_that_cannot_be_opened_leaves_the_process_alive_and_not_ready(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = make_settings(tmp_path).model_copy(deep=True)
    settings.store.url = f"sqlite:///{blocker}/store"
    with serving(settings, ready=False) as client:
        assert client.get("/livez").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert any("cannot open the store" in r for r in ready.json()["reasons"])


def test_metrics_report_latency_sources_fallbacks_and_snapshot_age(client: TestClient) -> None:
    client.get("/v1/users/u1/recommendations", params={"k": 5})
    client.get("/v1/users/someone-new/recommendations", params={"k": 5})
    text = client.get("/metrics").text
    route = 'route="/v1/users/{user_id}/recommendations"'
    assert f'lambdarec_serving_request_seconds_bucket{{le="0.005",method="GET",{route}}}' in text
    assert 'lambdarec_serving_items_total{source="batch"}' in text
    assert 'lambdarec_serving_items_total{source="popular"}' in text
    assert 'lambdarec_serving_lists_total{kind="fallback"}' in text
    share = next(line for line in text.splitlines() if line.startswith("lambdarec_serving_fallback_share "))
    assert 0 < float(share.split()[1]) < 1
    age = next(line for line in text.splitlines() if line.startswith("lambdarec_serving_snapshot_age_seconds "))
    assert float(age.split()[1]) >= 0
    data_age = next(ln for ln in text.splitlines() if ln.startswith("lambdarec_serving_snapshot_data_age_seconds "))
    assert float(data_age.split()[1]) > 86400  # the synthetic data ends in 2024


def test_the_store_is_not_read_per_request_for_the_model_or_trending(published) -> None:
    """The hot path reads the user's rows only: the model and trending come from memory."""
    settings, _ = published
    calls: dict[str, int] = {}
    from lambdarec.store import open_store

    store = open_store(settings)

    class Counting:
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            calls[name] = calls.get(name, 0) + 1
            return getattr(store, name)

    with serving(settings, store=Counting()) as client:  # type: ignore[arg-type]
        wait_for(lambda: calls.get("read_trending", 0) >= 1, "the first trending read")
        before = dict(calls)
        for n in range(50):
            assert client.get(f"/v1/users/u{n}/recommendations", params={"session_items": "i1"}).status_code == 200
        during = {k: v - before.get(k, 0) for k, v in calls.items()}
    store.close()
    assert during.get("read_array", 0) == 0 and during.get("read_items", 0) == 0
    assert during.get("read_trending", 0) < 10  # the background refresh only, never once per request
    assert during["read_user"] == 50


def test_metrics_say_which_merge_path_ranks_the_lists(client: TestClient, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``lambdarec_serving_merge_kernel``: 1 once the compiled kernel has loaded (in the background at start),
    0 while the numpy steps rank (here: switched off)."""
    from lambdarec.rank import kernel

    def gauge() -> float:
        lines = client.get("/metrics").text.splitlines()
        return float(next(ln for ln in lines if ln.startswith("lambdarec_serving_merge_kernel ")).split()[1])

    assert kernel.wait(120)
    assert gauge() == 1.0
    monkeypatch.setattr(kernel, "ENABLED", False)
    assert gauge() == 0.0
    assert client.get("/v1/users/u1/recommendations", params={"k": 5}).status_code == 200


def test_what_the_kernel_load_brings_in_is_frozen_out_of_gc(published, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """numba's objects (some 100k) live as long as the process: once the merge kernel's background load ends, the
    service freezes them out of the collector, as it freezes the snapshot's on a swap (a full collection that walked
    them paused a loaded server for 60-70 ms)."""
    import gc
    import threading

    from lambdarec.rank import fused, kernel

    monkeypatch.setattr(kernel, "_state", {})  # not loaded yet in this process: this start loads it
    release, real_warm = threading.Event(), fused.warm
    monkeypatch.setattr(fused, "warm", lambda: (release.wait(30), real_warm()))  # ends after the snapshot's swap
    frozen: list[bool] = []  # per freeze: whether the kernel was loaded by then
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(kernel.loaded()))
    settings, _ = published
    with serving(settings):
        wait_for(lambda: frozen, "the snapshot's swap to freeze what was loaded then")  # it runs just after the swap
        assert not any(frozen)
        release.set()
        assert kernel.wait(60)
    assert frozen[-1] is True
