"""Steady concurrent load on a real gateway: threads of httpx clients, every answer recorded."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np

PIXELS = (np.arange(64, dtype=np.float32) % 17).reshape(1, 64)
INFER_BODY = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": PIXELS.ravel().tolist()}]}


@dataclass
class Outcome:
    status: int
    version: str
    error: str = ""
    #: The driver's epoch when the request was sent (see :meth:`LoadDriver.next_epoch`).
    epoch: int = 0


@dataclass
class LoadDriver:
    """``clients`` threads posting V2 infer requests for ``model`` until :meth:`stop`."""

    url: str
    model: str = "digits_mlp"
    clients: int = 4
    route_keys: bool = False
    outcomes: list[Outcome] = field(default_factory=list)
    epoch: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> LoadDriver:
        for index in range(self.clients):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def wait_for(self, more: int, timeout_polls: int = 6000) -> None:
        """Block until ``more`` further answers arrived (bounded polling, no timing assumption)."""
        target = self.count() + more
        stop = threading.Event()
        for _ in range(timeout_polls):
            if self.count() >= target:
                return
            stop.wait(0.01)
        raise AssertionError(f"load did not reach {target} answers (got {self.count()})")

    def next_epoch(self) -> int:
        """Start a new epoch: requests sent from now on are told apart from those already in flight."""
        with self._lock:
            self.epoch += 1
            return self.epoch

    def wait_for_epoch(self, epoch: int, answers: int, timeout_polls: int = 6000) -> None:
        """Block until ``answers`` requests sent in ``epoch`` or later have been answered (bounded polling)."""
        stop = threading.Event()
        for _ in range(timeout_polls):
            with self._lock:
                done = sum(1 for o in self.outcomes if o.epoch >= epoch)
            if done >= answers:
                return
            stop.wait(0.01)
        raise AssertionError(f"load did not reach {answers} answers sent in epoch {epoch}")

    def failures(self) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.status != 200]

    def versions(self) -> Counter[str]:
        with self._lock:
            return Counter(o.version for o in self.outcomes if o.status == 200)

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def _run(self, index: int) -> None:
        with httpx.Client(timeout=60) as client:
            n = 0
            while not self._stop.is_set():
                headers = {"x-modelgate-route-key": f"client-{index}-{n}"} if self.route_keys else {}
                n += 1
                epoch = self.epoch
                try:
                    r = client.post(f"{self.url}/v2/models/{self.model}/infer", json=INFER_BODY, headers=headers)
                    outcome = Outcome(r.status_code, r.json().get("model_version", "") if r.status_code == 200 else "",
                                      "" if r.status_code == 200 else r.text, epoch)  # fmt: skip
                except httpx.HTTPError as exc:
                    outcome = Outcome(0, "", str(exc), epoch)
                with self._lock:
                    self.outcomes.append(outcome)
