"""Traffic policy of one model: a weighted split between versions and an optional shadow.

Only requests that name neither a version nor a label are split. Without a key the split
is a smooth weighted round robin (deterministic: over any window of ``sum(weights)``
requests each version gets exactly its share); with a key (``X-Modelgate-Route-Key``, gRPC
metadata, or a V2 ``route_key`` parameter) the version is chosen by hashing the key, so one
caller sticks to one version while the weights stay the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.core.errors import InvalidInput
from gateway.core.types import InferRequest

#: The V2 request parameter (also set from the REST header / gRPC metadata) that makes a split sticky.
ROUTE_KEY_PARAMETER = "route_key"
#: REST header and gRPC metadata key carrying the route key.
ROUTE_KEY_HEADER = "x-modelgate-route-key"

#: Weights are whole per-mille shares at most this precise; a split sums to 100 (percent).
WEIGHT_TOTAL = 100.0


@dataclass(frozen=True, slots=True)
class ShadowRule:
    """Copy ``share`` (0..1] of the split's requests to ``version``; its answers are discarded."""

    version: int
    share: float

    def to_dict(self) -> dict[str, Any]:
        return {"version": str(self.version), "share": self.share}


@dataclass(slots=True)
class TrafficSplit:
    """Weights (percent, summing to 100) per version, plus an optional shadow rule."""

    weights: dict[int, float]
    shadow: ShadowRule | None = None
    _current: dict[int, float] = field(default_factory=dict, repr=False)
    _shadow_credit: float = field(default=0.0, repr=False)

    def pick(self, key: str | None, ready: Callable[[int], bool]) -> int | None:
        """The version for one request among the ready ones with weight > 0 (None: none is ready)."""
        live = {v: w for v, w in self.weights.items() if w > 0 and ready(v)}
        if not live:
            return None
        if key:
            return _by_hash(live, key)
        return self._round_robin(live)

    def take_shadow(self) -> int | None:
        """Whether this request is copied to the shadow version (deterministic share)."""
        if self.shadow is None:
            return None
        self._shadow_credit += self.shadow.share
        if self._shadow_credit >= 1.0 - 1e-9:
            self._shadow_credit -= 1.0
            return self.shadow.version
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": {str(v): w for v, w in sorted(self.weights.items())},
            "shadow": self.shadow.to_dict() if self.shadow else None,
        }

    def _round_robin(self, live: Mapping[int, float]) -> int:
        total = sum(live.values())
        for version, weight in live.items():
            self._current[version] = self._current.get(version, 0.0) + weight
        chosen = max(live, key=lambda v: (self._current[v], -v))
        self._current[chosen] -= total
        return chosen


def _by_hash(live: Mapping[int, float], key: str) -> int:
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(live.values())
    cumulative = 0.0
    for version in sorted(live):
        cumulative += live[version]
        if point < cumulative:
            return version
    return max(live)


def parse_split(doc: object, known: Callable[[int], bool]) -> TrafficSplit:
    """A split from ``{"weights": {"1": 90, "2": 10}, "shadow": {"version": "3", "share": 0.1}}``.

    Raises :class:`InvalidInput` naming the field and the rule.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("weights"), dict) or not doc["weights"]:
        raise InvalidInput('weights: required, an object of version -> percent like {"1": 90, "2": 10}')
    weights: dict[int, float] = {}
    for raw_version, raw_weight in doc["weights"].items():
        version = parse_version(raw_version, f"weights.{raw_version}")
        if not known(version):
            raise InvalidInput(f"weights.{raw_version}: version {version} is not loaded")
        if isinstance(raw_weight, bool) or not isinstance(raw_weight, int | float) or not 0 <= raw_weight <= 100:
            raise InvalidInput(f"weights.{raw_version}: must be a number from 0 to 100")
        weights[version] = float(raw_weight)
    if abs(sum(weights.values()) - WEIGHT_TOTAL) > 1e-6:
        raise InvalidInput(f"weights: must sum to 100 (got {sum(weights.values()):g})")
    return TrafficSplit(weights, _parse_shadow(doc.get("shadow"), known))


def _parse_shadow(doc: object, known: Callable[[int], bool]) -> ShadowRule | None:
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise InvalidInput('shadow: must be an object like {"version": "3", "share": 0.1}')
    version = parse_version(doc.get("version"), "shadow.version")
    if not known(version):
        raise InvalidInput(f"shadow.version: version {version} is not loaded")
    share = doc.get("share", 1.0)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
        raise InvalidInput("shadow.share: must be a number in (0, 1]")
    return ShadowRule(version, float(share))


def parse_version(raw: object, where: str) -> int:
    """A positive version number given as an int or a string of digits."""
    text = str(raw) if isinstance(raw, int | str) and not isinstance(raw, bool) else ""
    if not (text.isascii() and text.isdigit()) or len(text) > 18 or int(text) <= 0:
        raise InvalidInput(f'{where}: must be a positive version number like "2"')
    return int(text)


def route_key(request: InferRequest) -> str | None:
    """The caller's route key, if any (a V2 ``route_key`` parameter, or the header the adapter copied in)."""
    if not request.parameters:
        return None
    key = request.parameters.get(ROUTE_KEY_PARAMETER)
    return str(key) if key not in (None, "") else None
