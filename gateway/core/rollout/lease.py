"""Which replica leads rollouts: a lease file in the shared repository.

Rule: ``<repository>/.modelgate/leader.json`` holds ``{"owner", "expires_at"}``. Each
replica, every poll, renews the lease if it owns it or takes it if it has expired (or is
missing), by an atomic replace followed by a re-read; the owner in the file after that is
the leader. The lease lasts three poll intervals, so a dead leader is replaced within about
three polls. Two replicas taking an expired lease at the same moment can both lead for one
poll; rollout writes carry a revision and a leader re-reads the state before changing it, so
the later write wins and the other replica follows it on its next poll. Clocks of replicas
sharing a volume are assumed to agree to well under a poll interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from gateway.core.statefile import read_json, state_dir, write_json_atomic


class LeaderLease:
    def __init__(
        self, repository: Path, owner: str, ttl_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = state_dir(repository) / "leader.json"
        self.owner = owner
        self.ttl = ttl_seconds
        self._clock = clock

    def holder(self) -> str | None:
        doc = read_json(self.path)
        if isinstance(doc, dict) and float(doc.get("expires_at", 0)) > self._clock():
            return str(doc.get("owner"))
        return None

    def acquire(self) -> bool:
        """Renew or take the lease; True when this replica leads now."""
        holder = self.holder()
        if holder is not None and holder != self.owner:
            return False
        write_json_atomic(self.path, {"owner": self.owner, "expires_at": self._clock() + self.ttl})
        return self.holder() == self.owner

    def release(self) -> None:
        if self.holder() == self.owner:
            write_json_atomic(self.path, {"owner": self.owner, "expires_at": 0})
