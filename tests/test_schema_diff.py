"""``schema-warden diff`` on real temporary git repositories and a real PostgreSQL server.

The base commit is a small Alembic project (tests/fixture_project.py); the head commit adds
a column and an index and drops a table. Also: no change, bad inputs (unknown ref, shallow
clone, base without migrations, base whose history does not upgrade, head that does not
upgrade), the guard's and the lint's results, and the workflow's own script steps run locally.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import fixture_project
import pytest
import yaml
from fixture_project import Rev, make_project, write_models, write_revision
from schema_warden.commands import diff as schema_diff
from schema_warden.commands import lint as lint_migrations
from schema_warden.commands.github import MARKER
from schema_warden.server.postgres import Server

REPO_ROOT = Path(__file__).resolve().parent.parent

# Alembic's template env.py, whose offline mode also takes DATABASE_URL when alembic.ini has no URL
# (schema-warden lint renders SQL with a harmless DATABASE_URL; the diff sets both)
_OFFLINE_URL = 'url=config.get_main_option("sqlalchemy.url")'
assert _OFFLINE_URL in fixture_project.ENV_PY
ENV_PY = fixture_project.ENV_PY.replace(_OFFLINE_URL, _OFFLINE_URL + ' or os.environ["DATABASE_URL"]').format(
    package=fixture_project.PACKAGE, connectable='config.attributes.get("connection")'
)

BASE_MODELS = """
readings = sa.Table("readings", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("device", sa.String(32)))
legacy = sa.Table("legacy", metadata, sa.Column("id", sa.Integer, primary_key=True))
"""
HEAD_MODELS = """
readings = sa.Table("readings", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("device", sa.String(32), index=True),
    sa.Column("humidity", sa.Float))
