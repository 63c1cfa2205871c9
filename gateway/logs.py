"""Logging: text or JSON lines, a request id on every record logged while serving a request,
and the access log shared by REST and gRPC.

A request's id comes from the client (HTTP ``X-Request-Id`` header, gRPC ``x-request-id``
metadata) when it is 1 to 128 characters of ``[A-Za-z0-9._:-]``; otherwise a random 128-bit
id (32 hex digits, like a uuid4 hex) is made. The protocols put a :class:`RequestInfo` in
:data:`CURRENT_REQUEST` for the request's task, return the id to the client (response header,
trailing metadata), and every log record emitted inside that task (protocol, core, backend)
carries it as ``request_id``.
"""

from __future__ import annotations

import logging
import random
import re
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

import orjson

#: Logger of the access log (one record per request, when ``access_log`` is on).
ACCESS_LOGGER: Final = "modelgate.access"
REQUEST_ID_HEADER: Final = "x-request-id"
_VALID_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_NAME_LIMIT: Final = 64

access_log = logging.getLogger(ACCESS_LOGGER)


@dataclass(slots=True)
class RequestInfo:
    """One request as the logs see it; the protocol fills in model and version once it knows them."""

    request_id: str
    protocol: str = ""
    model: str = ""
    version: str = ""


CURRENT_REQUEST: ContextVar[RequestInfo | None] = ContextVar("modelgate_request", default=None)


def request_id_from(given: str | bytes | None) -> str:
    """The client's id if it is well-formed, else a new random 128-bit id in 32 hex digits.

    The id is for correlation, not a secret: it comes from :mod:`random` (reseeded after a
    fork), about 0.4 us here, where ``uuid.uuid4()`` (``os.urandom``) took 3 us per request.
    """
    if given:
        if isinstance(given, bytes):
            given = given.decode("latin-1")
        if _VALID_ID.fullmatch(given):
            return given
    return f"{random.getrandbits(128):032x}"


def current_request_id() -> str | None:
    info = CURRENT_REQUEST.get()
    return None if info is None else info.request_id


def safe_name(name: str) -> str:
    """A client-chosen name fit for a log line: at most 64 characters, control characters escaped."""
    short = name[:_NAME_LIMIT] + ("..." if len(name) > _NAME_LIMIT else "")
    return short if short.isprintable() else short.encode("unicode_escape").decode("ascii")


def log_access(info: RequestInfo, status: str, seconds: float) -> None:
    """One access-log record: request id, protocol, model, version, status, latency."""
    fields = {
        "request_id": info.request_id, "protocol": info.protocol, "model": safe_name(info.model),
        "version": safe_name(info.version), "status": status, "latency_ms": round(seconds * 1000, 3),
    }  # fmt: skip
    access_log.info(
        "%(protocol)s %(model)s/%(version)s %(status)s %(latency_ms).3f ms request_id=%(request_id)s",
        fields, extra={"fields": fields},
    )  # fmt: skip


class _RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (or None) to every record a handler emits."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None)
        if request_id and record.name != ACCESS_LOGGER:
            return f"{text} [request_id={request_id}]"
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, any structured fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            doc["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure_logging(level: str, fmt: str = "text") -> None:
    """Send every logger (uvicorn's included) to stderr in ``fmt`` ("text" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
