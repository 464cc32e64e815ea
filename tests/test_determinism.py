"""Same input, same verdict: the two-process stairway gives one process's report under load.

The split point between the forked child and the parent moves with the child's progress,
so timing decides where it falls. Twenty runs with two processes, while two busy loops
keep both CPUs loaded, must each print exactly the report of a run in one process: the
same checks, statuses, revisions, messages and details (durations aside). The project is
a history whose stairway has a leftover at one revision and a data migration that refuses
the generated rows at another, so failures, notes and passes are all compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixture_project import Rev, make_project
from schema_warden.proof import parallel
from test_parallel import chain

RUNS = 20


def _project(root: Path) -> Path:
    models, revisions = chain(10, trace=(5,))
    picky = revisions[7]
    guard = (
        '\nif op.get_bind().execute(sa.text("SELECT count(*) FROM readings")).scalar():\n'
        '    raise RuntimeError("expected no readings yet")'
    )
    revisions[7] = Rev(picky.id, picky.down, picky.upgrade + guard, picky.downgrade, picky.message)
    return make_project(root, models=models, revisions=revisions)


def _verdict(
    ini: Path, jobs: str, tmpdir: Path
) -> tuple[int, list[tuple[str, str, str | None, str, tuple[str, ...]]]]:
    env = {
        **os.environ,
        "TMPDIR": str(tmpdir),
        parallel.JOBS_ENV: jobs,
        parallel.MIN_ENV: "4",
        "SCHEMA_WARDEN_PROOF_CACHE": str(tmpdir / "proofs"),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "schema_warden",
            "check",
            "--config",
            str(ini),
            "--no-cache",
            "--format",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(done.stdout)
    checks = [
        (c["name"], c["status"], c["revision"], c["message"], tuple(c["details"])) for c in report["checks"]
    ]
    return done.returncode, checks


@pytest.fixture
def busy() -> Iterator[None]:
    """Two busy loops: both CPUs of the test machine stay loaded while the runs go on."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def test_two_processes_under_load_give_one_process_s_verdict(
    tmp_path: Path, short_tmpdir: Path, busy: None
) -> None:
    ini = _project(tmp_path / "project")
    code, alone = _verdict(ini, "1", short_tmpdir)
    assert code == 1
    statuses = {status for _name, status, *_ in alone}
    assert statuses == {"pass", "fail", "note"}, alone  # every kind of outcome is compared
    differing = []
    for run in range(RUNS):
        run_code, checks = _verdict(ini, "2", short_tmpdir)
        if (run_code, checks) != (code, alone):
            differing.append((run, run_code, checks))
    assert differing == []
