"""The rollout scenario's plan file: the versions to roll out, in order, and what each is expected to do.

YAML::

    defaults:                 # optional: rollout-plan fields sent with every rollout (see docs/lifecycle.md)
      steps: [10, 50, 100]
      min_requests: 50        # candidate requests per step: rollouts advance on counts, not seconds
    rollouts:
      - {version: 2, expect: good}
      - {version: 3, expect: errors}
      - {version: 4, expect: slow, plan: {slo: {max_p99_ratio: 3}}}   # plan: overrides for this rollout
      - {version: 5, expect: wrong, plan: {shadow: {share: 1.0, min_requests: 50}}}
      - {version: 6, expect: fails_to_load}

Every rollout's plan (defaults, then its overrides, then its version) is validated with the
gateway's own plan rules before any load is sent, so a typo is refused up front (exit 2).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loadtests.errors import LoadTestError

PROMOTED, ROLLED_BACK, FAILED_TO_LOAD = "promoted", "rolled_back", "failed_to_load"


class Expect(StrEnum):
    """What a version is expected to do under load."""

    GOOD = "good"
    ERRORS = "errors"
    SLOW = "slow"
    WRONG = "wrong"
    FAILS_TO_LOAD = "fails_to_load"

    @property
    def outcome(self) -> str:
        """The outcome a working deployment pipeline gives such a version."""
        return {Expect.GOOD: PROMOTED, Expect.FAILS_TO_LOAD: FAILED_TO_LOAD}.get(self, ROLLED_BACK)

    @property
    def reasons(self) -> frozenset[str]:
        """The gateway's rollback reasons that fit (empty: no rollback expected).

        ``wrong`` answers are caught by a shadow phase (``disagreement``) or, when the answers make
        the candidate fail, by its error rate.
        """
        return {
            Expect.ERRORS: frozenset({"error_rate"}),
            Expect.SLOW: frozenset({"latency"}),
            Expect.WRONG: frozenset({"disagreement", "error_rate"}),
        }.get(self, frozenset())


class PlannedRollout(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1, description="the candidate version (a folder of the model)")
    expect: Expect
    plan: dict[str, Any] = Field(default_factory=dict, description="rollout-plan fields for this rollout only")


class ScenarioPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    defaults: dict[str, Any] = Field(default_factory=dict)
    rollouts: list[PlannedRollout] = Field(min_length=1)

    def body(self, index: int) -> dict[str, Any]:
        """The start request of rollout ``index``: defaults, its overrides, its version."""
        rollout = self.rollouts[index]
        return {**self.defaults, **rollout.plan, "version": str(rollout.version)}


def _check_bodies(path: Path, plan: ScenarioPlan) -> None:
    from gateway.core.errors import InvalidInput
    from gateway.core.rollout.plan import parse_plan

    for index in range(len(plan.rollouts)):
        body = plan.body(index)
        if "version" in {**plan.defaults, **plan.rollouts[index].plan}:
            raise LoadTestError(f"--plan {path}: rollouts.{index}.plan: 'version' is set by the rollout's own version")
        try:
            parse_plan(body)
        except InvalidInput as exc:
            raise LoadTestError(f"--plan {path}: rollouts.{index} (version {body['version']}): {exc}") from None


def load_plan(path: Path) -> ScenarioPlan:
    """Read and validate a plan file; any problem raises :class:`LoadTestError` naming the file and field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LoadTestError(f"--plan {path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise LoadTestError(f"--plan {path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise LoadTestError(f"--plan {path}: expected a mapping with 'rollouts' (and optionally 'defaults')")
    try:
        plan = ScenarioPlan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise LoadTestError(f"--plan {path}: {field}: {first['msg']}") from None
    _check_bodies(path, plan)
    return plan
