"""``modelgate`` CLI: models listing/validation, schema, and clear errors (run as real processes)."""

import json
import subprocess
import sys
from pathlib import Path

from tests.onnx_models import write_model


def modelgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=120)


def test_models_lists_and_exits_zero_on_a_valid_repository(demo_repo: Path) -> None:
    result = modelgate("models", "--model-repository", str(demo_repo))
    assert result.returncode == 0, result.stderr
    assert "digits_mlp" in result.stdout and "VALID" in result.stdout


def test_models_reports_invalid_configs_and_exits_one(demo_repo: Path, tmp_path: Path) -> None:
    write_model(tmp_path, "broken", "backend: onnxruntime\nlabels: {stable: 9}\n")
    write_model(tmp_path, "good", "backend: onnxruntime\n")
    result = modelgate("models", "--model-repository", str(tmp_path), "--load", "--json")
    assert result.returncode == 1
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["good"]["state"] == "READY"
    assert rows["broken"]["state"] == "UNAVAILABLE" and "labels.stable" in rows["broken"]["reason"]


def test_schema_is_the_config_json_schema() -> None:
    result = modelgate("models", "--schema")
    schema = json.loads(result.stdout)
    assert "backend" in schema["properties"] and "version_policy" in schema["properties"]


def test_serve_with_a_missing_repository_is_a_clear_error(tmp_path: Path) -> None:
    result = modelgate("serve", "--model-repository", str(tmp_path / "absent"), "--http-port", "0")
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_serve_with_a_bad_settings_file_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text("http_prot: 1\n")
    result = modelgate("serve", "--config", str(config))
    assert result.returncode == 2 and "http_prot" in result.stderr and "Traceback" not in result.stderr
