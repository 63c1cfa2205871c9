"""Cost of one managed TorchServe per model version: load time and RSS (keeper, Java, worker).

``python -m bench.torchserve_per_version`` starts three versions of a small TorchScript model one
after the other and prints, per version, the load time and the RSS of its process tree.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path

from gateway.backends.torchserve.managed import ManagedTorchServe


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for e in Path("/proc").iterdir():
        if e.name.isdigit():
            with contextlib.suppress(OSError):
                parents[int(e.name)] = int((e / "stat").read_text().rsplit(")", 1)[-1].split()[1])
    found, frontier = {pid}, {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - found
        found |= frontier
    return found


def main() -> None:
    import torch

    out = Path(tempfile.mkdtemp(prefix="mg-bench-"))
    net = torch.nn.Sequential(torch.nn.Linear(64, 10), torch.nn.Softmax(1))
    torch.jit.save(torch.jit.trace(net.eval(), torch.zeros(2, 64)), str(out / "m.pt"))  # type: ignore[no-untyped-call]
    managed = ManagedTorchServe(run_dir=out / "run")
    models = []
    for v in (1, 2, 3):
        t = time.monotonic()
        m = managed.start_model("digits", v, out / "m.pt", 1)
        models.append(m)
        keeper, java = m.process.keeper_pid, m.process.pid
        assert keeper is not None and java is not None
        pids = tree(keeper)
        print(
            f"version {v}: start {time.monotonic() - t:.1f} s; processes {len(pids)}; "
            f"RSS keeper+java+worker {sum(rss_mb(p) for p in pids):.0f} MB "
            f"(java {rss_mb(java):.0f} MB)",
            flush=True,
        )
    for m in models:
        managed.stop_model(m)
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
