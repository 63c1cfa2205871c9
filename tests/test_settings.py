import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.core.errors import ConfigError
from gateway.settings import load_settings


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("http_port: 9000\ngrpc_port: 9001\nmetrics_port: 9002\n")
    script = (
        "import json, sys; from pathlib import Path; from gateway.settings import load_settings; "
        "s = load_settings(Path(sys.argv[1]), metrics_port=9202, host=None); "
        "print(json.dumps([s.http_port, s.grpc_port, s.metrics_port, s.host]))"
    )
    env = {**os.environ, "MODELGATE_GRPC_PORT": "9101", "MODELGATE_METRICS_PORT": "9102"}
    out = subprocess.run([sys.executable, "-c", script, str(config)], env=env, capture_output=True, text=True)
    assert json.loads(out.stdout) == [9000, 9101, 9202, "127.0.0.1"], out.stderr


def test_defaults() -> None:
    settings = load_settings()
    assert (settings.http_port, settings.grpc_port, settings.metrics_port) == (8000, 8001, 8002)
    assert settings.model_repository == Path("model_repo")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("htp_port: 1\n", "htp_port: Extra inputs"),
        ("http_port: 70000\n", "http_port"),
        ("[1, 2]\n", "mapping"),
        ("http_server: nginx\n", "http_server: Input should be 'modelgate' or 'uvicorn'"),
    ],
)
def test_bad_settings_file_names_the_field(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_settings(config)


def test_missing_settings_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml")


def test_connection_bounds_and_tls_defaults() -> None:
    s = load_settings()
    assert (s.http_header_timeout_seconds, s.http_body_timeout_seconds, s.http_keep_alive_seconds) == (10, 60, 30)
    assert (s.http_max_header_bytes, s.http_max_connections, s.http_write_timeout_seconds) == (32 * 1024, 1000, 60)
    assert (s.grpc_max_concurrent_streams, s.grpc_max_connection_age_seconds, s.grpc_min_ping_interval_seconds) == (
        100, 3600, 10,
    )  # fmt: skip
    assert (s.tls_cert, s.tls_key, s.tls_client_ca, s.log_format, s.access_log) == (None, None, None, "text", False)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"tls_cert": "cert.pem"}, "tls_cert and tls_key must be given together"),
        ({"tls_key": "key.pem"}, "tls_cert and tls_key must be given together"),
        ({"tls_cert": "absent.pem", "tls_key": "absent.key"}, "tls_cert absent.pem is not a readable file"),
        ({"http_header_timeout_seconds": 0}, "http_header_timeout_seconds"),
        ({"http_max_connections": 0}, "http_max_connections"),
        ({"http_write_timeout_seconds": 0}, "http_write_timeout_seconds"),
        ({"log_format": "xml"}, "log_format"),
    ],
)
def test_bad_connection_and_tls_settings_name_the_field(overrides: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_settings(**overrides)


def test_client_ca_needs_a_certificate(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ConfigError, match="tls_client_ca needs tls_cert and tls_key"):
        load_settings(tls_client_ca=ca)


def test_otlp_endpoint_comes_from_the_environment() -> None:
    script = "from gateway.settings import load_settings; print(load_settings().otlp_endpoint)"
    env = {**os.environ, "MODELGATE_OTLP_ENDPOINT": "http://otel-collector:4318"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "http://otel-collector:4318", out.stderr
    assert load_settings().otlp_endpoint is None  # off by default


@pytest.mark.parametrize("value", ["collector:4318", "ftp://collector", "http://", "http://a b"])
def test_a_bad_otlp_endpoint_names_the_field(tmp_path: Path, value: str) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"otlp_endpoint: {json.dumps(value)}\n")
    with pytest.raises(ConfigError, match=r"otlp_endpoint: .*must be an http:// or https:// URL"):
        load_settings(config)