"""
BASE_REVISIONS = (
    Rev(
        "0001",
        None,
        message="create readings and legacy",
        upgrade="""
            op.create_table("readings", sa.Column("id", sa.Integer, primary_key=True),
                            sa.Column("value", sa.Float, nullable=False))
            op.create_table("legacy", sa.Column("id", sa.Integer, primary_key=True))
        """,
        downgrade='op.drop_table("legacy")\nop.drop_table("readings")',
    ),
    Rev(
        "0002",
        "0001",
        message="add device",
        upgrade='op.add_column("readings", sa.Column("device", sa.String(32)))',
        downgrade='op.drop_column("readings", "device")',
    ),
)
HEAD_REVISION = Rev(
    "0003",
    "0002",
    message="add humidity index device drop legacy",
    upgrade="""
        op.add_column("readings", sa.Column("humidity", sa.Float))
        # schema-warden: allow require-concurrent-index-creation -- readings holds a few rows
        op.create_index("ix_readings_device", "readings", ["device"])
        # schema-warden: allow ban-drop-table -- nothing has read legacy since 2024
        op.drop_table("legacy")
    """,
    downgrade="""
        op.create_table("legacy", sa.Column("id", sa.Integer, primary_key=True))
        op.drop_index("ix_readings_device", table_name="readings")
        op.drop_column("readings", "humidity")
    """,
)
# a revision the lint stops: a column dropped without an allow comment (the guard passes it)
DROP_DEVICE = Rev(
    "0004",
    "0003",
    message="drop device",
    upgrade='op.drop_column("readings", "device")',
    downgrade="""
        op.add_column("readings", sa.Column("device", sa.String(32)))
        op.create_index("ix_readings_device", "readings", ["device"])
    """,
)
WITHOUT_DEVICE_MODELS = """
readings = sa.Table("readings", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("humidity", sa.Float))
"""
EXPECTED_LINES = [
    "- table legacy (1 column, PK id) [destructive]",
    "+ column readings.humidity (double precision, nullable)",
    "+ index ix_readings_device (on readings: btree (device))",
]


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def new_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    return repo


@pytest.fixture
def two_commits(tmp_path: Path) -> Path:
    """base: readings + legacy (0001, 0002); head: 0003 adds a column and an index, drops legacy."""
    repo = new_repo(tmp_path)
    make_project(repo, models=BASE_MODELS, revisions=BASE_REVISIONS, env_py=ENV_PY)
    commit_all(repo, "base")
    write_models(repo, HEAD_MODELS)
    write_revision(repo, HEAD_REVISION)
    commit_all(repo, "head")
    return repo


def run_main(repo: Path, *args: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.chdir(repo)
    return schema_diff.main(list(args))


def report_of(repo: Path, server: Server, base: str = "HEAD~1", **kwargs: object) -> schema_diff.DiffReport:
    return schema_diff.build_report(
        base_ref=base,
        head_ref=kwargs.pop("head_ref", None),  # type: ignore[arg-type]
        config=str(repo / "alembic.ini"),
        pg_bin=None,
        server=server,
        **kwargs,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------- the three changes, three formats


def test_text_reports_exactly_the_three_changes_through_the_real_command_line(two_commits: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "schema_warden", "diff", "--base", "HEAD~1"],
        cwd=two_commits,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    title = r"schema diff HEAD~1 \([0-9a-f]{12}\) -> working tree: "
    assert re.fullmatch(title + r"1 new revision, 3 schema changes \(1 destructive\)", lines[0])
    assert [line.strip() for line in lines[1:4]] == EXPECTED_LINES
    assert not lines[4].startswith("  +") and not lines[4].startswith("  -")
    revision_file = "migrations/versions/0003_add_humidity_index_device_drop_legacy.py"
    assert f"  0003  add humidity index device drop legacy  ({revision_file})" in lines
    assert "SQL (alembic upgrade 0002:0003 --sql):" in lines
    assert "  DROP TABLE legacy;" in lines
    assert done.stderr == ""


def test_json_reports_exactly_the_three_changes(
    two_commits: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(two_commits, "--base", "HEAD~1", "--format", "json", monkeypatch=monkeypatch) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["line"] for c in data["changes"]] == EXPECTED_LINES
    assert [(c["kind"], c["action"], c["name"]) for c in data["changes"]] == [
        ("table", "removed", "legacy"),
        ("column", "added", "readings.humidity"),
        ("index", "added", "ix_readings_device"),
    ]
    assert data["summary"]["destructive"] == 1
    assert data["base"]["ref"] == "HEAD~1" and data["base"]["heads"] == ["0002"]
    assert data["head"] == {"ref": "working tree", "commit": None, "heads": ["0003"]}
    assert [r["id"] for r in data["revisions"]] == ["0003"]
    assert data["sql"]["command"] == "alembic upgrade 0002:0003 --sql"
    assert "ALTER TABLE readings ADD COLUMN humidity FLOAT;" in data["sql"]["text"]
    assert "CREATE INDEX ix_readings_device ON readings (device);" in data["sql"]["text"]
    assert data["guard"] is None and data["notes"] == []
    assert data["postgres_major"] >= 12 and data["duration_s"] > 0


def test_markdown_reports_exactly_the_three_changes(two_commits: Path, pg_server: Server) -> None:
    from schema_warden.render.diff import render_markdown

    markdown = render_markdown(report_of(two_commits, pg_server))
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "object" not in line]
    assert rows == [
        "| ⚠️ | `legacy` | **table dropped**: 1 column, PK id |",
        "| ➕ | `readings.humidity` | column added: double precision, nullable |",
        "| ➕ | `ix_readings_device` | index added: on readings: btree (device) |",
    ]
    assert "```mermaid" in markdown and "```sql" in markdown
    # the shared server is left as found: our databases are gone
    import psycopg2

    with psycopg2.connect(**pg_server.connect_kwargs()) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'schema_diff_%'")
        assert cur.fetchone() == (0,)


def test_head_ref_instead_of_the_working_tree(two_commits: Path, pg_server: Server) -> None:
    (two_commits / "migrations" / "versions" / "0003_add_humidity_index_device_drop_legacy.py").unlink()
    report = report_of(two_commits, pg_server, head_ref="HEAD")  # the deleted file is still in HEAD
    assert [c.line() for c in report.changes] == EXPECTED_LINES
    assert report.head.ref == "HEAD" and report.head.commit is not None


# ---------------------------------------------------------------- no change


def test_unchanged_schema_reports_no_change(
    two_commits: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(two_commits, "--base", "HEAD", monkeypatch=monkeypatch) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(
        r"no schema change: HEAD \([0-9a-f]{12}\) and working tree have the same schema", out[1]
    )
    assert len(out) == 3  # title, the one line, footer


def test_data_only_revision_is_listed_with_no_schema_change(two_commits: Path, pg_server: Server) -> None:
    write_revision(two_commits, Rev("0004", "0003", message="backfill", upgrade='op.execute("SELECT 1")'))
    report = report_of(two_commits, pg_server, base="HEAD")
    assert report.changes == () and [r.id for r in report.revisions] == ["0004"]
    assert "SELECT 1;" in (report.sql or "")


# ---------------------------------------------------------------- bad input


def test_unknown_ref_is_exit_2_with_one_line(
    two_commits: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(two_commits, "--base", "origin/nope", monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown git ref origin/nope: ")


def test_option_like_ref_is_refused(
    two_commits: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(two_commits, "--base=--output=/tmp/x", monkeypatch=monkeypatch) == 2
    assert "cannot start with '-'" in capsys.readouterr().err


def test_shallow_clone_without_the_base_says_fetch_depth_0(
    two_commits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{two_commits}", str(shallow))
    assert run_main(shallow, "--base", "HEAD~1", monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: git ref HEAD~1 is not in this shallow clone") and "fetch-depth: 0" in err


def test_not_a_git_repository_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "plain"
    make_project(plain, models=BASE_MODELS, revisions=BASE_REVISIONS)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert run_main(plain, "--base", "HEAD", monkeypatch=monkeypatch) == 2
    assert "is not in a git repository" in capsys.readouterr().err


def test_base_without_any_migrations_shows_everything_added(tmp_path: Path, pg_server: Server) -> None:
    repo = new_repo(tmp_path)
    (repo / "README.md").write_text("before the database\n")
    commit_all(repo, "no database yet")
    make_project(repo, models=BASE_MODELS, revisions=BASE_REVISIONS)
    report = report_of(repo, pg_server, base="HEAD")  # the working tree has the project
    assert report.notes == (
        "base HEAD has no alembic.ini (no Alembic migrations): every object is shown as added",
    )
    assert {(c.kind, c.action, c.name) for c in report.changes} >= {
        ("table", "added", "readings"),
        ("table", "added", "legacy"),
    }
    assert all(c.action == "added" for c in report.changes)
    assert [r.id for r in report.revisions] == ["0001", "0002"]
    assert report.sql_command == "alembic upgrade 0002 --sql" and "CREATE TABLE legacy" in (report.sql or "")


def test_base_with_an_empty_versions_directory(tmp_path: Path, pg_server: Server) -> None:
    repo = new_repo(tmp_path)
    make_project(repo, models=BASE_MODELS, revisions=())
    (repo / "migrations" / "versions" / ".gitkeep").write_text("")
    commit_all(repo, "alembic init")
    for rev in BASE_REVISIONS:
        write_revision(repo, rev)
    report = report_of(repo, pg_server, base="HEAD")
    assert report.notes == ("base HEAD has no migrations: every object is shown as added",)
    assert {c.name for c in report.changes if c.kind == "table"} == {"readings", "legacy"}


def test_base_whose_history_does_not_upgrade_is_reported_and_the_head_shown(
    tmp_path: Path, pg_server: Server
) -> None:
    repo = new_repo(tmp_path)
    broken = Rev("0001", None, message="broken", upgrade='op.execute("ALTER TABLE missing ADD COLUMN x int")')
    make_project(repo, models=BASE_MODELS, revisions=(broken,))
    commit_all(repo, "broken base")
    (repo / "migrations" / "versions" / "0001_broken.py").unlink()
    for rev in BASE_REVISIONS:
        write_revision(repo, rev)
    report = report_of(repo, pg_server, base="HEAD")
    (note,) = report.notes
    assert note.startswith("the migrations of base HEAD do not upgrade: revision 0001 (migrations/versions/")
    assert "UndefinedTable" in note and note.endswith("every object of the head is shown as added")
    assert {c.name for c in report.changes if c.kind == "table"} == {"readings", "legacy"}
    assert all(c.action == "added" for c in report.changes)


def test_head_that_does_not_upgrade_is_exit_2(
    two_commits: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_revision(two_commits, Rev("0004", "0003", message="bad", upgrade='op.drop_table("nope")'))
    assert run_main(two_commits, "--base", "HEAD~1", monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the migrations of working tree do not upgrade: revision 0004")
    assert "fix that revision" in err.splitlines()[0]


# ---------------------------------------------------------------- the guard's result


def test_failed_guard_result_is_shown_and_exits_1(
    two_commits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    result = tmp_path / "guard.json"
    result.write_text(
        json.dumps(
            {
                "ok": False,
                "checks": [
                    {
                        "name": "stairway",
                        "status": "pass",
                        "revision": "0003",
                        "message": "ok",
                        "details": [],
                    },
                    {
                        "name": "drift",
                        "status": "fail",
                        "revision": None,
                        "message": "models differ",
                        "details": [],
                    },
                ],
                "duration_s": 1.0,
            }
        )
    )
    args = ("--base", "HEAD~1", "--format", "markdown", "--check-result", str(result), "--no-sql")
    assert run_main(two_commits, *args, monkeypatch=monkeypatch) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("· ❌ guard failed")
    assert "**Guard:** ❌ failed — stairway ✅ · drift ❌" in out and "- `models differ`" in out
    assert "```sql" not in out


def test_missing_guard_result_counts_as_failed(tmp_path: Path) -> None:
    guard = schema_diff.read_guard_result(tmp_path / "absent.json")
    assert not guard.ok and "the guard wrote no result" in guard.problems[0].message
    (tmp_path / "empty.json").write_text("")
    assert not schema_diff.read_guard_result(tmp_path / "empty.json").ok


# ---------------------------------------------------------------- the lint's result


def _lint_json(
    repo: Path, base: str, path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> int:
    """Run ``schema-warden lint --base BASE --format json`` on ``repo`` into ``path``, as a workflow step."""
    monkeypatch.chdir(repo)
    code = lint_migrations.main(["--base", base, "--format", "json"])
    path.write_text(capsys.readouterr().out, encoding="utf-8")
    return code


def test_lint_result_is_shown_beside_the_diff_and_a_failed_lint_exits_1(
    two_commits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_revision(two_commits, DROP_DEVICE)
    result = tmp_path / "lint.json"
    assert _lint_json(two_commits, "HEAD~1", result, monkeypatch, capsys) == 1
    args = ("--base", "HEAD~1", "--format", "markdown", "--lint-result", str(result), "--no-sql")
    assert run_main(two_commits, *args, monkeypatch=monkeypatch) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (
        "### Schema diff — 2 new revisions, 3 schema changes (2 destructive) · ❌ lint failed"
    )
    assert "**Lint:** ❌ failed — 1 error, 2 warnings, 2 allowed (2 revisions linted)" in out
    lint_lines = [line for line in out.splitlines() if line.startswith("- ") and " on `00" in line]
    assert lint_lines == [
        "- ❌ `ban-drop-column` on `0004` (`readings.device`)",
        "- ⚠️ `require-lock-timeout` on `0003` (`readings`) · warning",
        "- ⚠️ `require-lock-timeout` on `0004` (`readings`) · warning",
        "- ✅ `require-concurrent-index-creation` on `0003` (`readings`) — allowed: "
        "“readings holds a few rows”",
        "- ✅ `ban-drop-table` on `0003` (`legacy`) — allowed: “nothing has read legacy since 2024”",
    ]
    assert "`schema-warden lint --base HEAD~1` shows why each one is risky and the safe way." in out

    # JSON: the same findings; an allowed-only lint passes (exit 0)
    (two_commits / "migrations" / "versions" / "0004_drop_device.py").unlink()
    assert _lint_json(two_commits, "HEAD~1", result, monkeypatch, capsys) == 0
    args = ("--base", "HEAD~1", "--format", "json", "--lint-result", str(result), "--no-sql")
    assert run_main(two_commits, *args, monkeypatch=monkeypatch) == 0
    lint = json.loads(capsys.readouterr().out)["lint"]
    assert lint["ok"] is True and (lint["errors"], lint["warnings"], lint["allowed"]) == (0, 1, 2)
    assert lint["selection"] == "revisions new or changed since HEAD~1" and lint["revisions"] == 1
    assert [(f["rule"], f["revision"], f["allowed"]) for f in lint["findings"]] == [
        ("require-lock-timeout", "0003", None),
        ("require-concurrent-index-creation", "0003", "readings holds a few rows"),
        ("ban-drop-table", "0003", "nothing has read legacy since 2024"),
    ]


def test_missing_or_foreign_lint_result_counts_as_failed(tmp_path: Path) -> None:
    missing = schema_diff.read_lint_result(tmp_path / "absent.json")
    assert not missing.ok and missing.problems[0].startswith("the lint wrote no result (")
    (tmp_path / "empty.json").write_text("")
    empty = schema_diff.read_lint_result(tmp_path / "empty.json")
    assert not empty.ok and "see the lint step's log" in empty.problems[0]
    (tmp_path / "guard.json").write_text(json.dumps({"ok": True, "checks": []}))  # the wrong file
    foreign = schema_diff.read_lint_result(tmp_path / "guard.json")
    assert not foreign.ok and "not the JSON of `schema-warden lint --format json`" in foreign.problems[0]


# ---------------------------------------------------------------- the workflow's own steps, run locally


def _workflow_steps() -> dict[str, str]:
    data = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "schema-check.yml").read_text())
    return {s["id"]: s["run"] for s in data["jobs"]["check"]["steps"] if "id" in s}


def _outputs(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    return {m[1]: m[3] for m in re.finditer(r"^(\w+)<<(\S+)\n(.*?)\n\2$", text, re.MULTILINE | re.DOTALL)}


def _run_workflow_steps(repo: Path, tmp_path: Path, *, head_repo: str) -> tuple[dict[str, int], Path]:
    """Run the check job's script steps as the runner does; returns their exit codes and RUNNER_TEMP."""
    if shutil.which("schema-warden") is None:
        pytest.fail("schema-warden is not on PATH: pip install -e '.[test]'")
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD~1")  # what checkout fetches
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    event = tmp_path / "event.json"
    pull_request = {
        "number": 3,
        "head": {"repo": {"full_name": head_repo}},
        "base": {"repo": {"full_name": "acme/iot"}},
    }
    event.write_text(json.dumps({"pull_request": pull_request}))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
        "GITHUB_BASE_REF": "main",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": "acme/iot",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "123",
    }
    steps = _workflow_steps()
    codes = {}
    for step in ("guard", "lint", "diff"):
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", steps[step]],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        codes[step] = done.returncode
        assert done.returncode in (0, 1), f"{step}: {done.stdout}\n{done.stderr}"
    return codes, runner_temp


