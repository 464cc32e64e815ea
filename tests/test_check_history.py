"""``schema-warden history``: the integrity file of the migrations (real Alembic projects, real git)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from schema_warden.commands import history as check_history
from schema_warden.commands.history import SUM_FILE, Entry, compare, digest, parse_sum, render_sum

REPO_ROOT = Path(__file__).resolve().parent.parent

ALEMBIC_INI = """\
[alembic]
script_location = %(here)s/migrations
prepend_sys_path = %(here)s
path_separator = os
"""

REVISION = '''\
"""{rev}"""
from alembic import op

revision = "{rev}"
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
    op.execute("{sql}")


def downgrade():
    pass
'''


def write_revision(versions: Path, rev: str, down: str | None, sql: str = "SELECT 1") -> Path:
    path = versions / f"{rev}_step.py"
    path.write_text(REVISION.format(rev=rev, down=down, sql=sql), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with revisions 0001 and 0002; returns its alembic.ini."""
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (tmp_path / "alembic.ini").write_text(ALEMBIC_INI, encoding="utf-8")
    (tmp_path / "migrations" / "env.py").write_text("raise RuntimeError('history never runs env.py')\n")
    write_revision(versions, "0001", None)
    write_revision(versions, "0002", "0001")
    return tmp_path / "alembic.ini"


def versions_of(ini: Path) -> Path:
    return ini.parent / "migrations" / "versions"


def history(ini: Path, *args: str) -> int:
    return check_history.main(["-c", str(ini), *args])


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, check=check, capture_output=True, text=True)


def init_repo(root: Path) -> None:
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.invalid")
    git(root, "config", "commit.gpgsign", "false")


