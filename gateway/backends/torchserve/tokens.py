"""TorchServe token authorization: read its key file, send the keys, renew them before they expire.

TorchServe 0.12 (token authorization on) writes ``key_file.json`` in its working directory::

    {"management": {"key": "...", "expiration time": "2026-12-01T14:38:59.314Z"},
     "inference":  {"key": "...", "expiration time": "..."},
     "API":        {"key": "..."}}

Every call needs ``Authorization: Bearer <key>``: the inference key on the inference port, the
management key on the management port. Both expire after ``token_expiration_min`` minutes;
the API key does not, and ``POST <management>/token?type=inference|management`` with it makes
TorchServe write a fresh key of that type into the file (measured: the answer body is empty;
the old key stops working at once). Keys never appear in logs, errors or ``repr``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from gateway.core.errors import BackendUnavailable, ConfigError

KEY_FILE = "key_file.json"
#: TorchServe's answer to a missing, wrong or expired key (HTTP 400).
INVALID_KEY = "InvalidKeyException"
_FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys of one key file; expirations as ``time.time()`` seconds (None: never)."""

    inference: str = field(repr=False)
    management: str = field(repr=False)
    api: str = field(repr=False, default="")
    inference_expires: float | None = None
    management_expires: float | None = None


def read_key_file(path: Path) -> Keys:
    """Parse a TorchServe key file (ConfigError naming the file if it is not one)."""
    try:
        raw = json.loads(path.read_text())
        return Keys(
            inference=str(raw["inference"]["key"]),
            management=str(raw["management"]["key"]),
            api=str(raw.get("API", {}).get("key", "")),
            inference_expires=_instant(raw["inference"].get("expiration time")),
            management_expires=_instant(raw["management"].get("expiration time")),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(
            f"{path}: not a TorchServe key file (expected JSON with inference.key and management.key)"
        ) from None


def _instant(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    return datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("Z", "+00:00"))).timestamp()


def restrict(path: Path) -> None:
    """Make ``path`` readable and writable by its owner only (0600)."""
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


class ManagedKeys:
    """The keys of the gateway's own TorchServe, renewed through its ``/token`` API.

    ``lifetime`` is TorchServe's ``token_expiration_min`` in seconds; a key is renewed once
    less than half of it is left (checked at every health check and after a refused call).
    """

    def __init__(self, key_file: Path, management_url: str, lifetime: float) -> None:
        self.key_file = key_file
        self.management_url = management_url
        self.lifetime = lifetime
        self.renewals = 0
        self._keys: Keys | None = None
        self._lock = threading.Lock()

    def load(self, attempts: int = 20) -> Keys:
        """(Re-)read the key file TorchServe wrote, and restrict it to this user.

        TorchServe creates the file, then writes it: a read in between sees it empty or partial,
        so a few attempts 0.1 s apart are made before giving up.
        """
        for attempt in range(attempts):
            try:
                restrict(self.key_file)
                keys = read_key_file(self.key_file)
            except (ConfigError, OSError):
                if attempt == attempts - 1:
                    raise
                time.sleep(0.1)  # TorchServe is writing the file: bounded retries
                continue
            self._keys = keys
            return keys
        raise ConfigError(f"{self.key_file}: no key file")  # pragma: no cover - attempts >= 1

    @property
    def keys(self) -> Keys:
        return self._keys if self._keys is not None else self.load()

    def inference_header(self) -> str:
        return f"Bearer {self.keys.inference}"

    def management_header(self) -> str:
        return f"Bearer {self.keys.management}"

    def stale(self, now: float | None = None) -> bool:
        """Whether a key has less than half of its lifetime left."""
        now = time.time() if now is None else now
        keys = self.keys
        return any(exp is not None and exp - now < self.lifetime / 2 for exp in (keys.inference_expires,
                                                                                  keys.management_expires))  # fmt: skip

    def renew(self, seen: Keys | None = None) -> None:
        """New inference and management keys (blocking). ``seen``: skip if the keys changed since."""
        with self._lock:
            if seen is not None and self._keys is not None and self._keys != seen:
                return  # another caller renewed meanwhile
            api = self.keys.api
            for kind in ("inference", "management"):
                try:
                    response = httpx.post(
                        f"{self.management_url}/token", params={"type": kind},
                        headers={"Authorization": f"Bearer {api}"}, timeout=10.0,
                    )  # fmt: skip
                except httpx.HTTPError:
                    raise BackendUnavailable("cannot renew the managed TorchServe's keys: no answer") from None
                if response.status_code != 200:
                    raise BackendUnavailable(
                        f"the managed TorchServe refused to renew its {kind} key ({response.status_code})"
                    )
            self.load()
            self.renewals += 1


class ExternalKeys:
    """Keys for an operator's TorchServe: literal tokens, or a key file re-read after a refusal."""

    def __init__(self, token: str | None, management_token: str | None, token_file: Path | None) -> None:
        self._token = token
        self._management_token = management_token
        self._token_file = token_file
        self._file_keys: tuple[str, str] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._token or self._management_token or self._token_file)

    def inference_header(self) -> str | None:
        token = self._token or (self._from_file()[0] if self._token_file else None)
        return f"Bearer {token}" if token else None

    def management_header(self) -> str | None:
        token = self._management_token or (self._from_file()[1] if self._token_file else None)
        return f"Bearer {token}" if token else None

    def reload(self) -> bool:
        """Re-read ``token_file`` (the operator may have renewed it); whether there is one."""
        self._file_keys = None
        return self._token_file is not None

    def _from_file(self) -> tuple[str, str]:
        if self._file_keys is None:
            assert self._token_file is not None
            self._file_keys = _read_token_file(self._token_file)
        return self._file_keys


def _read_token_file(path: Path) -> tuple[str, str]:
    """A TorchServe key file (inference and management keys), or a file holding one token for both."""
    try:
        text = path.read_text().strip()
    except OSError:
        raise ConfigError(f"parameters.token_file: cannot read {path}") from None
    if text.startswith("{"):
        keys = read_key_file(path)
        return keys.inference, keys.management
    if not text or any(c.isspace() for c in text):
        raise ConfigError(f"parameters.token_file: {path} must hold one token, or be a TorchServe key_file.json")
    return text, text
