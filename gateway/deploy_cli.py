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
from typing import Any

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


def _add(sub: argparse._SubParsersAction[Any], name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("MODELGATE_MANAGEMENT_TOKEN") or None
    try:
        method, path, body, printer = _request(args)
        answer = _call(args.url, token, method, path, body, args.timeout)
    except DeployError as exc:
        print(f"modelgate deploy: error: {exc}", file=sys.stderr)
        return exc.code
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        printer(answer)
    return EXIT_OK


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
    raise DeployError(f"unknown action {command!r}", EXIT_USAGE)


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


def _print_history(answer: dict[str, Any]) -> None:
    for record in answer.get("records", []):
        version = f" v{record['version']}" if record.get("version") else ""
        reason = f"  {record['reason']}" if record.get("reason") else ""
        print(f"{record['time']}  {record['model']}{version}  {record['action']} {record['outcome']}{reason}")
    summary = answer.get("summary")
    if summary:
        print(json.dumps(summary, indent=2))
