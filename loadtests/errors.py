"""The one error a load-test command reports to its user (exit code 2), without a traceback."""

from __future__ import annotations


class LoadTestError(Exception):
    """Bad arguments or an unusable target: the message is printed as one line and the command exits 2."""
