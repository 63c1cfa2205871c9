"""The two ways a conversion run can go wrong before verification.

:class:`BadInput` is the user's to fix (missing or corrupt file, wrong input spec, a
target the source cannot produce, an op an exporter does not support): the CLI exits 2
and writes nothing. :class:`StepFailed` is a subprocess that crashed or timed out; its
message carries the tail of the subprocess's own error output so nobody has to dig.
"""

from __future__ import annotations


class BadInput(Exception):
    """Something the user passed cannot be converted; the message says what and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StepFailed(Exception):
    """A conversion or verification subprocess failed, crashed or timed out."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message
