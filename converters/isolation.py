"""Run one conversion or verification step in its own Python subprocess.

TensorFlow and torch are heavy to import, leak memory across conversions and can
abort the interpreter on a bad graph; a subprocess per step keeps the caller lean and
turns every failure into a short message. The step is a ``module:function`` that takes
JSON keyword arguments and returns a JSON dict. Run as ``python -m converters.isolation
PAYLOAD.json RESULT.json`` (only :func:`run_step` does that).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from converters.errors import BadInput, StepFailed

#: Where ``make`` installs onnx2tf and its helpers (``pip install --no-deps --target``).
ONNX2TF_ENV = "MODELGATE_ONNX2TF_PATH"
DEFAULT_TIMEOUT = 600.0
_STDERR_TAIL_LINES = 12


def onnx2tf_path() -> Path:
    """The target directory holding onnx2tf (not installed into the venv: its pins would break TF 2.21)."""
    return Path(os.environ.get(ONNX2TF_ENV, str(Path(sys.prefix) / "onnx2tf")))


def run_step(
    step: str,
    kwargs: dict[str, Any],
    workdir: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    extra_path: list[Path] | None = None,
    tag: str = "",
) -> dict[str, Any]:
    """Call ``step`` (``module:function``) with ``kwargs`` in a fresh interpreter.

    Raises :class:`BadInput` when the step reports a user error, :class:`StepFailed` when
    it raises anything else, crashes or runs longer than ``timeout`` seconds. ``tag``
    keeps the files of concurrent calls of the same step in one ``workdir`` apart.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    stem = step.replace(":", ".").replace("/", "_") + (f".{tag}" if tag else "")
    payload, result, log = workdir / f"{stem}.in.json", workdir / f"{stem}.out.json", workdir / f"{stem}.log"
    payload.write_text(json.dumps({"step": step, "kwargs": kwargs}), encoding="utf-8")
    result.unlink(missing_ok=True)
    _launch(payload, result, log, timeout, extra_path or [], step)
    if not result.exists():
        raise StepFailed(step, f"the subprocess exited without a result\n{_tail(log)}")
    answer: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    if answer["status"] == "bad_input":
        raise BadInput(str(answer["message"]))
    if answer["status"] == "error":
        raise StepFailed(step, str(answer["message"]))
    return dict(answer["value"])


def _launch(payload: Path, result: Path, log: Path, timeout: float, extra_path: list[Path], step: str) -> None:
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *(str(p) for p in extra_path), env.get("PYTHONPATH", "")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONWARNINGS"] = "ignore"
    command = [sys.executable, "-m", "converters.isolation", str(payload), str(result)]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise StepFailed(step, f"timed out after {timeout:.0f} s (raise --timeout if the model is large)") from None
    if process.returncode != 0 and not result.exists():
        raise StepFailed(step, f"the subprocess died with exit code {process.returncode}\n{_tail(log)}")


def _tail(log: Path) -> str:
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-_STDERR_TAIL_LINES:])


def _resolve(step: str) -> Callable[..., dict[str, Any]]:
    module_name, _, function_name = step.partition(":")
    function: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module_name), function_name)
    return function


def short_error(exc: BaseException) -> str:
    """``Type: first meaningful lines`` of an exception, without ANSI colours or huge dumps."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", str(exc))
    lines = [line for line in text.splitlines() if line.strip()][:6]
    cause = exc.__cause__
    if cause is not None and cause is not exc:
        lines.append(f"caused by {short_error(cause)}")
    return f"{type(exc).__name__}: " + "\n".join(lines)


def _child(payload_path: Path, result_path: Path) -> int:
    payload = json.loads(payload_path.read_text(encoding="utf-8"))
    try:
        value = _resolve(payload["step"])(**payload["kwargs"])
        answer: dict[str, Any] = {"status": "ok", "value": value}
    except BadInput as exc:
        answer = {"status": "bad_input", "message": exc.message}
    except Exception as exc:
        traceback.print_exc()
        answer = {"status": "error", "message": short_error(exc)}
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(answer), encoding="utf-8")
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(Path(sys.argv[1]), Path(sys.argv[2])))
