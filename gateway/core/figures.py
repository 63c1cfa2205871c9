"""Deployment figures computed from the history: what the seed's deployment metrics ask for.

- deployments: rollouts started and single-version loads, by outcome; success rate;
- rollbacks: count, share of finished rollouts, by reason;
- time to roll out (start to promotion): min / median / max seconds;
- requests that failed (server errors, both versions) during rollouts.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from typing import Any

FINISHED = {"rollout_promote": "succeeded", "rollout_rollback": "rolled_back", "rollout_abort": "aborted"}


def deployment_figures(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    loads: Counter[str] = Counter()
    rollouts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    durations: list[float] = []
    failed_requests = 0
    for record in records:
        action = record.get("action", "")
        if action == "load":
            loads[str(record.get("outcome", ""))] += 1
        elif action in FINISHED:
            rollouts[FINISHED[action]] += 1
            failed_requests += int(record.get("failed_requests", 0) or 0)
            if action == "rollout_rollback":
                reasons[str(record.get("rollback_reason", "unknown"))] += 1
            elif action == "rollout_promote" and isinstance(record.get("duration_seconds"), int | float):
                durations.append(float(record["duration_seconds"]))
    finished = sum(rollouts.values())
    deployments = finished + sum(loads.values())
    succeeded = rollouts["succeeded"] + loads["succeeded"]
    return {
        "deployments": deployments,
        "succeeded": succeeded,
        "success_rate": round(succeeded / deployments, 4) if deployments else None,
        "loads": dict(loads),
        "rollouts": dict(rollouts),
        "rollbacks": rollouts["rolled_back"],
        "rollback_rate": round(rollouts["rolled_back"] / finished, 4) if finished else None,
        "rollback_reasons": dict(reasons),
        "time_to_roll_out_seconds": _spread(durations),
        "requests_failed_during_rollouts": failed_requests,
    }


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "count": len(values)}
