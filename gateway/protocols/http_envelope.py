"""The envelope every measured REST request shares (V2 ``/infer``, TF Serving ``:predict``).

It counts the request in flight, turns a :class:`GatewayError` into its JSON error response
(anything else into a generic 500 with the traceback logged, never sent), and records the
request's status, outcome and duration once. The protocol-specific handler only reads,
decodes, infers and sends its 200.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from gateway.core.errors import GatewayError
from gateway.logs import CURRENT_REQUEST, current_request_id
from gateway.metrics import Metrics, RequestLabels, outcome_of
from gateway.protocols.http import Scope, Send, respond
from gateway.protocols.http_errors import error_body, error_headers, error_status, internal_error_message

log = logging.getLogger(__name__)


async def measured(
    scope: Scope, send: Send, metrics: Metrics, protocol: str, labels: RequestLabels,
    handler: Callable[[], Awaitable[None]],
) -> None:  # fmt: skip
    """Run ``handler`` (which sends the success response) inside the shared envelope."""
    started = time.perf_counter()
    inflight = metrics.inflight_for(protocol)
    inflight.inc()
    status, server_error = 200, False
    try:
        await handler()
    except GatewayError as exc:
        status, server_error = error_status(exc), not exc.is_client_error
        await respond(send, status, error_body(exc.message), extra=error_headers(exc))
    except Exception:
        log.exception("unexpected error serving %s (request id %s)", scope["path"], current_request_id())
        status, server_error = 500, True
        await respond(send, 500, error_body(internal_error_message()))
    finally:
        inflight.dec()
        info = CURRENT_REQUEST.get()
        if info is not None:
            info.protocol, info.model, info.version = protocol, labels.model, labels.version
        metrics.observe_request(
            labels.model, labels.version, protocol, str(status), outcome_of(status >= 400, server_error),
            time.perf_counter() - started,
        )  # fmt: skip
