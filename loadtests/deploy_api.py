"""A small client of the gateway's management API (rollouts, history, models), for the rollout scenario.

Only what the scenario needs: start a rollout, read its state, read the deployment history and the
current weights. Transport problems and refusals that mean the scenario cannot run (unreachable,
401, 404) raise :class:`LoadTestError` in our own words; a refused *deployment* (503: the version did
not load; 409: a rollout already runs) is an answer the scenario records, not an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from loadtests.errors import LoadTestError

DEFAULT_MANAGEMENT_PORT = 8003
TOKEN_ENV = "MODELGATE_MANAGEMENT_TOKEN"
URL_ENV = "MODELGATE_MANAGEMENT_URL"
#: Seconds to wait for an answer: a start call loads and warms up the candidate (TensorFlow: seconds).
TIMEOUT_SECONDS = 300.0
#: Rollout states that are still running.
ACTIVE = frozenset({"shadow", "canary", "paused"})


def default_deploy_url(host: str) -> str:
    """``$MODELGATE_MANAGEMENT_URL``, else the management port on the load-test host's machine."""
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV]
    hostname = urlsplit(host if "://" in host else f"grpc://{host}").hostname or "127.0.0.1"
    return f"http://{hostname}:{DEFAULT_MANAGEMENT_PORT}"


def read_token(token_file: Path | None) -> str | None:
    """The bearer token: the first line of ``--token-file``, else ``$MODELGATE_MANAGEMENT_TOKEN``, else none."""
    if token_file is None:
        return os.environ.get(TOKEN_ENV) or None
    try:
        lines = token_file.read_text(encoding="utf-8").strip().splitlines()
    except OSError as exc:
        raise LoadTestError(f"--token-file {token_file}: cannot read: {exc.strerror or exc}") from None
    if not lines or not lines[0].strip():
        raise LoadTestError(f"--token-file {token_file}: the file is empty")
    return lines[0].strip()


@dataclass(frozen=True)
class Answer:
    """One answer of the API: the HTTP status and the JSON body (``{"error": ...}`` when refused)."""

    status: int
    body: dict[str, Any]

    @property
    def error(self) -> str:
        return str(self.body.get("error", "")) if self.status >= 400 else ""


class DeployApi:
    """The management API at ``url`` with an optional bearer token."""

    def __init__(self, url: str, token: str | None, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DeployApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Answer:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise LoadTestError(f"deployment API {self.url} unreachable: {type(exc).__name__}") from None
        try:
            doc = response.json()
        except ValueError:
            doc = {"error": response.text[:200]}
        if response.status_code == 401:
            raise LoadTestError(f"deployment API {self.url}: missing or wrong token (--token-file or ${TOKEN_ENV})")
        return Answer(response.status_code, doc if isinstance(doc, dict) else {"value": doc})

    def checked(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """An answer that must succeed (reads): anything else is a :class:`LoadTestError`."""
        answer = self.call(method, path, body)
        if answer.status != 200:
            raise LoadTestError(f"deployment API {method} {path}: {answer.status} {answer.error}")
        return answer.body

    def start_rollout(self, model: str, plan: dict[str, Any]) -> Answer:
        return self.call("POST", f"/api/models/{model}/rollout", plan)

    def rollout(self, model: str) -> dict[str, Any]:
        return self.checked("GET", f"/api/models/{model}/rollout")

    def abort(self, model: str) -> Answer:
        return self.call("POST", f"/api/models/{model}/rollout/abort", {})

    def history(self, model: str) -> list[dict[str, Any]]:
        records = self.checked("GET", f"/api/history?model={model}").get("records", [])
        return [r for r in records if isinstance(r, dict)]

    def model(self, model: str) -> dict[str, Any]:
        """The model's entry of ``GET /api/models`` (versions, weights), or an error naming the model."""
        for entry in self.checked("GET", "/api/models").get("models", []):
            if isinstance(entry, dict) and entry.get("name") == model:
                return entry
        raise LoadTestError(f"deployment API {self.url}: the gateway serves no model {model!r}")
