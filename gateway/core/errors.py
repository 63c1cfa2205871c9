"""One error hierarchy for the whole gateway.

Every error the core raises carries an :class:`ErrorKind`. Each protocol adapter maps
kinds to its own status codes in exactly one table (REST: HTTP status, gRPC: status
code), so a new error class never needs a new handler.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    """What went wrong, independent of the wire protocol."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    UNAVAILABLE = "UNAVAILABLE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    INTERNAL = "INTERNAL"


class GatewayError(Exception):
    """Base class: a message safe to show to clients plus an error kind."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    @property
    def is_client_error(self) -> bool:
        """True when the caller, not the gateway or a backend, is at fault."""
        return self.kind in _CLIENT_KINDS


class InvalidInput(GatewayError):
    """The request is malformed: bad JSON, shape, datatype, element count, name."""

    kind = ErrorKind.INVALID_ARGUMENT


class ModelNotFound(GatewayError):
    """No such model, version or label in the repository."""

    kind = ErrorKind.NOT_FOUND


class ModelNotReady(GatewayError):
    """The model exists but cannot serve now (failed to load, loading, backend down)."""

    kind = ErrorKind.UNAVAILABLE


class BackendUnavailable(GatewayError):
    """The backend could not be reached or refused the call."""

    kind = ErrorKind.UNAVAILABLE


class Overloaded(GatewayError):
    """A bounded queue is full; the client should retry after ``retry_after`` seconds."""

    kind = ErrorKind.RESOURCE_EXHAUSTED


class DeadlineExceeded(GatewayError):
    """The per-model deadline passed before the backend answered."""

    kind = ErrorKind.DEADLINE_EXCEEDED


class PayloadTooLarge(GatewayError):
    """The request body is over the configured limit."""

    kind = ErrorKind.PAYLOAD_TOO_LARGE


class Unsupported(GatewayError):
    """The request asks for something this gateway or backend does not implement."""

    kind = ErrorKind.UNIMPLEMENTED


class DeploymentConflict(GatewayError):
    """A deployment operation conflicts with the current state (e.g. a rollout already running)."""

    kind = ErrorKind.FAILED_PRECONDITION


class BackendError(GatewayError):
    """The backend failed while running the model (not the caller's fault)."""

    kind = ErrorKind.INTERNAL


class ConfigError(Exception):
    """A model's config.yaml (or the gateway settings) is invalid.

    Not a :class:`GatewayError`: it never reaches a client; the repository records it
    as the reason a model is unavailable.
    """


def first_line(exc: BaseException | str) -> str:
    """The first line of an exception's text, for logs (clients get the gateway's own words)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else (type(exc).__name__ if isinstance(exc, BaseException) else "")


_CLIENT_KINDS = frozenset(
    {
        ErrorKind.INVALID_ARGUMENT,
        ErrorKind.NOT_FOUND,
        ErrorKind.PAYLOAD_TOO_LARGE,
        ErrorKind.RESOURCE_EXHAUSTED,
        ErrorKind.FAILED_PRECONDITION,
    }
)