@pytest.mark.parametrize("fork", [False, True], ids=["same-repo", "fork"])
def test_workflow_steps_write_the_summary_and_the_marked_comment(
    two_commits: Path, tmp_path: Path, fork: bool
) -> None:
    codes, runner_temp = _run_workflow_steps(
        two_commits, tmp_path, head_repo="someone/iot" if fork else "acme/iot"
    )
    assert codes == {"guard": 0, "lint": 0, "diff": 0}
    assert json.loads((runner_temp / "guard.json").read_text())["ok"] is True
    assert json.loads((runner_temp / "lint.json").read_text())["summary"]["allowed"] == 2
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith(
        "### Schema diff — 1 new revision, 3 schema changes (1 destructive)"
        " · ✅ guard passed · ✅ lint passed"
    )
    assert "| ⚠️ | `legacy` | **table dropped**: 1 column, PK id |" in summary
    assert "**Lint:** ✅ passed — 0 errors, 1 warning, 2 allowed (1 revision linted)" in summary
    assert (
        "- ✅ `ban-drop-table` on `0003` (`legacy`) — allowed: “nothing has read legacy since 2024”"
        in summary
    )
    outputs = _outputs(tmp_path / "output.txt") if (tmp_path / "output.txt").exists() else {}
    if fork:
        assert outputs == {}  # read-only token: no comment, the summary has it all
        return
    comment = outputs["comment"]
    assert comment.startswith(MARKER + "\n### Schema diff — 1 new revision, 3 schema changes")
    assert "| ➕ | `readings.humidity` | column added: double precision, nullable |" in comment
    assert "alembic upgrade 0002:0003 --sql" in comment


