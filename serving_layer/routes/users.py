"""``DELETE /v1/users/{user_id}`` (admin key): erase a user, as ``lambdarec forget`` does."""

import asyncio

from fastapi import APIRouter
from starlette.exceptions import HTTPException

from lambdarec.erasure import forget_users
from lambdarec.eventlog import EventLogError
from lambdarec.lake import LakeError
from lambdarec.settings import ServingSettings
from lambdarec.store import StoreError
from serving_layer.deps import AdminKey, ServiceDep, id_path
from serving_layer.errors import problem_responses
from serving_layer.schemas import Erasure
from serving_layer.store_gate import StoreUnavailable


def router(s: ServingSettings) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["users"])
    user_id_param = id_path(s, "user")

    @r.delete(
        "/users/{user_id}",
        response_model=Erasure,
        responses=problem_responses(401, 403, 422, 503),
        summary="Erase a user",
    )
    async def erase_user(user_id: user_id_param, service: ServiceDep, _key: AdminKey) -> Erasure:
        """Delete the user's rows from the lake and their fresh state, and hide their rows in every snapshot built
        before now: from this response on, no endpoint returns anything derived from their history. The next
        nightly snapshot lacks them; older lake versions keep the files until `lambdarec lake vacuum`."""
        try:
            store = service.store()
            result = await asyncio.to_thread(
                forget_users, service.settings, [user_id], store=store, log=service.event_log()
            )
        except (StoreError, StoreUnavailable, EventLogError, LakeError, OSError) as exc:
            raise HTTPException(503, f"cannot erase {user_id!r} now ({type(exc).__name__}: {exc}); retry") from exc
        service.forget_cached(user_id)
        return Erasure(**result.to_dict())

    return r
