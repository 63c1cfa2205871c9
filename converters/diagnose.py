"""Turn a failed conversion or verification step into a cause in our words and what to do.

The CLI and the report never show a raw library traceback or ANSI colour codes: each
failure becomes a :class:`Diagnosis` (``cause`` and ``action`` written here, for people) plus
a one-line ``detail`` from the library, cleaned, kept in the JSON report for whoever digs.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

from converters.errors import BadInput, StepFailed

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_DIED = re.compile(r"the subprocess died with exit code (-?\d+)")
_DETAIL_CHARS = 300


@dataclass(frozen=True)
class Diagnosis:
    """Why a target failed, and what the user can do about it."""

    cause: str
    action: str
    detail: str = ""


def clean(text: str) -> str:
    """Without ANSI escape codes, collapsed to the first non-empty lines, at most 300 characters."""
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    joined = " | ".join(lines[:3])
    return joined if len(joined) <= _DETAIL_CHARS else joined[: _DETAIL_CHARS - 1] + "…"


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _crash(text: str, doing: str) -> Diagnosis | None:
    match = _DIED.search(text)
    if match is None:
        return None
    code = int(match.group(1))
    how = f"crashed ({_signal_name(code)})" if code < 0 else f"exited with status {code}"
    return Diagnosis(
        f"the framework {how} while {doing}",
        "the artifact is not usable for this model: drop this target from --to, or change the model "
        "(e.g. a fixed batch size, or layers the target supports)",
    )


def source_failure(source: object, exc: StepFailed) -> str:
    """The one-line exit-2 message when the source model cannot be loaded or run at all."""
    crashed = _crash(exc.message, "loading or running the source model")
    if crashed is not None:
        return f"cannot load or run {source}: {crashed.cause}; check that it is a complete, working model"
    if "timed out after" in exc.message:
        return f"cannot load or run {source}: it took longer than --timeout; raise --timeout"
    return f"cannot load or run {source} ({clean(exc.message)}); check that it is a complete, working model"


def conversion_failure(target: str, exc: BadInput | StepFailed, timeout: float) -> Diagnosis:
    """A conversion step that did not produce its artifact."""
    if isinstance(exc, BadInput):
        return Diagnosis(clean(exc.message), f"fix that, or drop '{target}' from --to")
    text = exc.message
    if "timed out after" in text:
        return Diagnosis(
            f"the conversion took longer than --timeout {timeout:g} s", "raise --timeout, or drop it from --to"
        )
    crashed = _crash(text, f"converting to {target}")
    if crashed is not None:
        return Diagnosis(crashed.cause, crashed.action, clean(text.split("\n", 1)[-1]))
    return Diagnosis(
        f"the {target} exporter could not convert this model (an operation or layer it does not support)",
        f"drop '{target}' from --to, or replace the unsupported layer; the report's 'detail' has the exporter's note",
        clean(text),
    )


def runtime_failure(target: str, exc: BadInput | StepFailed, timeout: float) -> Diagnosis:
    """A verification step that could not run the artifact."""
    if isinstance(exc, BadInput):
        return Diagnosis(clean(exc.message), f"drop '{target}' from --to")
    text = exc.message
    if "timed out after" in text:
        return Diagnosis(f"running the artifact took longer than --timeout {timeout:g} s", "raise --timeout")
    crashed = _crash(text, f"running the {target} artifact at batch 1, 32 or N")
    if crashed is not None:
        return Diagnosis(crashed.cause, crashed.action, clean(text.split("\n", 1)[-1]))
    return Diagnosis(
        f"the {target} artifact was built but its runtime cannot run it",
        f"drop '{target}' from --to; the report's 'detail' has the runtime's note",
        clean(text),
    )


def dependency_failure(needed: str, why: Diagnosis) -> Diagnosis:
    """A target built from another target's artifact (``needed``), which failed for ``why``."""
    cause = why.cause if why.cause.startswith("it needs the ") else f"it needs the {needed} artifact: {why.cause}"
    return Diagnosis(cause, why.action, why.detail)
