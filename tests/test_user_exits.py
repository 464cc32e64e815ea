"""The project's code cannot end the check silently: ``sys.exit()``, ``os._exit()`` in env.py,
a revision file or a migration, and a forked worker that is killed, are failures naming
where; never exit 0, ``--format json`` still prints a report, nothing is left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixture_project import READINGS_REVISIONS, Rev, make_project, readings_project
from leftovers import left_over, orphans, server_dirs
from schema_warden.commands.check import main
from schema_warden.project.exits import ExitCalled, exits_raise, real_exit
from schema_warden.proof import parallel


def _env_py_calls(root: Path, code: str) -> Path:
    """The readings project whose env.py runs ``code`` first (after its __future__ import)."""
    ini = readings_project(root)
    env = root / "migrations" / "env.py"
    head = "from __future__ import annotations\n"
    env.write_text(env.read_text().replace(head, head + code + "\n", 1))
    return ini


def _second_revision(root: Path, **bodies: str) -> Path:
    return make_project(root, revisions=[READINGS_REVISIONS[0], Rev("0002", "0001", **bodies)])


def _revision_file_calls(root: Path, code: str) -> Path:
    ini = _second_revision(root)
    path = next((root / "migrations" / "versions").glob("0002_*.py"))
    path.write_text(path.read_text() + "\n" + code + "\n")
    return ini


CASES = {
    "env.py sys.exit(0)": (lambda root: _env_py_calls(root, "import sys\nsys.exit(0)"), 2, "env.py"),
    "env.py os._exit(0)": (lambda root: _env_py_calls(root, "import os\nos._exit(0)"), 2, "env.py"),
    "upgrade os._exit(0)": (
        lambda root: _second_revision(root, upgrade="import os\nos._exit(0)"),
        1,
        "revision 0002",
    ),
    "downgrade os._exit(0)": (
        lambda root: _second_revision(root, downgrade="import os\nos._exit(0)"),
        1,
        "revision 0002",
    ),
    "upgrade sys.exit()": (
        lambda root: _second_revision(root, upgrade="import sys\nsys.exit()"),
        1,
        "revision 0002",
    ),
    "revision file os._exit(0) at import": (
        lambda root: _revision_file_calls(root, "import os\nos._exit(0)"),
        2,
        "0002",
    ),
    "revision file sys.exit(0) at import": (
        lambda root: _revision_file_calls(root, "import sys\nsys.exit(0)"),
        2,
        "0002",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_exit_in_the_projects_code_is_a_failure_naming_it(
    case: str, tmp_path: Path, short_tmpdir: Path
) -> None:
    make, code, where = CASES[case]
    ini = make(tmp_path / "project")
    before = server_dirs()
    proc = subprocess.run(
        [sys.executable, "-m", "schema_warden", "check", "--config", str(ini), "--format", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(short_tmpdir)},
        timeout=120,
    )
    assert proc.returncode == code, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert failed and where in failed[0]["message"], failed
    assert "Exit" in failed[0]["message"] or "exit(" in failed[0]["message"]
    assert "Traceback" not in proc.stderr
    assert list(short_tmpdir.iterdir()) == []
    assert left_over(before) == []


def test_os_exit_raises_only_inside_the_block() -> None:
    with exits_raise(), exits_raise(), pytest.raises(ExitCalled) as info:
        os._exit(3)
    assert info.value.status == 3 and isinstance(info.value, SystemExit)
    assert os._exit is real_exit


def test_a_killed_worker_is_a_failure_of_the_revision_it_proved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forked child dies (SIGKILL) while it proves 0002; the parent rehearses 0002 fine.
    Before, the parent proved the child's part again itself and the check passed."""
    kill = f"import os, signal\nif os.getpid() != {os.getpid()}:\n    os.kill(os.getpid(), signal.SIGKILL)"
    revisions = [Rev("0001", None, 'op.execute("CREATE TABLE t (id int)")', 'op.execute("DROP TABLE t")')]
    revisions.append(Rev("0002", "0001", kill, "pass", "killed"))
    for n in range(3, 9):
        up = f'op.execute("ALTER TABLE t ADD COLUMN c{n} int")'
        down = f'op.execute("ALTER TABLE t DROP COLUMN c{n}")'
        revisions.append(Rev(f"{n:04d}", f"{n - 1:04d}", up, down))
    columns = "".join(f', sa.Column("c{n}", sa.Integer)' for n in range(3, 9))
    models = f't = sa.Table("t", metadata, sa.Column("id", sa.Integer){columns})'
    ini = make_project(tmp_path, models=models, revisions=revisions)
    monkeypatch.setenv(parallel.JOBS_ENV, "2")
    monkeypatch.setenv(parallel.MIN_ENV, "2")
    before = server_dirs()
    assert main(["--config", str(ini), "--no-cache", "--no-data-check"]) == 1
    out = capsys.readouterr().out
    assert "revision 0002" in out and "killed by SIGKILL" in out, out
    assert left_over(before) == [] and orphans(server_dirs()) == []
