"""Render Kustomize overlays with kubectl and validate the objects offline.

Built-in kinds are validated strictly (unknown fields rejected) by kubernetes-validate's bundled
schemas; custom resources (ServiceMonitor) against the strict schemas in deploy/kustomize/schemas.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from tests.deploy.conftest import DEPLOY

KUSTOMIZE = DEPLOY / "kustomize"
#: kubectl's version on the project's machines, and the newest schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.32.0", kubernetes_validate.latest_version())
CRD_SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.monitoring.coreos.com-v1.json"}


def render(path: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize PATH`` as a list of objects; raises with kubectl's message if it fails."""
    result = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=120,
                            check=False)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validation_errors(objects: list[dict[str, Any]], version: str, schemas: Path = KUSTOMIZE / "schemas") -> list[str]:
    """One message per invalid object (empty when every object is valid)."""
    errors = []
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        crd = CRD_SCHEMAS.get((obj.get("apiVersion", ""), obj.get("kind", "")))
        try:
            if crd is not None:
                schema = json.loads((schemas / crd).read_text(encoding="utf-8"))
                jsonschema.validate(obj, schema)
            else:
                kubernetes_validate.validate(obj, version, strict=True)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
            errors.append(f"{name}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{name}: no schema for {obj.get('apiVersion')} {obj.get('kind')}")
    return errors


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]
