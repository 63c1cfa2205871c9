"""Service-level objectives per model, and the release gate that checks a run against them.

The SLO file is YAML::

    default:                # optional: for models not listed below
      max_error_rate: 0.0
    models:
      digits_mlp:
        p95_ms: 25          # client-side latency bounds, milliseconds
        p99_ms: 50
        max_error_rate: 0.001   # failed / total requests (wrong answers count as failures)
        min_rps: 100        # throughput the run must reach
        protocols:          # optional per-protocol overrides of the bounds above
          grpc: {p99_ms: 20}
    rollouts:               # optional: bounds for `modelgate loadtest-rollouts` (see RolloutBounds)
      max_failed_requests_good_rollout: 0
      max_rollout_seconds: 120
      min_success_rate: 1.0

Unknown keys are errors (a typo must not silently disable a bound). Latency bounds apply to the
client-side percentiles, which include the network and the server; the gateway's own view is in
the report beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loadtests.config import Protocol
from loadtests.errors import LoadTestError
from loadtests.stats import ClientStats


class Bounds(BaseModel):
    """Limits one run must stay within; a bound left out is not checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    p50_ms: float | None = Field(default=None, gt=0)
    p90_ms: float | None = Field(default=None, gt=0)
    p95_ms: float | None = Field(default=None, gt=0)
    p99_ms: float | None = Field(default=None, gt=0)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    min_rps: float | None = Field(default=None, ge=0)

    def merged(self, override: Bounds | None) -> Bounds:
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))


class ModelSlo(Bounds):
    protocols: dict[Protocol, Bounds] = Field(default_factory=dict)

    def for_protocol(self, protocol: Protocol) -> Bounds:
        base = Bounds.model_validate(self.model_dump(exclude={"protocols"}))
        return base.merged(self.protocols.get(protocol))


class RolloutBounds(BaseModel):
    """Bounds on a rollout scenario (``modelgate loadtest-rollouts``); a bound left out is not checked.

    Failed requests of a rollout are the larger of the gateway's count (non-2xx/OK statuses in its
    metrics) and the client's (which also counts wrong answers) over the rollout's window.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_failed_requests_good_rollout: int | None = Field(default=None, ge=0)
    max_failed_requests_bad_rollout: int | None = Field(default=None, ge=0)
    max_rollout_seconds: float | None = Field(default=None, gt=0)
    min_success_rate: float | None = Field(default=None, ge=0, le=1)
    outcomes_as_expected: bool = Field(default=True, description="every rollout ends as its plan entry expects")


class SloFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: ModelSlo | None = None
    models: dict[str, ModelSlo] = Field(default_factory=dict)
    rollouts: RolloutBounds | None = None

    def bounds_for(self, model: str, protocol: Protocol) -> Bounds | None:
        """The bounds for a model and protocol, or None when the file sets none for that model."""
        slo = self.models.get(model, self.default)
        return slo.for_protocol(protocol) if slo is not None else None


def load_slo_file(path: Path) -> SloFile:
    """Read and validate an SLO file; any problem raises :class:`LoadTestError` naming file and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LoadTestError(f"--slo {path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise LoadTestError(f"--slo {path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise LoadTestError(f"--slo {path}: expected a mapping with 'models' (and optionally 'default', 'rollouts')")
    try:
        return SloFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise LoadTestError(f"--slo {path}: {field}: {first['msg']}") from None


@dataclass(frozen=True)
class Breach:
    """One bound a run did not meet."""

    model: str
    protocol: str
    metric: str
    bound: float
    actual: float | None

    def __str__(self) -> str:
        if self.metric == "failed_checks":
            if self.actual is None:
                return f"failed checks: {self.model} [{self.protocol}] completed no requests"
            return f"failed checks: {self.model} [{self.protocol}] {self.actual:g} responses failed their checks"
        actual = "no data" if self.actual is None else f"{self.actual:.4g}"
        relation = "<" if self.metric == "min_rps" else ">"
        return f"SLO breach: {self.model} [{self.protocol}] {self.metric}: {actual} {relation} {self.bound:g}"

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "protocol": self.protocol,
            "metric": self.metric,
            "bound": self.bound,
            "actual": self.actual,
        }


def _latency_breaches(bounds: Bounds, stats: ClientStats) -> list[tuple[str, float, float | None]]:
    out: list[tuple[str, float, float | None]] = []
    for key in ("p50", "p90", "p95", "p99"):
        bound = getattr(bounds, f"{key}_ms")
        actual = stats.latency_ms.get(key)
        if bound is not None and (actual is None or actual > bound):
            out.append((f"{key}_ms", bound, actual))
    return out


def evaluate(model: str, protocol: Protocol, bounds: Bounds, stats: ClientStats) -> list[Breach]:
    """Every bound of ``bounds`` the run's client-side ``stats`` breached (empty when it passed)."""
    found = _latency_breaches(bounds, stats)
    if bounds.max_error_rate is not None and (stats.requests == 0 or stats.error_rate > bounds.max_error_rate):
        found.append(("max_error_rate", bounds.max_error_rate, stats.error_rate if stats.requests else None))
    if bounds.min_rps is not None and stats.rps < bounds.min_rps:
        found.append(("min_rps", bounds.min_rps, stats.rps))
    return [Breach(model, protocol.value, metric, bound, actual) for metric, bound, actual in found]


def check_failures(model: str, protocol: Protocol, bounds: Bounds | None, stats: ClientStats) -> list[Breach]:
    """The default gate when no SLO bounds the error rate: every request must pass its checks."""
    if bounds is not None and bounds.max_error_rate is not None:
        return []
    if stats.requests and stats.failures == 0:
        return []
    return [Breach(model, protocol.value, "failed_checks", 0.0, float(stats.failures) if stats.requests else None)]
