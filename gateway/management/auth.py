"""Bearer-token checks shared by the management API and the V2 repository routes (REST and gRPC).

No token configured means no check (allowed only on loopback: settings refuse a
non-loopback management host without one). Comparison is constant-time.
"""

from __future__ import annotations

import hmac
from typing import Final

import orjson

from gateway.protocols.http import Receive, Scope, Send, header, respond

UNAUTHORIZED: Final = "missing or wrong bearer token (send the header Authorization: Bearer <token>)"


class TokenCheck:
    """Whether an ``Authorization`` header value carries the configured token."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def allows(self, authorization: str | bytes | None) -> bool:
        if self._token is None:
            return True
        if authorization is None:
            return False
        raw = authorization.encode() if isinstance(authorization, str) else authorization
        scheme, _, value = raw.strip().partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self._token)


class RequireToken:
    """ASGI wrapper answering 401 JSON to HTTP requests without the token (``open_paths`` excepted)."""

    def __init__(self, app: object, check: TokenCheck, open_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.check = check
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        open_path = scope["type"] != "http" or scope["path"] in self.open_paths
        if not open_path and not self.check.allows(header(scope, b"authorization")):
            await respond_unauthorized(send)
            return
        await self.app(scope, receive, send)  # type: ignore[operator]


async def respond_unauthorized(send: Send) -> None:
    await respond(send, 401, orjson.dumps({"error": UNAUTHORIZED}), b"application/json",
                  [(b"www-authenticate", b'Bearer realm="modelgate"')])  # fmt: skip
