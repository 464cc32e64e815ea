"""Ctrl-C and SIGTERM at any moment of ``python -m schema_warden check``: exit 130 (or the
verdict, when the run finished first), no traceback, no postgres process and no
``schema-warden-*`` directory left in the temp dir or /dev/shm.

The moments are random (seeded) between 0 and the length of a run. A signal can only be
handled once the interpreter runs the guard's code: before that (the interpreter's own start
and the import of the command, measured here as ``startup``) it ends the process the default
way, with nothing started and nothing to leave.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixture_project import readings_project
from leftovers import left_over, orphans, server_dirs
from test_check_migrations import _start_check as _start

SEED = 23
PER_SIGNAL = 20


def _startup(env: dict[str, str]) -> float:
    """The longest of five starts of the interpreter up to the command's first line, with a
    margin for a busy machine."""
    times = []
    for _ in range(5):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "import schema_warden.commands.check"], env=env, check=True)
        times.append(time.monotonic() - started)
    return 1.5 * max(times)


@pytest.mark.slow  # 55-70 s on two shared CPUs: 40 runs of the guard
def test_sigint_and_sigterm_at_random_moments_exit_130_and_leave_nothing(
    tmp_path: Path, short_tmpdir: Path
) -> None:
    ini = readings_project(tmp_path / "project")
    env = {**os.environ, "TMPDIR": str(short_tmpdir)}
    before = server_dirs()
    durations = []
    for _ in range(2):  # the second run is warm (proofs cached), as most runs are
        started = time.monotonic()
        proc = _start(ini, env)
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        durations.append(time.monotonic() - started)
    duration = max(durations)
    startup = _startup(env)
    rng = random.Random(SEED)
    plan = [
        (sig, rng.uniform(0, duration)) for sig in (signal.SIGINT, signal.SIGTERM) for _ in range(PER_SIGNAL)
    ]
    rng.shuffle(plan)
    problems = []
    interrupted = 0
    for sig, delay in plan:
        proc = _start(ini, env)
        try:
            time.sleep(delay)
            proc.send_signal(sig)
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        code = proc.returncode
        early = delay < startup  # the guard's code may not run yet
        # before the guard's code runs, Python's own way: killed, or KeyboardInterrupt (exit 1)
        expected = {130, 0} | ({-sig, 1} if early else set())
        name = signal.Signals(sig).name
        if code not in expected:
            problems.append(f"{name} after {delay:.3f} s: exit {code}: {err.strip()[-3000:]}")
        elif "Traceback" in err and not early:
            problems.append(f"{name} after {delay:.3f} s: a traceback: {err.strip()[-3000:]}")
        interrupted += code == 130
        left = list(short_tmpdir.iterdir())
        if left:
            problems.append(f"{name} after {delay:.3f} s: left {left}")
    assert problems == [], "\n".join(problems)
    assert interrupted >= PER_SIGNAL  # most signals arrive while the run works
    assert left_over(before) == [] and orphans(server_dirs()) == []
