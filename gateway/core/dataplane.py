"""The protocol-neutral data plane: the one door every protocol (V2 REST/gRPC, TF Serving) uses.

A protocol resolves the model its request names once (:meth:`DataPlane.resolve`: unknown
model, version or label is a 404 before the body is decoded), decodes the body with the
resolved version's :meth:`DataPlane.input_rules` (limits checked before anything is
allocated), then calls :meth:`DataPlane.infer` on that same target. The data plane
validates the request against the signature, passes admission control and the deadline,
calls the backend and shapes the response. Protocols never see the model manager.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway import __version__
from gateway.core.batching import InferFn
from gateway.core.codec.datatypes import numpy_dtype
from gateway.core.codec.limits import DEFAULT_LIMITS, InputRules, TensorLimits
from gateway.core.errors import BackendError, GatewayError, ModelNotReady
from gateway.core.events import NO_EVENTS, CoreEvents
from gateway.core.evidence import EvidenceBook
from gateway.core.models import ModelManager, ServedVersion, VersionState
from gateway.core.shadow import ShadowMirror
from gateway.core.tracing import BACKEND, QUEUE_DEPTH, REQUEST_ID, VERSION, Recorded, Tracer
from gateway.core.types import InferRequest, InferResponse, Signature, Tensor, TensorSpec
from gateway.core.validation import select_outputs, validate_inputs

SERVER_NAME = "modelgate"
#: Input rules kept at most (one per loaded version; cleared when full).
_RULES_CACHED = 256
#: V2 extensions this server implements (reported by GET /v2 and ServerMetadata).
EXTENSIONS = ("binary_tensor_data", "model_repository")


@dataclass(frozen=True, slots=True)
class ModelRef:
    """What a request names: a model and at most one of a version (as the client wrote it) or a label.

    ``key`` is the caller's route key (a header or gRPC metadata): with a traffic split, one key
    always lands on the same version.
    """

    name: str
    version: str | None = None
    label: str | None = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class VersionStatus:
    """One version's state as status APIs report it."""

    version: int
    state: VersionState
    reason: str


@dataclass(slots=True)
class ModelMetadata:
    name: str
    version: int
    versions: list[str]
    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": self.versions,
            "platform": self.platform,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }


