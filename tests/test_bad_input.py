"""Bad input gets one line and its documented exit code, never a traceback.

Table-driven: case -> command -> exit code -> what the message must say. Every command runs
as a user runs it, ``python -m schema_warden <command> --config <ini>`` in the project's
directory, and stderr must hold no "Traceback".
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ENV_PY = """\
from alembic import context

context.configure(connection=context.config.attributes["connection"])
with context.begin_transaction():
    context.run_migrations()
"""

REVISION = """\
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.execute("CREATE TABLE devices (id int PRIMARY KEY)")


def downgrade():
    op.execute("DROP TABLE devices")
"""

GOOD_INI = "[alembic]\nscript_location = migrations\n"
INI_COMMANDS = ("check", "heads", "lint", "history", "erd", "diff")


def project(tmp_path: Path) -> Path:
    """A small working Alembic project; each case breaks one thing in it."""
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (tmp_path / "migrations" / "env.py").write_text(ENV_PY)
    (versions / "0001_devices.py").write_text(REVISION)
    (tmp_path / "alembic.ini").write_text(GOOD_INI)
    return tmp_path / "alembic.ini"


def non_utf8_ini(ini: Path) -> None:
    ini.write_bytes(GOOD_INI.encode() + b"# caf\xff\xfe\n")


def template_ini(ini: Path) -> None:
    ini.write_text("[alembic]\nscript_location = {{cookiecutter.project_slug}}/migrations\n")


def ini_without_alembic_section(ini: Path) -> None:
    ini.write_text("[loggers]\nkeys = root\n")


def revision_with_nul_bytes(ini: Path) -> None:
    body = 'revision = "0002"\ndown_revision = "0001"\n\x00\x00\n'
    (ini.parent / "migrations" / "versions" / "0002_nul.py").write_text(body)


NUL_NAMED = (
    "migrations/versions/0002_nul.py: syntax error in migration: source code string cannot contain null bytes"
)

# (case id, how the project is broken, command, exit code, what the message says)
CASES: list[tuple[str, Callable[[Path], None], str, int, str]] = [
    *[
        ("non-utf8-ini", non_utf8_ini, command, 2, "alembic.ini: not UTF-8 text (byte 0xff on line 3)")
        for command in INI_COMMANDS
    ],
    *[
        (
            "template-ini",
            template_ini,
            command,
            2,
            "script_location '{{cookiecutter.project_slug}}/migrations' (an unrendered template placeholder)",
        )
        for command in INI_COMMANDS
    ],
    *[
        ("no-alembic-section", ini_without_alembic_section, command, 2, "alembic.ini: no [alembic] section")
        for command in INI_COMMANDS
    ],
    *[
        ("nul-bytes", revision_with_nul_bytes, command, 2, NUL_NAMED)
        for command in INI_COMMANDS
        if command != "heads"
    ],
    ("nul-bytes", revision_with_nul_bytes, "heads", 1, f"FAIL imports: {NUL_NAMED}"),
]


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "schema_warden", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def commit_all(cwd: Path) -> None:
    """diff compares with a git ref: the broken project is committed, and compared with itself."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=cwd, check=True)
    subprocess.run([*git, "add", "-A"], cwd=cwd, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "project"], cwd=cwd, check=True)


@pytest.mark.parametrize(
    ("case", "break_it", "command", "code", "says"),
    CASES,
    ids=[f"{case}-{command}" for case, _, command, _, _ in CASES],
)
def test_bad_project_input_is_one_line_and_its_exit_code(
    case: str, break_it: Callable[[Path], None], command: str, code: int, says: str, tmp_path: Path
) -> None:
    ini = project(tmp_path)
    break_it(ini)
    extra = ["--base", "HEAD"] if command == "diff" else []
    if command == "diff":
        commit_all(tmp_path)
    done = run(tmp_path, command, "--config", str(ini), *extra)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, done.stdout + done.stderr
    assert "?:None" not in done.stdout + done.stderr and ":None:" not in done.stdout + done.stderr
    if code == 2:
        assert done.stderr.startswith("error: ") and says in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    else:
        assert says in done.stdout, done.stdout


def test_the_project_the_cases_break_is_good(tmp_path: Path) -> None:
    """Each case above fails because of what it breaks, not because the project never worked."""
    ini = project(tmp_path)
    for command in ("heads", "erd"):
        done = run(tmp_path, command, "--config", str(ini))
        assert done.returncode == 0, (command, done.stdout + done.stderr)


def test_secrets_of_a_file_that_does_not_exist(tmp_path: Path) -> None:
    done = run(tmp_path, "secrets", "/nonexistent")
    assert "Traceback" not in done.stderr
    assert done.returncode == 2
    assert (
        done.stderr
        == "error: /nonexistent: no such file: pass files, or no FILES to check the git-tracked ones\n"
    )
