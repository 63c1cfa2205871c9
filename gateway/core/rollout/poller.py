"""Optional repository polling (``repository_poll``, off by default).

Each poll, for every served model: a new numbered version folder is loaded (with warm-up) and
takes traffic, or, when the model has a ``rollout.yaml``, is rolled out per that plan (started by
the leader; the other replicas follow the rollout); a version whose folder was removed is drained
and unloaded. A new folder is acted on at the second poll that sees it, so a folder still being
copied is not loaded half-written (publish by renaming a finished folder into place, as the
converters do). A version that fails is recorded once and not retried until its folder changes
name. Folders present when the gateway starts are left to the model's version policy.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.core.errors import ConfigError, GatewayError
from gateway.core.lifecycle import Lifecycle
from gateway.core.models import VersionState
from gateway.core.rollout.plan import model_plan_defaults

if TYPE_CHECKING:
    from gateway.core.rollout.controller import RolloutController

log = logging.getLogger(__name__)


class RepositoryPoller:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self._seen: dict[str, set[int]] = {}
        self._pending: dict[str, set[int]] = {}

    async def poll(self, controller: RolloutController, leading: bool) -> None:
        for name in self.lifecycle.manager.names():
            folder = self.lifecycle.root / name
            if not folder.is_dir():
                continue
            on_disk = _version_folders(folder)
            if name not in self._seen:
                self._seen[name] = on_disk
                continue
            await self._new_versions(controller, leading, name, on_disk)
            await self._removed_versions(name, on_disk)

    async def _new_versions(self, controller: RolloutController, leading: bool, name: str, on_disk: set[int]) -> None:
        fresh = on_disk - self._seen[name]
        ready = fresh & self._pending.get(name, set())
        self._pending[name] = fresh - ready
        for version in sorted(ready):
            self._seen[name].add(version)
            try:
                if model_plan_defaults(self.lifecycle.root / name):
                    if leading:
                        log.info("repository poll: rolling out %s version %d per its rollout.yaml", name, version)
                        await controller.start(name, {"version": version})
                else:
                    log.info("repository poll: loading %s version %d", name, version)
                    await self.lifecycle.load(name, str(version))
            except (GatewayError, ConfigError) as exc:
                log.warning("repository poll: %s version %d not deployed: %s", name, version, exc)

    async def _removed_versions(self, name: str, on_disk: set[int]) -> None:
        model = self.lifecycle.manager.get(name)
        gone = [v for v, s in model.versions.items() if v not in on_disk and s.state is not VersionState.UNLOADED]
        for version in gone:
            self._seen[name].discard(version)
            log.info("repository poll: %s version %d was removed; draining and unloading it", name, version)
            try:
                await self.lifecycle.unload(name, str(version))
            except GatewayError as exc:
                log.warning("repository poll: unloading %s version %d: %s", name, version, exc)


def _version_folders(folder: Path) -> set[int]:
    try:
        return {int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isascii() and p.name.isdigit()
                and int(p.name) > 0}  # fmt: skip
    except OSError:
        return set()
