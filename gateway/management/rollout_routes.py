"""Management routes for rollouts and deployment figures.

- ``POST /api/models/{m}/rollout``                 start: a plan (``{"version": "3", "steps": [...], ...}``)
- ``GET  /api/models/{m}/rollout``                 state, weights and the current step's evidence
- ``POST /api/models/{m}/rollout/{action}``        pause, resume, promote, abort
- ``GET  /api/figures``                            ``?model=m``: success rate, rollbacks by reason, time to roll out
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.core.figures import deployment_figures
from gateway.core.rollout.controller import RolloutController
from gateway.management.app import json_body, json_response

PLAN_FIELDS = frozenset({"version", "steps", "min_requests", "dwell_seconds", "slo", "shadow", "unload_previous"})


def rollout_routes(controller: RolloutController) -> list[Route]:
    async def start(request: Request) -> Response:
        doc = await json_body(request, PLAN_FIELDS)
        return json_response(await controller.start(request.path_params["model"], doc))

    async def status(request: Request) -> Response:
        return json_response(controller.status(request.path_params["model"]))

    async def command(request: Request) -> Response:
        await json_body(request, frozenset())
        return json_response(await controller.command(request.path_params["model"], request.path_params["action"]))

    async def figures(request: Request) -> Response:
        model = request.query_params.get("model") or None
        return json_response(deployment_figures(controller.lifecycle.history.read(model)))

    return [
        Route("/api/models/{model}/rollout", start, methods=["POST"]),
        Route("/api/models/{model}/rollout", status, methods=["GET"]),
        Route("/api/models/{model}/rollout/{action}", command, methods=["POST"]),
        Route("/api/figures", figures, methods=["GET"]),
    ]
