"""TLS for the REST and gRPC ports, from the ``tls_cert`` / ``tls_key`` / ``tls_client_ca`` settings.

TLS 1.2 or later. With ``tls_client_ca`` the server requires a client certificate signed by
that CA (mutual TLS) on both ports; a client without one fails the handshake.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from gateway.core.errors import ConfigError


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None


def server_ssl_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """The REST port's SSL context (a ConfigError in our words if a file is unusable)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError):
        raise ConfigError(f"tls_cert {cert} / tls_key {key}: not a PEM certificate chain and its private key") from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (ssl.SSLError, OSError):
            raise ConfigError(f"tls_client_ca {client_ca}: not a PEM CA bundle") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def grpc_server_credentials(cert: Path, key: Path, client_ca: Path | None) -> grpc.ServerCredentials:
    """The gRPC port's credentials (the files are checked by :func:`server_ssl_context` first)."""
    pair = (_read(key, "tls_key"), _read(cert, "tls_cert"))
    root = _read(client_ca, "tls_client_ca") if client_ca is not None else None
    return grpc.ssl_server_credentials([pair], root_certificates=root, require_client_auth=client_ca is not None)
