"""deploy/prometheus: config, rules and alert unit tests checked by the real promtool (Debian's prometheus)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import DEPLOY
from tests.deploy.promql import exported_names, metric_names

PROM = DEPLOY / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
ALERT_TESTS = PROM / "tests" / "alerts_test.yml"


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], input=stdin, capture_output=True, text=True, timeout=120, check=False)


def rules(paths: list[Path]) -> list[dict[str, str]]:
    return [rule for path in paths for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def alert_names(paths: list[Path]) -> set[str]:
    return {rule["alert"] for rule in rules(paths) if "alert" in rule}


def alerts_fired_in(test_file: Path) -> set[str]:
    spec = yaml.safe_load(test_file.read_text())
    return {case["alertname"] for test in spec["tests"] for case in test.get("alert_rule_test", [])
            if case.get("exp_alerts")}  # fmt: skip


def untested_alerts(rule_paths: list[Path], test_file: Path) -> set[str]:
    """Alerts with no promtool test that expects them to fire."""
    return alert_names(rule_paths) - alerts_fired_in(test_file)


def test_the_plain_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", str(PROM / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout + result.stderr


def test_every_rule_file_is_valid() -> None:
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    assert alert_names(RULE_FILES), "no alerts found"
    assert untested_alerts(RULE_FILES, ALERT_TESTS) == set()


def test_an_alert_without_a_unit_test_is_reported(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yml"
    extra.write_text(
        "groups:\n- name: x\n  rules:\n  - alert: ModelgateNewAlert\n    expr: modelgate_backend_up == 0\n"
    )
    assert untested_alerts([*RULE_FILES, extra], ALERT_TESTS) == {"ModelgateNewAlert"}


@pytest.mark.parametrize(
    "rule",
    [
        "- record: broken:rate5m\n    expr: sum(rate(modelgate_requests_total[5m])",  # unbalanced parenthesis
        "- alert: Broken\n    expr: modelgate_backend_up == 0\n    for: two minutes",  # bad duration
        "- alert: Broken\n    exprr: modelgate_backend_up == 0",  # typo in a field name
    ],
)
def test_a_rule_that_does_not_parse_fails_the_check(tmp_path: Path, rule: str) -> None:
    path = tmp_path / "broken.yml"
    path.write_text(f"groups:\n- name: broken\n  rules:\n  {rule}\n")
    assert promtool("check", "rules", str(path)).returncode != 0


def test_a_wrong_alert_expectation_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests really evaluate the alerts: expecting the wrong labels fails."""
    for path in RULE_FILES:
        (tmp_path / "rules").mkdir(exist_ok=True)
        (tmp_path / "rules" / path.name).write_text(path.read_text())
    (tmp_path / "tests").mkdir()
    broken = ALERT_TESTS.read_text().replace("model: digits_torch_ts", "model: digits_mlp")
    (tmp_path / "tests" / ALERT_TESTS.name).write_text(broken)
    assert promtool("test", "rules", str(tmp_path / "tests" / ALERT_TESTS.name)).returncode != 0


@pytest.mark.e2e
def test_the_gateways_metrics_pass_promtool_check_metrics(metrics_page: str) -> None:
    assert "modelgate_request_duration_seconds_bucket" in metrics_page
    result = promtool("check", "metrics", stdin=metrics_page)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


@pytest.mark.e2e
def test_every_metric_the_rules_read_is_exported_or_recorded(metrics_page: str) -> None:
    known = exported_names(metrics_page) | {"up"} | {rule["record"] for rule in rules(RULE_FILES) if "record" in rule}
    read = {name for rule in rules(RULE_FILES) for name in metric_names(rule["expr"])}
    assert read, "no metric names found in the rules"
    assert read - known == set()