def test_workflow_fails_when_the_guard_fails_after_writing_summary_and_comment(
    two_commits: Path, tmp_path: Path
) -> None:
    write_models(
        two_commits, HEAD_MODELS + '\nextra = sa.Table("extra", metadata, sa.Column("id", sa.Integer))'
    )
    codes, runner_temp = _run_workflow_steps(two_commits, tmp_path, head_repo="acme/iot")
    assert codes == {"guard": 1, "lint": 0, "diff": 1}  # guard: continue-on-error; the diff step fails
    assert json.loads((runner_temp / "guard.json").read_text())["ok"] is False
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert summary.splitlines()[0].endswith("· ❌ guard failed · ✅ lint passed") and "drift ❌" in summary
    comment = _outputs(tmp_path / "output.txt")["comment"]
    assert comment.startswith(MARKER) and "❌ guard failed" in comment and "`legacy`" in comment


def test_workflow_fails_when_the_lint_fails_after_writing_summary_and_comment(
    two_commits: Path, tmp_path: Path
) -> None:
    write_models(two_commits, WITHOUT_DEVICE_MODELS)
    write_revision(two_commits, DROP_DEVICE)  # the guard proves it; the lint stops it
    codes, runner_temp = _run_workflow_steps(two_commits, tmp_path, head_repo="acme/iot")
    assert codes == {"guard": 0, "lint": 1, "diff": 1}
    assert json.loads((runner_temp / "lint.json").read_text())["summary"]["errors"] == 1
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert summary.splitlines()[0].endswith("· ✅ guard passed · ❌ lint failed")
    assert "- ❌ `ban-drop-column` on `0004` (`readings.device`)" in summary
    comment = _outputs(tmp_path / "output.txt")["comment"]
    assert comment.startswith(MARKER) and "❌ lint failed" in comment
    assert "`schema-warden lint --base origin/main` shows why" in comment


