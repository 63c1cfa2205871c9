"""Gateway settings: pydantic-settings with the ``MODELGATE_`` prefix.

Precedence, highest first: command-line flags, ``MODELGATE_*`` environment variables,
the YAML file given with ``--config``, then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from gateway.core.config import format_validation_error, read_yaml_mapping
from gateway.core.errors import ConfigError
from gateway.tracing import check_otlp_endpoint

MiB = 1024 * 1024


def _workers(value: object) -> object:
    """``workers``: a whole number >= 1, or ``auto``."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ValueError(f"must be a whole number >= 1 or 'auto' (got {str(value)[:32]!r})")
    return int(text)


class Settings(BaseSettings):
    """Everything ``modelgate serve`` can be told."""

    model_config = SettingsConfigDict(env_prefix="MODELGATE_", extra="forbid", yaml_file=None)

    model_repository: Annotated[Path, Field(description="Directory of <model>/config.yaml + version folders.")] = Path(
        "model_repo"
    )
    host: Annotated[str, Field(description="Address every port binds to; 127.0.0.1 keeps the gateway local.")] = (
        "127.0.0.1"
    )
    http_port: Annotated[int, Field(ge=0, le=65535, description="V2 REST port (0 picks a free one).")] = 8000
    grpc_port: Annotated[int, Field(ge=0, le=65535, description="V2 gRPC port (0 picks a free one).")] = 8001
    metrics_port: Annotated[
        int, Field(ge=0, le=65535, description="Prometheus /metrics port (0 picks a free one).")
    ] = 8002
    max_request_bytes: Annotated[
        int, Field(ge=1024, description="Largest REST body accepted; larger gets 413 before it is read.")
    ] = 64 * MiB
    max_tensor_bytes: Annotated[
        int,
        Field(
            ge=1024,
            description="Largest decoded input tensor (declared shape x element size), checked before allocating.",
        ),
    ] = 64 * MiB
    grpc_max_message_bytes: Annotated[
        int, Field(ge=1024, description="Largest gRPC message either way (RESOURCE_EXHAUSTED beyond).")
    ] = 64 * MiB
    shutdown_grace_seconds: Annotated[
        float, Field(gt=0, description="On SIGTERM, how long in-flight requests may take to complete.")
    ] = 30.0
    health_check_seconds: Annotated[
        float, Field(gt=0, description="How often backends are probed; a failing one makes its model not ready.")
    ] = 2.0
    management_host: Annotated[
        str, Field(description="Address of the management API (loopback by default; any other needs a token).")
    ] = "127.0.0.1"
    management_port: Annotated[int, Field(ge=0, le=65535, description="Management API port (0 picks a free one).")] = (
        8003
    )
    management_token: Annotated[
        SecretStr | None,
        Field(description="Bearer token for the management API and the V2 repository routes; "
              "required when management_host is not loopback."),
    ] = None  # fmt: skip
    deployment_poll_seconds: Annotated[
        float, Field(gt=0, description="How often shared deployment state and rollouts are re-read and advanced.")
    ] = 1.0
    repository_poll: Annotated[
        bool,
        Field(description="Load new version folders (or roll them out per <model>/rollout.yaml) and unload "
              "removed ones, every deployment_poll_seconds."),
    ] = False  # fmt: skip
    gc_freeze: Annotated[
        bool,
        Field(description="Once the models are loaded, move every object alive then out of the garbage "
              "collector's reach (gc.freeze): a full collection then scans only what requests allocate, "
              "instead of pausing every request for the whole heap (the p99 at concurrency 32, see "
              "docs/performance.md)."),
    ] = True  # fmt: skip
    gc_gen0_threshold: Annotated[
        int,
        Field(ge=0, description="Once the models are loaded, allocations between young garbage collections "
              "(CPython's default 700 ran one every ~20 requests, ~9 us of CPU per request); 0 keeps "
              "CPython's default."),
    ] = 10_000  # fmt: skip
    workers: Annotated[
        int | Literal["auto"],
        BeforeValidator(_workers),
        Field(description="Serving processes sharing the REST, gRPC and metrics ports (SO_REUSEPORT), each with "
              "its own backends; 'auto' = one per CPU core. 1 (the default) serves in this process."),
    ] = 1  # fmt: skip
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Annotated[
        Literal["text", "json"], Field(description="Log lines as text, or one JSON object per line.")
    ] = "text"
    access_log: Annotated[
        bool,
        Field(description="One log record per REST and gRPC request: request id, model, version, status, latency."),
    ] = False
    http_server: Annotated[
        Literal["modelgate", "uvicorn"],
        Field(description="The REST port's HTTP/1.1 server: the gateway's own (httptools, about 45 us of CPU "
              "less per request) or uvicorn (the metrics and management ports always use uvicorn)."),
    ] = "modelgate"  # fmt: skip
    # -- bounded connections: REST (and the metrics port) ---------------------------------------
    http_header_timeout_seconds: Annotated[
        float, Field(gt=0, description="A request's headers must arrive within this time of its first byte.")
    ] = 10.0
    http_body_timeout_seconds: Annotated[
        float, Field(gt=0, description="A request's body must arrive within this time of its headers.")
    ] = 60.0
    http_write_timeout_seconds: Annotated[
        float,
        Field(
            gt=0,
            description="A client that reads none of a response for this long, while it waits "
            "to be sent, is cut off (its connection aborted).",
        ),
    ] = 60.0
    http_keep_alive_seconds: Annotated[
        float, Field(gt=0, description="An idle keep-alive connection is closed after this time.")
    ] = 30.0
    http_max_header_bytes: Annotated[
        int, Field(ge=1024, description="Largest request line plus headers; larger gets 431 and the connection closed.")
    ] = 32 * 1024
    http_max_connections: Annotated[
        int, Field(ge=1, description="Open REST connections at most; one more is answered 503 and closed at once.")
    ] = 1000
    # -- bounded connections: gRPC -------------------------------------------------------------
    grpc_max_concurrent_streams: Annotated[
        int, Field(ge=1, description="Concurrent calls per gRPC connection (HTTP/2 streams).")
    ] = 100
    grpc_max_connection_age_seconds: Annotated[
        float, Field(gt=0, description="A gRPC connection is asked to go away (GOAWAY) after this time.")
    ] = 3600.0
    grpc_max_connection_age_grace_seconds: Annotated[
        float, Field(ge=0, description="Calls still running on an aged-out connection get this long to finish.")
    ] = 30.0
    grpc_keepalive_seconds: Annotated[
        float, Field(gt=0, description="The server pings an idle gRPC connection this often to find dead peers.")
    ] = 60.0
    grpc_keepalive_timeout_seconds: Annotated[
        float, Field(gt=0, description="A keepalive ping unanswered this long closes the connection.")
    ] = 20.0
    grpc_min_ping_interval_seconds: Annotated[
        float,
        Field(gt=0, description="Clients pinging more often than this are sent GOAWAY (keepalive enforcement)."),
    ] = 10.0
    grpc_handshake_timeout_seconds: Annotated[
        float, Field(gt=0, description="A new gRPC connection must finish its (TLS and HTTP/2) handshake within this.")
    ] = 10.0
    # -- TLS ------------------------------------------------------------------------------------
    tls_cert: Annotated[
        Path | None, Field(description="PEM certificate (chain): REST and gRPC serve TLS when given (with tls_key).")
    ] = None
    tls_key: Annotated[Path | None, Field(description="PEM private key of tls_cert.")] = None
    tls_client_ca: Annotated[
        Path | None, Field(description="PEM CA bundle: clients must present a certificate it signed (mutual TLS).")
    ] = None

    @model_validator(mode="after")
    def _tls_files_together(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca needs tls_cert and tls_key (mutual TLS is TLS first)")
        for name in ("tls_cert", "tls_key", "tls_client_ca"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name} {path} is not a readable file")
        return self

    # -- tracing (issue 12) --
    otlp_endpoint: Annotated[
        str | None,
        AfterValidator(check_otlp_endpoint),
        Field(description="OTLP/HTTP collector (e.g. http://otel-collector:4318) to export request spans to; "
              "unset: no tracing, and OpenTelemetry is not even imported."),
    ] = None  # fmt: skip

    def worker_count(self) -> int:
        """How many serving processes ``workers`` asks for (``auto``: the CPUs this process may run on)."""
        if self.workers == "auto":
            return max(1, len(os.sched_getaffinity(0)))
        return self.workers

    @model_validator(mode="after")
    def _token_off_loopback(self) -> Settings:
        if not is_loopback(self.management_host) and not self.token():
            raise ValueError(
                f"management_token: required when management_host ({self.management_host}) is not a loopback "
                "address (set MODELGATE_MANAGEMENT_TOKEN)"
            )
        return self

    def token(self) -> str | None:
        """The management token, or None when none is set (an empty one counts as none)."""
        value = self.management_token.get_secret_value() if self.management_token is not None else ""
        return value or None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from flags (``overrides``, None values ignored), environment and the YAML file."""
    given = {k: v for k, v in overrides.items() if v is not None}
    cls: type[Settings] = Settings
    if config_file is not None:
        read_yaml_mapping(config_file, empty_ok=True)  # a clear error before pydantic-settings reads it
        cls = type("FileSettings", (Settings,), {"model_config": {**Settings.model_config, "yaml_file": config_file}})
    try:
        return cls(**given)
    except ValidationError as exc:
        where = f"{config_file} / " if config_file else ""
        raise ConfigError(f"invalid settings ({where}MODELGATE_* / flags): {format_validation_error(exc)}") from None


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; anything else (including 0.0.0.0) is reachable from outside."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
