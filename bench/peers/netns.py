"""Run the benchmark in a private network namespace that has only a loopback interface.

Some peers bind every interface and offer no option against it (Ray's GCS, raylet and workers;
KServe's REST and gRPC servers). Inside a namespace of its own, "every interface" is 127.0.0.1:
nothing the benchmark starts can be reached from outside, and nothing in it can download anything
(the peers' virtualenvs are built before, outside). Needs root (or user namespaces) and
util-linux's ``unshare`` plus iproute2's ``ip``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

MARKER = "MODELGATE_BENCH_NETNS"


def inside() -> bool:
    return os.environ.get(MARKER) == "1"


def available() -> str | None:
    """None when a private network namespace can be made here, else why not."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare (util-linux) or ip (iproute2) is not installed"
    probe = subprocess.run(["unshare", "--net", "--", "ip", "link", "set", "lo", "up"], capture_output=True,
                           text=True, check=False)  # fmt: skip
    if probe.returncode != 0:
        return f"cannot create a network namespace ({probe.stderr.strip()[:100]})"
    return None


def reexec(argv: list[str]) -> None:
    """Replace this process by ``python -m bench.peers ARGV`` in a new network namespace with loopback up."""
    os.environ[MARKER] = "1"
    command = [sys.executable, "-m", "bench.peers", *argv]
    os.execvp("unshare", ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command])
