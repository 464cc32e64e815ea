"""``--timeout`` and ``[tool.schema-warden] timeout`` bound a check: a statement or env.py that
runs past it ends the run with a failure naming the revision (exit 1) or env.py (exit 2),
the server stopped, nothing left; Ctrl-C stays exit 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fixture_project import READINGS_REVISIONS, Rev, make_project, readings_project
from leftovers import left_over, orphans, server_dirs
from schema_warden.commands.check import main
from schema_warden.errors import ProjectError
from schema_warden.project.settings import load_settings
from schema_warden.proof.watchdog import NAME

SLEEPY = Rev("0002", "0001", upgrade='op.execute("SELECT pg_sleep(100000)")', message="sleeps")


def _sleepy_project(root: Path, pyproject: str | None = None) -> Path:
    return make_project(root, revisions=[READINGS_REVISIONS[0], SLEEPY], pyproject=pyproject)


def _looping_env(root: Path) -> Path:
    ini = readings_project(root)
    env = root / "migrations" / "env.py"
    head = "from __future__ import annotations\n"
    env.write_text(env.read_text().replace(head, head + "while True:\n    pass\n", 1))
    return ini


def _check(ini: Path, tmpdir: Path, *flags: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "schema_warden", "check", "--config", str(ini), *flags],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmpdir)},
        timeout=120,  # the run must end by itself long before
    )
    return proc, time.monotonic() - started


@pytest.mark.parametrize(
    ("make", "code", "named"),
    [
        (_sleepy_project, 1, 'revision 0002 (migrations/versions/0002_sleeps.py, "sleeps"): upgrade timed'),
        (_looping_env, 2, "migrations/env.py timed out"),
    ],
    ids=["statement", "env.py loop"],
)
def test_past_the_timeout_the_run_fails_naming_what_ran(
    make: object, code: int, named: str, tmp_path: Path, short_tmpdir: Path
) -> None:
    ini = make(tmp_path / "project")  # type: ignore[operator]
    before = server_dirs()
    # the deadline passes well after the run reached the sleep (on a busy machine too)
    proc, took = _check(ini, short_tmpdir, "--timeout", "4", "--format", "json")
    assert proc.returncode == code, proc.stderr
    assert named in proc.stderr, (took, proc.stderr) and "timed out after 4 s" in proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is False and named in report["checks"][0]["message"]
    assert took < 30
    assert list(short_tmpdir.iterdir()) == []
    assert left_over(before) == [] and orphans(server_dirs()) == []


def test_the_timeout_setting_bounds_a_run_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini = _sleepy_project(tmp_path, pyproject="[tool.schema-warden]\ntimeout = 3.5\n")
    before = server_dirs()
    assert main(["--config", str(ini), "--no-cache"]) == 1
    err = capsys.readouterr().err
    assert "revision 0002" in err and "upgrade timed out after 3.5 s" in err
    assert left_over(before) == []
    assert not any(t.name == NAME for t in threading.enumerate())


def test_the_flag_overrides_the_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = _sleepy_project(tmp_path, pyproject="[tool.schema-warden]\ntimeout = 600\n")
    assert main(["--config", str(ini), "--no-cache", "--timeout", "3"]) == 1
    assert "timed out after 3 s" in capsys.readouterr().err


def test_ctrl_c_before_the_deadline_is_still_130(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = _sleepy_project(tmp_path)
    main_thread = threading.get_ident()
    timer = threading.Timer(2.0, signal.pthread_kill, (main_thread, signal.SIGINT))  # as Ctrl-C
    timer.start()
    try:
        assert main(["--config", str(ini), "--no-cache", "--timeout", "60"]) == 130
    finally:
        timer.cancel()
    assert "interrupted" in capsys.readouterr().err


def test_a_run_within_the_timeout_passes(tmp_path: Path) -> None:
    assert main(["--config", str(readings_project(tmp_path)), "--timeout", "60"]) == 0
    assert not any(t.name == NAME for t in threading.enumerate())


@pytest.mark.parametrize("value", ["0", "-1", '"ten"', "true", "nan"])
def test_the_timeout_setting_is_a_positive_number(tmp_path: Path, value: str) -> None:
    readings_project(tmp_path)
    (tmp_path / "pyproject.toml").write_text(f"[tool.schema-warden]\ntimeout = {value}\n")
    with pytest.raises(ProjectError, match="timeout must be a positive number"):
        load_settings(cwd=tmp_path)


def test_the_timeout_defaults_to_600_s(tmp_path: Path) -> None:
    readings_project(tmp_path)
    assert load_settings(cwd=tmp_path).timeout == 600


@pytest.mark.parametrize("value", ["0", "-5", "soon", "inf"])
def test_a_bad_timeout_flag_is_a_usage_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--timeout", value])
    assert info.value.code == 2
    assert "positive number of seconds" in capsys.readouterr().err