def test_github_mode_reports_an_error_to_the_summary(
    two_commits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    monkeypatch.setenv("GITHUB_BASE_REF", "gone")
    for name in ("GITHUB_EVENT_PATH", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    assert run_main(two_commits, "--github", monkeypatch=monkeypatch) == 2
    summary = (tmp_path / "summary.md").read_text()
    assert "### Schema diff — could not run" in summary and "unknown git ref origin/gone" in summary
    assert capsys.readouterr().err.startswith("error: unknown git ref origin/gone")


SQLMODEL_MODELS = """\
from sqlmodel import Field, SQLModel


class Reading(SQLModel, table=True):
    __tablename__ = "readings"
    id: int | None = Field(default=None, primary_key=True)
    value: float
{extra}
metadata = SQLModel.metadata
"""


def test_sqlmodel_project_base_and_head_do_not_share_the_global_metadata(
    tmp_path: Path, pg_server: Server
) -> None:
    """A FastAPI + SQLModel template: every model registers in SQLModel's one global MetaData,
    so loading base and head in one process defines table readings twice."""
    repo = new_repo(tmp_path)
    first = Rev(
        "0001",
        None,
        'op.create_table("readings", sa.Column("id", sa.Integer, primary_key=True),'
        ' sa.Column("value", sa.Float, nullable=False))',
        'op.drop_table("readings")',
        "create readings",
    )
    make_project(repo, revisions=[first], env_py=ENV_PY)
    models = repo / "fixture_app" / "models.py"
    models.write_text(SQLMODEL_MODELS.format(extra=""))
    commit_all(repo, "base")
    models.write_text(SQLMODEL_MODELS.format(extra="    device: str | None = None\n"))
    write_revision(
        repo,
        Rev(
            "0002",
            "0001",
            'op.add_column("readings", sa.Column("device", sa.String()))',
            'op.drop_column("readings", "device")',
            "add device",
        ),
    )
    commit_all(repo, "head")
    report = report_of(repo, pg_server)
    assert [(c.action, c.kind, c.name) for c in report.changes] == [("added", "column", "readings.device")]
