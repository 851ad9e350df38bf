"""``GET /v1/snapshots`` and ``POST /v1/snapshots/{version}/activate`` (admin key): rollback without restart."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path
from starlette.exceptions import HTTPException

from lambdarec.model.snapshot import SnapshotModel, check_snapshot
from lambdarec.settings import ServingSettings
from lambdarec.store import (
    BACKEND_FAILURES,
    CorruptRowError,
    SnapshotInfo,
    SnapshotNotFoundError,
    SnapshotStateError,
    ValidationFailedError,
)
from lambdarec.store.lifecycle import require_activatable
from serving_layer.deps import AdminKey, ServiceDep
from serving_layer.errors import problem_responses
from serving_layer.schemas import Activation, SnapshotList, SnapshotSummary
from serving_layer.store_gate import StoreUnavailable


def _summary(info: SnapshotInfo, serving: str | None) -> SnapshotSummary:
    manifest = info.manifest or {}
    return SnapshotSummary(
        version=info.version,
        state=info.state,
        current=info.current,
        serving=info.version == serving,
        created_at=info.created_at,
        published_at=info.published_at,
        as_of=manifest.get("as_of"),
        counts=manifest.get("counts"),
        metrics=manifest.get("metrics"),
    )


def router(s: ServingSettings) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["snapshots"])
    version_param = Annotated[
        str,
        Path(
            min_length=1,
            max_length=s.max_id_chars,
            description="A snapshot version.",
            examples=["20240201T000000000Z-a1b2c3"],
        ),
    ]

    @r.get(
        "/snapshots", response_model=SnapshotList, responses=problem_responses(401, 403, 503), summary="List snapshots"
    )
    async def list_snapshots(service: ServiceDep, _key: AdminKey) -> SnapshotList:
        """Every snapshot version of the store's namespace, newest first, with which one is current in the store
        and which one this process serves."""
        timeout = service.settings.store.request_timeout_s
        try:
            store = service.store()
            infos = await service.gate.call(store.list_snapshots, timeout_s=timeout, probe=True)
        except StoreUnavailable as exc:
            raise HTTPException(503, f"cannot list snapshots: {exc}") from exc
        serving = service.models.model.version if service.models.model is not None else None
        current = next((i.version for i in infos if i.current), None)
        return SnapshotList(current=current, serving=serving, snapshots=[_summary(i, serving) for i in infos])

    @r.post(
        "/snapshots/{version}/activate",
        response_model=Activation,
        responses=problem_responses(401, 403, 404, 409, 422, 503),
        summary="Activate (roll back to) a snapshot",
    )
    async def activate(version: version_param, service: ServiceDep, _key: AdminKey) -> Activation:
        """Make a published snapshot current in the store and swap this process to it at once, without a restart.
        Other serving processes follow within `serving.snapshot_poll_s`.

        The snapshot is checked first (row counts, array checksums, item rows, a sample of user rows) and loaded;
        only then does the store's pointer move. A snapshot that fails is refused with 409 naming the problem, and
        the pointer stays where it was."""
        previous = service.models.model.version if service.models.model is not None else None
        sample = service.settings.store.activate_check_users

        def commit(model: SnapshotModel) -> None:  # runs once the model loaded, before it is swapped in
            problems = check_snapshot(store, version, sample, model)
            if problems:
                raise ValidationFailedError(version, problems)
            store.activate(version)

        try:
            store = service.store()
            # 404 for an unknown version, 409 for one never published, before loading anything
            await asyncio.to_thread(lambda: require_activatable(store.get_snapshot(version)))
            await service.models.switch_to(store, version, commit=commit)
        except SnapshotNotFoundError:
            raise HTTPException(404, f"no snapshot has version {version!r}; GET /v1/snapshots lists them") from None
        except (SnapshotStateError, ValidationFailedError, CorruptRowError, KeyError) as exc:
            why = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # KeyError: an array is missing
            raise HTTPException(409, f"{why}; the current snapshot is unchanged") from None
        except (*BACKEND_FAILURES, StoreUnavailable) as exc:
            raise HTTPException(503, f"cannot activate {version}: the store is unavailable: {exc}") from exc
        return Activation(activated=version, previous=previous)

    return r
