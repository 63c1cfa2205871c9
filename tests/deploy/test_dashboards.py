"""deploy/dashboards: generated from code, naming only exported metrics, and showing data from a real
Prometheus scraping a real gateway under load."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deploy.dashboards.definitions import DASHBOARDS as DASHBOARD_SPECS
from deploy.dashboards.snapshot import render as render_snapshot
from tests.deploy.conftest import DEPLOY, ROOT
from tests.deploy.gateway_load import load_round
from tests.deploy.prometheus_server import PrometheusServer
from tests.deploy.promql import exported_names, metric_names
from tests.e2e.server_process import ServerProcess

DASHBOARDS = sorted((DEPLOY / "dashboards").glob("*.json"))
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
#: Models of the test gateway's repository (tests/deploy/gateway_load.py) a per-model panel is tried with.
MODELS = ("digits_mlp", "remote_down")


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel."""
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def unexported(dashboard: dict[str, Any], exported: set[str]) -> dict[str, set[str]]:
    """Panel title -> metric names its queries read that the gateway does not export."""
    missing: dict[str, set[str]] = {}
    for title, expr in panel_queries(dashboard):
        if names := metric_names(expr) - exported:
            missing.setdefault(title, set()).update(names)
    return missing


def instantiate(expr: str, model: str) -> str:
    """Grafana's variables as the dashboard would fill them: one model, all versions, a 15 s rate window."""
    return expr.replace("$__rate_interval", "15s").replace("$model", model).replace("$version", ".*")


def load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def test_both_dashboards_are_checked_in() -> None:
    assert [p.name for p in DASHBOARDS] == ["modelgate-model.json", "modelgate-overview.json"]


def test_the_checked_in_json_is_what_the_generator_writes(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "deploy.dashboards", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    for path in DASHBOARDS:
        assert (tmp_path / path.name).read_text() == path.read_text(), f"{path.name} is stale"
    check = subprocess.run([sys.executable, "-m", "deploy.dashboards", "--check"], cwd=ROOT, capture_output=True,
                           text=True, timeout=120, check=False)  # fmt: skip
    assert check.returncode == 0, check.stderr


def test_a_hand_edited_dashboard_is_reported_stale(tmp_path: Path) -> None:
    for path in DASHBOARDS:
        (tmp_path / path.name).write_text(path.read_text())
    edited = tmp_path / DASHBOARDS[0].name
    edited.write_text(edited.read_text().replace("Request rate", "Request rates", 1))
    check = subprocess.run([sys.executable, "-m", "deploy.dashboards", "--check", "--out", str(tmp_path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert check.returncode == 1
    assert f"{edited} is stale" in check.stderr


def test_every_panel_has_a_query_and_a_unit() -> None:
    for path in DASHBOARDS:
        panels = [p for p in load(path)["panels"] if p["type"] != "row"]
        assert panels, path.name
        for panel in panels:
            assert panel["targets"], panel["title"]
            assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]


@pytest.mark.e2e
def test_every_metric_a_panel_names_is_one_the_gateway_exports(metrics_page: str) -> None:
    exported = exported_names(metrics_page)
    for path in DASHBOARDS:
        assert unexported(load(path), exported) == {}, path.name


@pytest.mark.e2e
def test_a_panel_naming_a_metric_the_gateway_does_not_export_is_caught(metrics_page: str) -> None:
    board = load(DASHBOARDS[0])
    # A misspelt counter, and a plausible histogram name the gateway does not use (it exports
    # modelgate_queue_time_seconds; the batcher's queue wait was once planned under this name).
    absent = "modelgate_queue_duration_seconds_bucket"
    assert absent not in metrics_page
    board["panels"][1]["targets"][0]["expr"] = f"sum(rate(modelgate_request_total[5m])) + sum({absent})"
    assert unexported(board, exported_names(metrics_page)) == {
        board["panels"][1]["title"]: {"modelgate_request_total", absent}
    }


@pytest.fixture(scope="module")
def prometheus(gateway: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{gateway.metrics}"], RULE_FILES)
    server.start()
    try:
        yield server
    finally:
        server.close()


def _missing(prometheus: PrometheusServer, queries: dict[str, list[str]]) -> list[str]:
    return [name for name, exprs in queries.items() if not any(prometheus.has_data(expr) for expr in exprs)]


@pytest.mark.e2e
@pytest.mark.slow
def test_every_panel_and_recording_rule_returns_data_from_a_real_prometheus(
    gateway: ServerProcess, prometheus: PrometheusServer
) -> None:
    """Prometheus scrapes the gateway while it answers load; every panel query (for some model of the
    repository) and every recording rule must return a number. Polls, bounded, until they do."""
    queries: dict[str, list[str]] = {}
    for path in DASHBOARDS:
        for title, expr in panel_queries(load(path)):
            queries.setdefault(f"{path.stem}: {title}: {expr}", []).extend(instantiate(expr, m) for m in MODELS)
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    queries[f"rule {rule['record']}"] = [rule["record"]]
    deadline = time.monotonic() + 180
    missing = list(queries)
    with httpx.Client(timeout=30) as client:
        while missing and time.monotonic() < deadline:
            load_round(client, gateway.url)
            missing = _missing(prometheus, {name: queries[name] for name in missing})
    assert missing == [], f"no data after 180 s for: {missing}"


@pytest.mark.e2e
def test_the_docs_snapshot_renders_every_dashboard_from_prometheus(
    gateway: ServerProcess, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    with httpx.Client(timeout=30) as client:
        load_round(client, gateway.url)
    for spec in DASHBOARD_SPECS:
        png = render_snapshot(spec, prometheus.url, "digits_mlp", 1, tmp_path)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
