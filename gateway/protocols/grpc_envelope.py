"""The envelope every measured gRPC call shares (V2 ``ModelInfer``, TF Serving ``Predict``).

The gRPC twin of :mod:`gateway.protocols.http_envelope`: it counts the call in flight, ends a
failed call through the one status table (:mod:`gateway.protocols.grpc_errors`; anything
unexpected becomes a generic INTERNAL with the traceback logged, never sent), and records
the call's status code, outcome and duration once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from gateway.core.errors import GatewayError
from gateway.logs import CURRENT_REQUEST, current_request_id
from gateway.metrics import Metrics, RequestLabels, outcome_of
from gateway.protocols.grpc_errors import abort_internal, abort_with, status_for

log = logging.getLogger(__name__)
T = TypeVar("T")


async def measured_rpc(
    context: grpc.aio.ServicerContext[Any, Any], metrics: Metrics, protocol: str, labels: RequestLabels,
    handler: Callable[[], Awaitable[T]],
) -> T:  # fmt: skip
    """Run ``handler`` (which returns the response message) inside the shared envelope."""
    started = time.perf_counter()
    inflight = metrics.inflight_for(protocol)
    inflight.inc()

    def record(code: grpc.StatusCode, client_error: bool, server_error: bool) -> None:
        # Before the status is sent: a client that sees the answer also sees it counted.
        info = CURRENT_REQUEST.get()
        if info is not None:
            info.protocol, info.model, info.version = protocol, labels.model, labels.version
        metrics.observe_request(
            labels.model, labels.version, protocol, code.name, outcome_of(client_error, server_error),
            time.perf_counter() - started,
        )  # fmt: skip

    try:
        response = await handler()
    except GatewayError as error:
        record(status_for(error), error.is_client_error, not error.is_client_error)
        await abort_with(context, error)
    except asyncio.CancelledError:  # the client went away or its deadline passed
        record(grpc.StatusCode.CANCELLED, True, False)
        raise
    except Exception:
        log.exception(
            "unexpected error in a %s call for model %r (request id %s)", protocol, labels.model[:64],
            current_request_id(),
        )  # fmt: skip
        record(grpc.StatusCode.INTERNAL, False, True)
        await abort_internal(context)
    finally:
        inflight.dec()
    record(grpc.StatusCode.OK, False, False)
    return response
