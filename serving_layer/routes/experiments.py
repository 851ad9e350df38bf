"""``GET /v1/users/{user_id}/assignments``: the user's sticky arm in every experiment."""

from fastapi import APIRouter, Request

from lambdarec.experiments import assignments
from lambdarec.settings import ServingSettings
from serving_layer.deps import id_path
from serving_layer.errors import problem_responses
from serving_layer.schemas.experiments import Assignments, ExperimentAssignment


def router(s: ServingSettings) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["experiments"])
    user_id_param = id_path(s, "user")

    @r.get(
        "/users/{user_id}/assignments",
        response_model=Assignments,
        responses=problem_responses(422),
        summary="A user's experiment arms",
    )
    async def user_assignments(request: Request, user_id: user_id_param) -> Assignments:
        """The user's arm in every configured experiment, from a stable hash of the experiment's salt and the
        user id: the same on every serving process and after restarts, with no store read. The `served` one is
        the arm the user's lists are ranked under (and that they say in `experiment` and `arm`)."""
        experiments = request.app.state.service.arms.experiments
        found = [ExperimentAssignment(**vars(a)) for a in assignments(experiments, user_id)]
        return Assignments(user_id=user_id, assignments=found)

    return r
