"""Shadow traffic: copy a share of a model's split requests to a version and discard its answers.

The copy runs after the primary has answered (it never delays or fails the caller), through
the shadow version's own admission gate; its latency, errors and disagreement with the
primary (top-1 per row, max abs diff) go to the :class:`EvidenceBook`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np

from gateway.core.errors import GatewayError
from gateway.core.evidence import EvidenceBook, compare
from gateway.core.models import ServedModel, ServedVersion
from gateway.core.types import InferRequest, InferResponse

log = logging.getLogger(__name__)

InferVersion = Callable[[ServedVersion, InferRequest], Awaitable[InferResponse]]


class ShadowMirror:
    def __init__(self, evidence: EvidenceBook, infer_version: InferVersion) -> None:
        self.evidence = evidence
        self._infer_version = infer_version
        self._tasks: set[asyncio.Task[None]] = set()

    def mirror(self, model: ServedModel, primary: ServedVersion, request: InferRequest,
               response: InferResponse) -> None:  # fmt: skip
        """Copy ``request`` to the shadow version when the model's split says so (never raises)."""
        split = model.traffic
        if split is None or split.shadow is None:
            return
        target = model.versions.get(split.shadow.version)
        if target is None or target is primary or not target.ready:
            return
        if split.take_shadow() is None:
            return
        task = asyncio.get_running_loop().create_task(self._run(target, request, response))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, target: ServedVersion, request: InferRequest, response: InferResponse) -> None:
        evidence = self.evidence.shadow(target.model, target.version)
        started = time.perf_counter()
        copy = InferRequest(request.model_name, request.inputs, str(target.version), request.id, request.outputs,
                            dict(request.parameters))  # fmt: skip
        try:
            answer = await self._infer_version(target, copy)
        except GatewayError as exc:
            evidence.add(exc.is_client_error, time.perf_counter() - started)
            return
        evidence.add(True, time.perf_counter() - started)
        primary = {t.name: np.asarray(t.data) for t in response.outputs}
        rows, disagreeing, max_abs = compare(primary, {t.name: np.asarray(t.data) for t in answer.outputs})
        evidence.compared_rows += rows
        evidence.disagreeing_rows += disagreeing
        evidence.max_abs_diff = max(evidence.max_abs_diff, max_abs)

    async def drain(self) -> None:
        """Wait for the shadow copies in flight (shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
