"""Snapshot listing and rollback, and hot swaps on a flip: no restart, no request ever fails meanwhile."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from lambdarec.settings import Settings
from lambdarec.store import open_store
from tests.unit.serving.conftest import AS_OF, admin, publish, serving, wait_for


def test_publishing_a_new_snapshot_swaps_the_model_without_restart(fresh_store, log_file: Path) -> None:
    settings, first = fresh_store
    with serving(settings) as client:
        assert client.get("/v1/users/u1/recommendations").json()["snapshot"] == first
        second = publish(settings, log_file, AS_OF - timedelta(days=2))
        service = client.app.state.service
        wait_for(lambda: service.models.model.version == second, "the watcher to swap in the new snapshot")
        body = client.get("/v1/users/u1/recommendations").json()
        assert body["snapshot"] == second
        assert "lambdarec_serving_snapshot_swaps_total 2.0" in client.get("/metrics").text


def test_list_and_activate_roll_back_at_once(fresh_store, log_file: Path) -> None:
    settings, first = fresh_store
    second = publish(settings, log_file, AS_OF - timedelta(days=1))
    with serving(_slow_poll(settings)) as client:
        listed = client.get("/v1/snapshots", headers=admin()).json()
        assert listed["current"] == second and listed["serving"] == second
        assert [s["version"] for s in listed["snapshots"]] == [second, first]
        assert listed["snapshots"][1]["counts"]["user_rows"] > 0
        response = client.post(f"/v1/snapshots/{first}/activate", headers=admin())
        assert response.status_code == 200, response.text
        assert response.json() == {"activated": first, "previous": second}
        # the poll is an hour away: only the activation itself can have swapped the model
        assert client.get("/v1/users/u1/recommendations").json()["snapshot"] == first
    with open_store(settings) as store:
        assert store.current_version(max_age_s=0) == first


def _slow_poll(settings: Settings) -> Settings:
    return settings.model_copy(update={"serving": settings.serving.model_copy(update={"snapshot_poll_s": 3600.0})})


def test_activate_refuses_unknown_and_unpublished_versions(fresh_store) -> None:
    settings, _ = fresh_store
    with open_store(settings) as store:
        writing = store.begin_snapshot({"note": "never finished"})
    with serving(settings) as client:
        unknown = client.post("/v1/snapshots/20990101T000000000Z-abcdef/activate", headers=admin())
        assert unknown.status_code == 404 and "GET /v1/snapshots" in unknown.json()["message"]
        unpublished = client.post(f"/v1/snapshots/{writing}/activate", headers=admin())
        assert unpublished.status_code == 409 and "never published" in unpublished.json()["message"]
        assert client.post(f"/v1/snapshots/{writing}/activate").status_code == 401