class DataPlane:
    """Health, metadata and inference on top of a :class:`ModelManager`."""

    def __init__(
        self,
        manager: ModelManager,
        events: CoreEvents = NO_EVENTS,
        limits: TensorLimits = DEFAULT_LIMITS,
        evidence: EvidenceBook | None = None,
        peers_ready: Callable[[], bool] | None = None,
        stopwatch: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._manager = manager
        #: Times a live request for its version's rollout evidence (a test may pass ``time.process_time``:
        #: CPU seconds, which a busy machine's scheduling stalls do not inflate).
        self._stopwatch = stopwatch
        #: With several serving processes: whether every one of them is ready (None: this one alone serves).
        self._peers_ready = peers_ready
        self._events = events
        self.limits = limits
        self.draining = False
        #: What each version did with live traffic and shadow copies (rollout decisions read it).
        self.evidence = evidence if evidence is not None else EvidenceBook()
        #: Input rules by loaded signature (checked by identity: an id is only reused after its object is gone).
        self._rules: dict[int, tuple[Signature, InputRules]] = {}
        self.shadow = ShadowMirror(self.evidence, lambda served, request: self._run(served, request, observe=False))

    # -- health -------------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Ready once start-up loading finished and until shutdown begins.

        A model that failed to load does not make the server unready (it is reported per
        model and in the repository index): the others keep serving. With several serving
        processes, ready only when every one of them is.
        """
        if not self._manager.loaded or self.draining:
            return False
        return self._peers_ready is None or self._peers_ready()

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    @property
    def tracer(self) -> Tracer:
        """Where protocols report request spans (the manager's; a no-op unless tracing is configured)."""
        return self._manager.tracer

    # -- resolution ---------------------------------------------------------------------

    def resolve(self, ref: ModelRef) -> ServedVersion:
        """The served version a request names (400 for a malformed name/version, 404 for an unknown one)."""
        return self._manager.resolve(ref.name, ref.version, ref.label, ref.key)

    def signature(self, target: ServedVersion) -> Signature:
        """The target's inputs and outputs; 503 while it cannot serve."""
        if target.state is not VersionState.READY or target.backend is None:
            reason = f": {target.reason}" if target.reason else ""
            raise ModelNotReady(
                f"model {target.model!r} version {target.version} is {target.state.value.lower()}{reason}"
            )
        return target.backend.signature

    def input_rules(self, target: ServedVersion) -> InputRules:
        """What the target accepts, for decoders to check declared shapes before allocating."""
        signature = self.signature(target)
        max_batch = target.config.max_batch_size if target.config is not None else 0
        cached = self._rules.get(id(signature))
        if cached is not None and cached[0] is signature and cached[1].max_batch_size == max_batch:
            return cached[1]
        rules = InputRules.for_inputs(signature.inputs, max_batch, self.limits)
        if len(self._rules) >= _RULES_CACHED:
            self._rules.clear()
        self._rules[id(signature)] = (signature, rules)
        return rules

    # -- status and metadata ------------------------------------------------------------

    def model_ready(self, ref: ModelRef) -> bool:
        """Whether the named version can serve; a model that exists but is broken is simply not ready."""
        try:
            return self.resolve(ref).ready
        except ModelNotReady:
            return False

    def model_metadata(self, target: ServedVersion) -> ModelMetadata:
        signature = self.signature(target)
        model = self._manager.get(target.model)
        versions = [str(v) for v, s in sorted(model.versions.items()) if s.ready]
        backend = target.config.backend if target.config is not None else None
        platform = (target.config.platform if target.config else None) or self._manager.registry.platform(backend or "")
        return ModelMetadata(
            target.model, target.version, versions, platform, list(signature.inputs), list(signature.outputs)
        )

    def model_status(self, ref: ModelRef) -> list[VersionStatus]:
        """Every version's state when ``ref`` names none, else the one it names (TF Serving's GetModelStatus)."""
        model = self._manager.get(ref.name)
        if model.error is not None:
            raise ModelNotReady(f"model {model.name!r} is unavailable: {model.error}")
        if ref.version or ref.label:
            versions = [self.resolve(ref)]
        else:
            versions = [model.versions[v] for v in sorted(model.versions)]
        return [VersionStatus(v.version, v.state, v.reason) for v in versions]

    def repository_index(self) -> list[dict[str, Any]]:
        return self._manager.index()

    # -- inference ----------------------------------------------------------------------

    async def infer(self, target: ServedVersion, request: InferRequest) -> InferResponse:
        """Validate, admit, run with a deadline, and shape the response (``target`` from :meth:`resolve`).

        A request that named no version (``request.model_version`` empty: the traffic split chose the
        target) may be copied to the model's shadow version after it has been answered.
        """
        if self.tracer.enabled:
            self._trace_request(target, request)
        response = await self._run(target, request, observe=True)
        if not request.model_version:
            self.shadow.mirror(self._manager.get(target.model), target, request, response)
        return response

    async def _run(self, target: ServedVersion, request: InferRequest, observe: bool) -> InferResponse:
        """``observe``: record the outcome as live evidence of the version (shadow copies do not)."""
        signature = self.signature(target)
        assert target.config is not None and target.gate is not None and target.call is not None
        arrays = validate_inputs(request.inputs, signature, target.config.max_batch_size)
        wanted = select_outputs(request.outputs, signature)
        names = [spec.name for spec in wanted]
        call = target.call
        started = time.perf_counter()
        timer = self._stopwatch()
        if self.tracer.enabled and target.config.dynamic_batching is None:
            call = self._traced(target, call, started)
        try:
            results = await target.gate.run(lambda: call(arrays, names))
        except GatewayError as exc:
            self._events.rejected(target.model, exc.kind.value.lower())
            if observe and not exc.is_client_error:
                self.evidence.observe(target.model, target.version, False, self._stopwatch() - timer)
            raise
        finally:
            self._events.backend_call(
                target.model, target.version, target.config.backend or "", time.perf_counter() - started
            )
        if observe:
            self.evidence.observe(target.model, target.version, True, self._stopwatch() - timer)
        outputs = [_output_tensor(spec, results) for spec in wanted]
        return InferResponse(target.model, str(target.version), outputs, id=request.id)

    def _trace_request(self, target: ServedVersion, request: InferRequest) -> None:
        span = self.tracer.current()
        span.set(VERSION, str(target.version))
        if request.id:
            span.set(REQUEST_ID, request.id[:128])

    def _traced(self, target: ServedVersion, call: InferFn, started: float) -> InferFn:
        """``call`` reporting its admission as a ``queue`` span and itself as a ``backend`` span.

        (A batched version's batcher reports its own queue, batch and backend spans.)
        """
        tracer, gate, backend = self.tracer, target.gate, target.config.backend if target.config else ""
        assert gate is not None

        async def traced(arrays: Mapping[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
            tracer.record(Recorded("queue", started, time.perf_counter(), {QUEUE_DEPTH: gate.depth}))
            with tracer.span("backend", {BACKEND: backend or ""}):
                return await call(arrays, names)

        return traced


def _output_tensor(spec: TensorSpec, results: dict[str, Any]) -> Tensor:
    try:
        data = results[spec.name]
    except KeyError:
        raise BackendError(f"backend returned no output {spec.name!r}") from None
    want = numpy_dtype(spec.datatype)
    if spec.datatype != "BYTES" and data.dtype != want:
        data = data.astype(want)
    return Tensor(spec.name, spec.datatype, data)
