"""``modelgate deploy ...``: the management API for humans and CI.

Exit codes: 0 done; 1 the gateway refused or the deployment failed (e.g. a version that
did not load or warm up, a rollout rolled back); 2 bad arguments, a request the gateway
rejected as invalid (400/404), a missing or wrong token (401), or an unreachable gateway.
Errors are one line on stderr; ``--json`` prints the API's answer as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_URL = "http://127.0.0.1:8003"

Printer = Callable[[dict[str, Any]], None]


class DeployError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    deploy = subparsers.add_parser("deploy", help="manage deployments on a running gateway (management API)")
    deploy.add_argument("--url", default=os.environ.get("MODELGATE_MANAGEMENT_URL", DEFAULT_URL),
                        help=f"management API (default $MODELGATE_MANAGEMENT_URL or {DEFAULT_URL})")  # fmt: skip
    deploy.add_argument("--token", default=None, help="bearer token (default $MODELGATE_MANAGEMENT_TOKEN)")
    deploy.add_argument("--json", action="store_true", help="print the API's JSON answer")
    deploy.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for an answer (default 300)")
    sub = deploy.add_subparsers(dest="deploy_command", required=True, metavar="ACTION")
    _add(sub, "status", "models, versions with state, labels and traffic weights")
    p = _add(sub, "load", "load a version folder of a model (or reload the model per its config)")
    p.add_argument("model")
    p.add_argument("source", nargs="?", help='version folder inside the repository, e.g. "3" or "digits/3"')
    p = _add(sub, "unload", "unload a version (or the whole model); in-flight requests finish")
    p.add_argument("model")
    p.add_argument("version", nargs="?")
    p = _add(sub, "labels", "set a model's labels, e.g. stable=2 canary=3")
    p.add_argument("model")
    p.add_argument("labels", nargs="*", metavar="LABEL=VERSION")
    p = _add(sub, "traffic", "set a weighted split, e.g. 1=90 2=10 (--clear removes it)")
    p.add_argument("model")
    p.add_argument("weights", nargs="*", metavar="VERSION=PERCENT")
    p.add_argument("--shadow", metavar="VERSION:SHARE", help="copy SHARE (0..1] of requests to VERSION")
    p.add_argument("--clear", action="store_true", help="remove the split (the default version serves)")
    p = _add(sub, "history", "deployment history and figures")
    p.add_argument("--model")
    p.add_argument("--limit", type=int, default=20)
    _add_rollout(sub)


def _add_rollout(sub: argparse._SubParsersAction[Any]) -> None:
    p = _add(sub, "rollout", "progressive rollout: start (with a plan), status, pause, resume, promote, abort")
    p.add_argument("action", choices=["start", "status", "pause", "resume", "promote", "abort"])
    p.add_argument("model")
    p.add_argument("version", nargs="?", help="candidate version (start)")
    p.add_argument("--plan", type=Path, help="YAML/JSON plan file (fields as in <model>/rollout.yaml)")
    p.add_argument("--steps", help="candidate percent per step, e.g. 10,50,100")
    p.add_argument("--min-requests", type=int, help="candidate requests per step before advancing")
    p.add_argument("--dwell", type=float, help="least seconds per step")
    p.add_argument("--shadow", metavar="SHARE[:MIN_REQUESTS]", help="shadow phase first, e.g. 1.0:200")
    p.add_argument("--wait", action="store_true",
                   help="wait until the rollout ends: exit 0 promoted, 1 rolled back or aborted")  # fmt: skip


def _add(sub: argparse._SubParsersAction[Any], name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("MODELGATE_MANAGEMENT_TOKEN") or None
    try:
        method, path, body, printer = _request(args)
        answer = _call(args.url, token, method, path, body, args.timeout)
        if args.deploy_command == "history":
            query = f"?model={args.model}" if args.model else ""
            answer["summary"] = _call(args.url, token, "GET", f"/api/figures{query}", None, args.timeout)
        if args.deploy_command == "rollout" and getattr(args, "wait", False):
            answer = _wait(args, token, answer, printer)
    except DeployError as exc:
        print(f"modelgate deploy: error: {exc}", file=sys.stderr)
        return exc.code
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        printer(answer)
    if args.deploy_command == "rollout" and getattr(args, "wait", False):
        return EXIT_OK if answer.get("status") == "promoted" else EXIT_FAILED
    return EXIT_OK


def _wait(args: argparse.Namespace, token: str | None, answer: dict[str, Any], printer: Printer) -> dict[str, Any]:
    """Poll the rollout until it is promoted, rolled back or aborted (or --timeout passes)."""
    import time

    deadline = time.monotonic() + args.timeout
    last = None
    while answer.get("status") in ("shadow", "canary", "paused"):
        if not args.json and (answer.get("status"), answer.get("step")) != last:
            printer(answer)
            last = (answer.get("status"), answer.get("step"))
        if time.monotonic() > deadline:
            raise DeployError(f"the rollout did not finish within {args.timeout:g} s (--timeout)", EXIT_FAILED)
        time.sleep(0.5)
        answer = _call(args.url, token, "GET", f"/api/models/{args.model}/rollout", None, args.timeout)
    return answer


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None, Printer]:
    command = args.deploy_command
    if command == "status":
        return "GET", "/api/models", None, _print_status
    if command == "load":
        body = {"source": args.source} if args.source else {}
        return "POST", f"/api/models/{args.model}/load", body, _print_result
    if command == "unload":
        body = {"version": args.version} if args.version else {}
        return "POST", f"/api/models/{args.model}/unload", body, _print_result
    if command == "labels":
        return (
            "PUT",
            f"/api/models/{args.model}/labels",
            {"labels": _pairs(args.labels, "LABEL=VERSION")},
            _print_result,
        )
    if command == "traffic":
        return "PUT", f"/api/models/{args.model}/traffic", _traffic_body(args), _print_result
    if command == "history":
        query = f"?limit={args.limit}" + (f"&model={args.model}" if args.model else "")
        return "GET", f"/api/history{query}", None, _print_history
    if command == "rollout":
        base = f"/api/models/{args.model}/rollout"
        if args.action == "start":
            return "POST", base, _plan_body(args), _print_rollout
        if args.action == "status":
            return "GET", base, None, _print_rollout
        return "POST", f"{base}/{args.action}", None, _print_rollout
    raise DeployError(f"unknown action {command!r}", EXIT_USAGE)


def _plan_body(args: argparse.Namespace) -> dict[str, Any]:
    plan: dict[str, Any] = {}
    if args.plan is not None:
        try:
            loaded = yaml.safe_load(args.plan.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise DeployError(f"--plan {args.plan}: cannot read a YAML/JSON plan: {exc}", EXIT_USAGE) from None
        if not isinstance(loaded, dict):
            raise DeployError(f"--plan {args.plan}: must hold a mapping of plan fields", EXIT_USAGE)
        plan.update(loaded)
    if args.version:
        plan["version"] = args.version
    if args.steps:
        plan["steps"] = [_number(step, "--steps") for step in args.steps.split(",")]
    if args.min_requests is not None:
        plan["min_requests"] = args.min_requests
    if args.dwell is not None:
        plan["dwell_seconds"] = args.dwell
    if args.shadow:
        share, _, minimum = args.shadow.partition(":")
        plan["shadow"] = {"share": _number(share, "--shadow share")}
        if minimum:
            plan["shadow"]["min_requests"] = int(_number(minimum, "--shadow min_requests"))
    if "version" not in plan:
        raise DeployError("rollout start needs the candidate VERSION (or version: in --plan)", EXIT_USAGE)
    return plan


def _traffic_body(args: argparse.Namespace) -> dict[str, Any]:
    if args.clear:
        return {"weights": None}
    weights = {k: _number(v, f"weight {k}") for k, v in _pairs(args.weights, "VERSION=PERCENT").items()}
    body: dict[str, Any] = {"weights": weights}
    if args.shadow:
        version, _, share = args.shadow.partition(":")
        body["shadow"] = {"version": version, "share": _number(share or "1", "--shadow share")}
    return body


def _pairs(items: list[str], form: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise DeployError(f"{item!r} is not {form}", EXIT_USAGE)
        pairs[key] = value
    if not pairs:
        raise DeployError(f"give at least one {form}", EXIT_USAGE)
    return pairs


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DeployError(f"{what}: {text!r} is not a number", EXIT_USAGE) from None


def _call(url: str, token: str | None, method: str, path: str, body: dict[str, Any] | None,
          timeout: float) -> dict[str, Any]:  # fmt: skip
    import httpx

    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(method, url.rstrip("/") + path, json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise DeployError(f"cannot reach the management API at {url}: {exc}", EXIT_USAGE) from None
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": f"HTTP {response.status_code} without a JSON body"}
    if not isinstance(answer, dict):
        answer = {"answer": answer}
    if response.status_code >= 400:
        message = answer.get("error", f"HTTP {response.status_code}")
        code = EXIT_USAGE if response.status_code in (400, 401, 403, 404, 405, 413) else EXIT_FAILED
        raise DeployError(f"{message} (HTTP {response.status_code})", code)
    return answer


def _print_result(answer: dict[str, Any]) -> None:
    model = answer.get("model", "")
    if "version" in answer and "duration_seconds" in answer:
        print(
            f"{model} version {answer['version']}: {answer.get('state', 'done')} in {answer['duration_seconds']:.3f} s"
        )
    elif "versions" in answer:
        states = ", ".join(f"{v} {s}" for v, s in answer["versions"].items())
        print(f"{model}: {states}")
    elif "labels" in answer:
        print(f"{model} labels: " + (", ".join(f"{k}={v}" for k, v in answer["labels"].items()) or "(none)"))
    elif "traffic" in answer:
        traffic = answer["traffic"]
        weights = ", ".join(f"v{v} {w:g}%" for v, w in traffic["weights"].items()) if traffic else "default version"
        print(f"{model} traffic: {weights}")
    else:
        print(json.dumps(answer))


def _print_status(answer: dict[str, Any]) -> None:
    for model in answer.get("models", []):
        labels = " ".join(f"{k}={v}" for k, v in model.get("labels", {}).items())
        print(f"{model['name']:<24} {model['state']:<12} {labels}")
        for row in model.get("versions", []):
            weight = model.get("weights", {}).get(row["version"], 0.0)
            reason = f"  {row['reason']}" if row.get("reason") else ""
            print(f"  v{row['version']:<6} {row['state']:<12} {weight:6.1f}%{reason}")


def _print_rollout(answer: dict[str, Any]) -> None:
    weights = ", ".join(f"v{v} {w:g}%" for v, w in answer.get("weights", {}).items())
    reason = f"  ({answer['reason']})" if answer.get("reason") else ""
    print(f"{answer.get('model')} rollout v{answer.get('stable')} -> v{answer.get('candidate')}: "
          f"{answer.get('status')}, {weights}{reason}")  # fmt: skip


def _print_history(answer: dict[str, Any]) -> None:
    for record in answer.get("records", []):
        version = f" v{record['version']}" if record.get("version") else ""
        reason = f"  {record['reason']}" if record.get("reason") else ""
        print(f"{record['time']}  {record['model']}{version}  {record['action']} {record['outcome']}{reason}")
    summary = answer.get("summary")
    if summary:
        rate = summary.get("success_rate")
        print(f"deployments: {summary['deployments']} ({summary['succeeded']} succeeded"
              + (f", success rate {rate:.0%})" if rate is not None else ")"))  # fmt: skip
        print(f"rollbacks: {summary['rollbacks']} {summary['rollback_reasons'] or ''}".rstrip())
        spread = summary.get("time_to_roll_out_seconds")
        if spread:
            print(
                f"time to roll out: median {spread['median']:.1f} s (min {spread['min']:.1f}, max {spread['max']:.1f})"
            )
        print(f"requests failed during rollouts: {summary['requests_failed_during_rollouts']}")