def test_update_writes_a_total_and_one_line_per_migration(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert history(project, "--update") == 0
    assert capsys.readouterr().out.strip() == (
        f"recorded 2 migration(s) in migrations/versions/{SUM_FILE}: commit it"
    )
    lines = (versions_of(project) / SUM_FILE).read_text().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("h1:")
    assert [line.split(" ")[0] for line in lines[1:]] == ["0001_step.py", "0002_step.py"]
    content = (versions_of(project) / "0002_step.py").read_bytes()
    assert lines[2] == f"0002_step.py {digest(content)}"
    assert history(project) == 0
    assert "2 migration(s) match" in capsys.readouterr().out


def test_first_run_without_an_integrity_file_creates_it_and_says_so(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sum_file = versions_of(project) / SUM_FILE
    assert not sum_file.exists()
    assert history(project) == 0
    assert capsys.readouterr().out.strip() == (
        f"created migrations/versions/{SUM_FILE}: recorded 2 migration(s) as they are now; "
        "commit it with them"
    )
    assert [line.split(" ")[0] for line in sum_file.read_text().splitlines()[1:]] == [
        "0001_step.py",
        "0002_step.py",
    ]
    assert history(project) == 0  # the second run checks against it
    assert "2 migration(s) match" in capsys.readouterr().out
    write_revision(versions_of(project), "0002", "0001", sql="SELECT 2")
    assert history(project) == 1  # and an edit after the first run is caught


def test_first_run_in_json_names_the_created_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert history(project, "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data == {
        "command": "history",
        "ok": True,
        "created": f"migrations/versions/{SUM_FILE}",
        "migrations": 2,
    }


def test_edited_migration_fails_until_accepted(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history(project, "--update")
    write_revision(versions_of(project), "0002", "0001", sql="SELECT 2")
    capsys.readouterr()
    assert history(project) == 1
    assert capsys.readouterr().out.strip() == (
        "revision 0002 (0002_step.py) was changed after it was recorded: databases that already applied it "
        "will not see this change; write a new migration instead (to accept the edit deliberately: "
        "`schema-warden history --update`)"
    )
    assert history(project, "--update") == 0
    assert "recorded the edited: 0002_step.py" in capsys.readouterr().out
    assert history(project) == 0


def test_new_migration_without_update_fails(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history(project, "--update")
    write_revision(versions_of(project), "0003", "0002")
    capsys.readouterr()
    assert history(project) == 1
    assert capsys.readouterr().out.strip() == (
        f"revision 0003 (0003_step.py) is a new migration not recorded in {SUM_FILE}: "
        "run `schema-warden history --update` and commit the file"
    )


def test_deleted_migration_fails(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history(project, "--update")
    (versions_of(project) / "0002_step.py").unlink()
    capsys.readouterr()
    assert history(project) == 1
    assert capsys.readouterr().out.startswith("0002_step.py was recorded but is gone")


def test_renamed_migration_is_named_as_renamed(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history(project, "--update")
    versions = versions_of(project)
    (versions / "0002_step.py").rename(versions / "20261125_0002_step.py")
    capsys.readouterr()
    assert history(project, "--format", "json") == 1
    [problem] = json.loads(capsys.readouterr().out)["problems"]
    assert problem["kind"] == "renamed"
    assert "was renamed from 0002_step.py (same content)" in problem["message"]


def test_line_endings_do_not_count_as_an_edit(project: Path) -> None:
    history(project, "--update")
    path = versions_of(project) / "0001_step.py"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert history(project) == 0


def test_hand_edited_total_fails(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history(project, "--update")
    sum_file = versions_of(project) / SUM_FILE
    lines = sum_file.read_text().splitlines()
    sum_file.write_text("\n".join([lines[0], lines[1]]) + "\n")  # a line removed, total kept
    capsys.readouterr()
    assert history(project) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{SUM_FILE} was edited by hand: its total does not match")
    assert out[1].startswith("revision 0002 (0002_step.py) is a new migration")


def test_two_branches_adding_migrations_conflict_in_git(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project.parent
    init_repo(root)
    history(project, "--update")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "two migrations")
    for branch, rev in (("feature-a", "0003a"), ("feature-b", "0003b")):
        git(root, "checkout", "-q", "-b", branch, "main")
        write_revision(versions_of(project), rev, "0002")
        assert history(project, "--update") == 0
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", f"migration on {branch}")
    git(root, "checkout", "-q", "main")
    git(root, "merge", "-q", "feature-a")
    merged = git(root, "merge", "feature-b", check=False)
    assert merged.returncode != 0
    assert f"CONFLICT (content): Merge conflict in migrations/versions/{SUM_FILE}" in merged.stdout
    capsys.readouterr()
    assert history(project) == 1
    assert capsys.readouterr().out.strip() == (
        f"migrations/versions/{SUM_FILE} has git conflict markers: two branches added migrations: merge "
        "their heads (`schema-warden heads`), then run `schema-warden history --update`"
    )


def test_parse_and_compare_are_pure() -> None:
    entries = [Entry("a.py", digest(b"a\n"), "1"), Entry("b.py", digest(b"b\n"), "2")]
    text = render_sum(entries)
    recorded_total, recorded = parse_sum(text)
    assert [(e.file, e.digest) for e in recorded] == [(e.file, e.digest) for e in entries]
    assert compare(recorded_total, recorded, entries) == []
    with pytest.raises(check_history.SumFileError, match="conflict markers"):
        parse_sum("<<<<<<< HEAD\nh1:x\n=======\nh1:y\n>>>>>>> b\n")
    with pytest.raises(check_history.SumFileError, match="line 2"):
        parse_sum("h1:x\nnot-a-hash-line\n")


def test_bundled_project_integrity_file_is_committed_and_matches() -> None:
    assert (REPO_ROOT / "database" / "alembic" / "versions" / SUM_FILE).is_file()
    done = subprocess.run(
        [sys.executable, "-m", "schema_warden", "history"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "migration(s) match database/alembic/versions/schema-warden.sum" in done.stdout


def test_pre_commit_hook_history_is_defined_for_other_repos_and_this_one() -> None:
    hooks = {h["id"]: h for h in yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert hooks["schema-warden-history"]["entry"] == "schema-warden history"
    local = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    ids = {h["id"]: h for repo in local["repos"] for h in repo["hooks"]}
    assert ids["schema-warden-history"]["entry"] == "schema-warden history"
