"""In-process solves keep a native library's stray prints (HiGHS#2783) off the terminal."""

from __future__ import annotations

import os

import pytest

from services.sim.quiet import native_stdout_silenced


def test_native_writes_inside_the_block_are_dropped_and_stdout_comes_back(
    capfd: pytest.CaptureFixture[str],
) -> None:
    print("before", flush=True)
    with native_stdout_silenced():
        os.write(1, b"HighsMipSolverData::transformNewIntegerFeasibleSolution\n")
    os.write(1, b"after\n")
    out = capfd.readouterr().out
    assert "before" in out and "after" in out
    assert "HighsMipSolverData" not in out


def test_stdout_is_restored_when_the_solve_raises(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), native_stdout_silenced():
        raise RuntimeError("solver failed")
    os.write(1, b"still here\n")
    assert "still here" in capfd.readouterr().out
