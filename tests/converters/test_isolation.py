"""Steps run in a subprocess: results come back, failures come back as clean errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from converters.errors import BadInput, StepFailed
from converters.isolation import run_step

HERE = Path(__file__).resolve().parent


def test_result_comes_back_from_another_process(tmp_path: Path) -> None:
    answer = run_step("isolation_steps:echo", {"value": 21}, tmp_path, extra_path=[HERE])
    assert answer["doubled"] == 42
    assert answer["pid"] != os.getpid()


def test_bad_input_in_the_step_is_bad_input_here(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="--samples: not acceptable"):
        run_step("isolation_steps:refuse", {"field": "--samples"}, tmp_path, extra_path=[HERE])


def test_exception_becomes_a_short_message(tmp_path: Path) -> None:
    with pytest.raises(StepFailed) as caught:
        run_step("isolation_steps:explode", {}, tmp_path, extra_path=[HERE])
    assert caught.value.message == "ValueError: the converter blew up"


def test_hard_crash_shows_the_subprocess_output(tmp_path: Path) -> None:
    with pytest.raises(StepFailed) as caught:
        run_step("isolation_steps:crash", {}, tmp_path, extra_path=[HERE])
    assert "exit code 7" in caught.value.message
    assert "about to die hard" in caught.value.message


def test_timeout_kills_the_step(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match="timed out after 2 s"):
        run_step("isolation_steps:hang", {"seconds": 60.0}, tmp_path, timeout=2.0, extra_path=[HERE])
