"""Gateway init container: wait, bounded, until the remote backends serve their models.

A remote model whose server is not ready when the gateway loads it stays UNAVAILABLE until the
gateway restarts (TorchServe's external mode checks for a READY worker at load), so the gateway pod
waits for them first. It never fails the pod: after WAIT_SECONDS it starts the gateway anyway.

WAIT_FOR: space-separated status URLs, TorchServe ``/models/<name>`` (ready with a READY worker) or
TF Serving ``/v1/models/<name>`` (ready with an AVAILABLE version). Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from typing import Any


def is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body: Any = json.load(response)
    except (OSError, ValueError):
        return False
    if isinstance(body, list):  # TorchServe: a description per model version
        return any(worker.get("status") == "READY" for model in body for worker in model.get("workers", []))
    return any(status.get("state") == "AVAILABLE" for status in body.get("model_version_status", []))


def main() -> int:
    pending = os.environ.get("WAIT_FOR", "").split()
    deadline = time.monotonic() + float(os.environ.get("WAIT_SECONDS", "180"))
    while pending:
        pending = [url for url in pending if not is_ready(url)]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(2)  # polling interval, bounded by WAIT_SECONDS
    for url in pending:
        print(f"wait_for_backends: {url} not ready after {os.environ.get('WAIT_SECONDS', '180')} s; "
              "starting the gateway anyway", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
