"""The rollout decision for one moment: pure, from the plan and the evidence, with the evidence it used.

Rules (each checked every time, so a breach rolls back at once):

- errors: the candidate's (or its shadow copies') server errors exceed
  ``max_error_rate * max(requests, min_requests)``: with few requests a single error
  allowed by the rate over ``min_requests`` is tolerated, a burst is not;
- disagreement (shadow phase): rows whose top-1 differs exceed
  ``max_disagreement * max(compared, min_requests)``, or ``max_abs_diff`` is passed;
- latency: once the candidate has ``min_requests`` requests, candidate p99 over the stable
  version's p99 above ``max_p99_ratio`` (unless the candidate's p99 is under
  ``latency_floor_seconds``). The stable p99 is its baseline from before the rollout when one
  was measured (a slow canary sharing the CPU also slows the stable version down during the
  step, which would hide it), else the stable's p99 in the same step.

No breach: advance when the step has ``min_requests`` candidate requests (shadow: compared
copies) and ``dwell_seconds`` passed; otherwise hold. No data means hold, never advance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.core.evidence import VersionEvidence
from gateway.core.rollout.plan import RolloutPlan

HOLD, ADVANCE, ROLLBACK = "hold", "advance", "rollback"


@dataclass(frozen=True, slots=True)
class Decision:
    action: str
    reason: str = ""  # for a rollback: error_rate, latency, disagreement
    detail: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


def judge(plan: RolloutPlan, shadow_phase: bool, candidate: VersionEvidence, stable: VersionEvidence,
          dwell_done: bool, baseline_p99: float | None = None) -> Decision:  # fmt: skip
    """What to do now in the current phase or step."""
    evidence: dict[str, Any] = {"candidate": candidate.to_dict(), "stable": stable.to_dict(),
                                "baseline_p99_seconds": baseline_p99}  # fmt: skip
    slo = plan.slo
    minimum = plan.shadow.min_requests if shadow_phase and plan.shadow else plan.min_requests
    allowed_errors = slo.max_error_rate * max(candidate.requests, minimum)
    if candidate.errors > allowed_errors:
        detail = f"{candidate.errors} errors in {candidate.requests} requests (max_error_rate {slo.max_error_rate:g})"
        return Decision(ROLLBACK, "error_rate", detail, evidence)
    if shadow_phase:
        breach = _disagreement(plan, candidate, minimum)
        if breach:
            return Decision(ROLLBACK, "disagreement", breach, evidence)
    latency = _latency(plan, candidate, stable, minimum, baseline_p99)
    if latency:
        return Decision(ROLLBACK, "latency", latency, evidence)
    count = candidate.compared_rows if shadow_phase else candidate.requests
    if count >= minimum and dwell_done:
        return Decision(ADVANCE, "", f"{count} {'compared rows' if shadow_phase else 'requests'} within the SLOs",
                        evidence)  # fmt: skip
    return Decision(HOLD, "", f"{count} of {minimum} {'compared rows' if shadow_phase else 'requests'}", evidence)


def _disagreement(plan: RolloutPlan, candidate: VersionEvidence, minimum: int) -> str:
    slo = plan.slo
    if slo.max_disagreement is not None:
        allowed = slo.max_disagreement * max(candidate.compared_rows, minimum)
        if candidate.disagreeing_rows > allowed:
            return (f"top-1 differs on {candidate.disagreeing_rows} of {candidate.compared_rows} shadow rows "
                    f"(max_disagreement {slo.max_disagreement:g})")  # fmt: skip
    if slo.max_abs_diff is not None and candidate.max_abs_diff > slo.max_abs_diff:
        return f"max abs diff {candidate.max_abs_diff:.3g} over max_abs_diff {slo.max_abs_diff:g}"
    return ""


def _latency(plan: RolloutPlan, candidate: VersionEvidence, stable: VersionEvidence, minimum: int,
             baseline_p99: float | None) -> str:  # fmt: skip
    slo = plan.slo
    if slo.max_p99_ratio is None or candidate.requests < minimum:
        return ""
    ours = candidate.p99()
    theirs = baseline_p99 if baseline_p99 is not None else stable.p99()
    if ours is None or theirs is None or ours < slo.latency_floor_seconds:
        return ""
    if ours > slo.max_p99_ratio * theirs:
        return f"p99 {ours * 1000:.2f} ms is over {slo.max_p99_ratio:g} x stable's {theirs * 1000:.2f} ms"
    return ""
