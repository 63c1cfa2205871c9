"""A rollout plan: steps of traffic share, minimum requests and dwell per step, SLOs, optional shadow phase.

A plan is data: ``<repository>/<model>/rollout.yaml`` holds a model's default plan, and a
start request may give (or override) any field. ``modelgate deploy rollout --help`` and
docs/lifecycle.md describe every field.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.core.config import format_validation_error, read_yaml_mapping
from gateway.core.errors import ConfigError, InvalidInput

PLAN_FILE = "rollout.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Slo(_Strict):
    """What the candidate must keep to; breaking any one rolls the rollout back at once."""

    max_error_rate: Annotated[float, Field(ge=0, le=1, description="Server errors / requests of the candidate.")] = 0.01
    max_p99_ratio: Annotated[
        float | None, Field(gt=1, description="Candidate p99 latency / stable p99 (same step); null: not checked.")
    ] = 3.0
    latency_floor_seconds: Annotated[
        float, Field(ge=0, description="A candidate p99 under this never breaches the ratio (sub-ms noise).")
    ] = 0.005
    max_disagreement: Annotated[
        float | None, Field(ge=0, le=1, description="Share of shadow rows whose top-1 differs from stable's.")
    ] = 0.01
    max_abs_diff: Annotated[
        float | None, Field(ge=0, description="Largest |candidate - stable| over shadow outputs; null: not checked.")
    ] = None


class ShadowPhase(_Strict):
    """Before any canary step, copy ``share`` of requests to the candidate and compare answers."""

    share: Annotated[float, Field(gt=0, le=1)] = 1.0
    min_requests: Annotated[int, Field(ge=1, description="Shadow copies compared before the first canary step.")] = 100


class RolloutPlan(_Strict):
    version: Annotated[int, Field(ge=1, description="The candidate version (a folder of the model).")]
    steps: Annotated[
        list[float], Field(min_length=1, description="Candidate traffic percent per step, increasing, ending at 100.")
    ] = [10.0, 50.0, 100.0]
    min_requests: Annotated[
        int, Field(ge=1, description="Candidate requests in a step before it may advance (and before p99 is judged).")
    ] = 100
    dwell_seconds: Annotated[float, Field(ge=0, description="Least time spent in each step.")] = 0.0
    slo: Slo = Slo()
    shadow: ShadowPhase | None = None
    unload_previous: Annotated[bool, Field(description="Unload the previous stable version after promotion.")] = False

    @field_validator("steps")
    @classmethod
    def _increasing_to_100(cls, steps: list[float]) -> list[float]:
        if any(not 0 < s <= 100 for s in steps):
            raise ValueError("each step is a percent in (0, 100]")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("steps must increase")
        if steps[-1] != 100:
            raise ValueError("the last step must be 100 (promotion happens only after full traffic held)")
        return steps


def parse_plan(doc: Any, base: dict[str, Any] | None = None) -> RolloutPlan:
    """A plan from a request body (over the model's ``rollout.yaml`` fields), or :class:`InvalidInput`."""
    if not isinstance(doc, dict):
        raise InvalidInput("plan: must be a JSON object")
    merged = {**(base or {}), **doc}
    try:
        return RolloutPlan.model_validate(merged)
    except ValidationError as exc:
        raise InvalidInput(f"plan: {format_validation_error(exc)}") from None


def model_plan_defaults(model_dir: Path) -> dict[str, Any]:
    """The fields of ``<model>/rollout.yaml`` (empty when absent); ConfigError names the file."""
    path = model_dir / PLAN_FILE
    if not path.is_file():
        return {}
    raw = read_yaml_mapping(path, empty_ok=True)
    try:
        RolloutPlan.model_validate({"version": 1, **raw})
    except ValidationError as exc:
        raise ConfigError(f"{PLAN_FILE}: {format_validation_error(exc)}") from None
    return raw
