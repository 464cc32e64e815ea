"""``schema-warden lint`` on real Alembic projects written to tmp_path (offline SQL, no server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from schema_warden.commands import lint as lint_migrations
from schema_warden.lint.rules import RULES
from schema_warden.project.loader import loaded_project

REPO_ROOT = Path(__file__).resolve().parent.parent

ALEMBIC_INI = """\
[alembic]
script_location = %(here)s/migrations
prepend_sys_path = %(here)s
path_separator = os
"""

# env.py as many projects write it: the URL from DATABASE_URL, read even in offline mode.
ENV_PY = """\
import os

from alembic import context

from models import metadata

config = context.config


def run_migrations_offline():
    context.configure(url=os.environ["DATABASE_URL"], target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    raise RuntimeError("these fixtures only render SQL")
"""

MODELS_PY = """\
import sqlalchemy as sa

metadata = sa.MetaData()
"""

REVISION = '''\
"""{message}"""
import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
{body}


def downgrade():
    pass
'''

BASE_BODY = """\
op.create_table(
    "devices",
    sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
)
op.create_table(
    "readings",
    sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
    sa.Column("device_id", sa.BigInteger(), nullable=True),
    sa.Column("value", sa.Numeric(6, 2), nullable=True),
    sa.Column("legacy", sa.Text(), nullable=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
)
op.create_index("ix_readings_recorded_at", "readings", ["recorded_at"])
"""

# rule -> (failing upgrade() body, passing upgrade() body), both on the existing tables of 0001
CASES: dict[str, tuple[str, str]] = {
    "ban-drop-table": (
        'op.drop_table("devices")',
        "# schema-warden: allow drop-table -- devices moved to the registry service in v3\n"
        'op.drop_table("devices")',
    ),
    "ban-drop-column": (
        'op.drop_column("readings", "legacy")',
        "# schema-warden: allow drop-column -- no release reads legacy since v2.3\n"
        'op.drop_column("readings", "legacy")',
    ),
    "renaming-table": (
        'op.rename_table("readings", "measurements")',
        'op.create_table("measurements", sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True))',
    ),
    "renaming-column": (
        'op.alter_column("readings", "value", new_column_name="reading")',
        'op.add_column("readings", sa.Column("reading", sa.Numeric(6, 2), nullable=True))',
    ),
    "changing-column-type": (
        'op.alter_column("readings", "value", type_=sa.Numeric(8, 3))',
        'op.add_column("readings", sa.Column("value_precise", sa.Numeric(8, 3), nullable=True))',
    ),
    "adding-required-field": (
        'op.add_column("readings", sa.Column("unit", sa.String(1), nullable=False))',
        'op.add_column("readings", sa.Column("unit", sa.String(1), server_default="C", nullable=False))',
    ),
    "adding-not-nullable-field": (
        'op.alter_column("readings", "device_id", nullable=False)',
        'op.create_check_constraint("ck_device_id", "readings", "device_id IS NOT NULL",\n'
        "                            postgresql_not_valid=True)",
    ),
    "adding-field-with-default": (
        'op.add_column("readings", sa.Column("uid", sa.Uuid(), server_default=sa.text("gen_random_uuid()")))',
        'op.add_column("readings", sa.Column("seen", sa.DateTime(timezone=True),\n'
        '                                    server_default=sa.text("now()")))',
    ),
    "require-concurrent-index-creation": (
        'op.create_index("ix_readings_value", "readings", ["value"])',
        "with op.get_context().autocommit_block():\n"
        '    op.create_index("ix_readings_value", "readings", ["value"], postgresql_concurrently=True)',
    ),
    "adding-foreign-key-constraint": (
        'op.create_foreign_key("fk_device", "readings", "devices", ["device_id"], ["id"])',
        'op.create_foreign_key("fk_device", "readings", "devices", ["device_id"], ["id"],\n'
        "                      postgresql_not_valid=True)",
    ),
    "constraint-missing-not-valid": (
        'op.create_check_constraint("ck_value", "readings", "value > -300")',
        'op.create_check_constraint("ck_value", "readings", "value > -300", postgresql_not_valid=True)',
    ),
    "disallowed-unique-constraint": (
        'op.create_unique_constraint("uq_reading", "readings", ["device_id", "recorded_at"])',
        "with op.get_context().autocommit_block():\n"
        '    op.create_index("uq_reading", "readings", ["device_id", "recorded_at"], unique=True,\n'
        "                    postgresql_concurrently=True)\n"
        'op.execute("ALTER TABLE readings ADD CONSTRAINT uq_reading UNIQUE USING INDEX uq_reading")',
    ),
    "ban-truncate": (
        'op.execute("TRUNCATE readings")',
        "op.execute(\"DELETE FROM readings WHERE recorded_at < '2020-01-01'\")",
    ),
    "delete-without-where": (
        'op.execute("DELETE FROM readings")',
        'op.execute("DELETE FROM readings WHERE value IS NULL")',
    ),
    "update-without-where": (
        'op.execute(sa.text("UPDATE readings SET legacy = NULL"))',
        'op.execute(sa.text("UPDATE readings SET legacy = NULL WHERE id < 1000"))',
    ),
    "prefer-timestamptz": (
        'op.add_column("readings", sa.Column("received_at", sa.DateTime(), nullable=True))',
        'op.add_column("readings", sa.Column("received_at", sa.DateTime(timezone=True), nullable=True))',
    ),
    "ban-char-field": (
        'op.add_column("readings", sa.Column("unit", sa.CHAR(1), nullable=True))',
        'op.add_column("readings", sa.Column("unit", sa.String(1), nullable=True))',
    ),
    "prefer-bigint-over-int": (
        'op.create_table("sites", sa.Column("id", sa.Integer(), primary_key=True))',
        'op.create_table("sites", sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True))',
    ),
    "require-concurrent-index-deletion": (
        'op.drop_index("ix_readings_recorded_at", table_name="readings")',
        "with op.get_context().autocommit_block():\n"
        '    op.drop_index("ix_readings_recorded_at", table_name="readings", postgresql_concurrently=True)',
    ),
    "require-lock-timeout": (
        'op.add_column("readings", sa.Column("note", sa.Text(), nullable=True))',
        "op.execute(\"SET lock_timeout = '2s'\")\n"
        'op.add_column("readings", sa.Column("note", sa.Text(), nullable=True))',
    ),
    "concurrently-in-transaction": (
        'op.create_index("ix_readings_value", "readings", ["value"], postgresql_concurrently=True)',
        "with op.get_context().autocommit_block():\n"
        '    op.create_index("ix_readings_value", "readings", ["value"], postgresql_concurrently=True)',
    ),
}
LOCK_TIMEOUT = "require-lock-timeout"


def write_revision(
    versions: Path, rev: str, down: str | tuple[str, ...] | None, body: str, *, name: str | None = None
) -> Path:
    path = versions / f"{name or rev}.py"
    path.write_text(
        REVISION.format(message=rev, rev=rev, down=down, body=textwrap.indent(body.strip("\n"), "    ")),
        encoding="utf-8",
    )
    return path


def make_project(root: Path, revisions: list[tuple[str, str]], *, pyproject: str = "") -> Path:
    """An Alembic project in ``root``: revisions ``(rev, upgrade body)`` in a chain; returns alembic.ini."""
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    (root / "alembic.ini").write_text(ALEMBIC_INI, encoding="utf-8")
    (root / "migrations" / "env.py").write_text(ENV_PY, encoding="utf-8")
    (root / "models.py").write_text(MODELS_PY, encoding="utf-8")
    if pyproject:
        (root / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    down = None
    for rev, body in revisions:
        write_revision(versions, rev, down, body)
        down = rev
    return root / "alembic.ini"


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def init_repo(root: Path) -> None:
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.invalid")
    git(root, "config", "commit.gpgsign", "false")


def commit_all(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


def lint(ini: Path, **kwargs: object) -> lint_migrations.LintReport:
    with loaded_project(ini) as project:
        return lint_migrations.run(project, **kwargs)


def by_revision(
    report: lint_migrations.LintReport, *, lock_timeout: bool = False
) -> dict[str, list[tuple[str, str | None]]]:
    """Each revision's (rule, allow reason); the lock_timeout rule, which fires beside most
    others, only when asked for."""
    return {
        r.revision: [(f.rule, f.allowed) for f in r.findings if lock_timeout or f.rule != LOCK_TIMEOUT]
        for r in report.results
    }


@pytest.fixture(scope="module")
def rule_project(tmp_path_factory: pytest.TempPathFactory) -> lint_migrations.LintReport:
    """One project: the base revision, then a failing and a passing revision per rule."""
    revisions = [("start", BASE_BODY)]
    for index, (_rule, (failing, passing)) in enumerate(sorted(CASES.items())):
        revisions += [(f"fail{index:02d}", failing), (f"pass{index:02d}", passing)]
    ini = make_project(tmp_path_factory.mktemp("rules"), revisions)
    return lint(ini, everything=True)


def test_every_rule_has_a_migration_fixture() -> None:
    assert set(CASES) == {rule.id for rule in RULES}


def test_base_revision_creating_tables_is_clean(rule_project: lint_migrations.LintReport) -> None:
    assert by_revision(rule_project)["start"] == []


@pytest.mark.parametrize("index_rule", list(enumerate(sorted(CASES))), ids=lambda pair: pair[1])
def test_rule_fails_the_risky_migration_and_passes_the_safe_one(
    rule_project: lint_migrations.LintReport, index_rule: tuple[int, str]
) -> None:
    index, rule = index_rule
    found = by_revision(rule_project, lock_timeout=rule == LOCK_TIMEOUT)
    assert found[f"fail{index:02d}"] == [(rule, None)]
    passing = found[f"pass{index:02d}"]
    assert all(allowed for _, allowed in passing), passing


def test_each_revision_is_rendered_on_its_own(rule_project: lint_migrations.LintReport) -> None:
    # the index on "readings" in the first revision would be flagged in one big script
    # if "readings" were not recognised as created in that same revision
    base = next(r for r in rule_project.results if r.revision == "start")
    assert base.statements >= 4
    assert rule_project.failed


def test_text_output_names_revision_file_rule_statement_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini = make_project(tmp_path, [("0001", BASE_BODY), ("0003", 'op.drop_column("readings", "legacy")')])
    (tmp_path / "migrations" / "versions" / "0003.py").rename(
        tmp_path / "migrations" / "versions" / "20261125_0003_drop_legacy.py"
    )
    assert lint_migrations.main(["--all", "-c", str(ini)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "revision 0003 (20261125_0003_drop_legacy.py): ban-drop-column: "
        "ALTER TABLE readings DROP COLUMN legacy — dropping a column loses its data and breaks the backend "
        "still reading it; safe: deploy code that no longer reads the column first, then drop it in a "
        "later migration"
    )
    assert out[-1].startswith("schema-warden lint: 2 revisions checked (all revisions), 1 error(s)")


def test_warnings_print_but_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = make_project(tmp_path, [("0001", BASE_BODY), ("0002", CASES["ban-char-field"][0])])
    assert lint_migrations.main(["--all", "-c", str(ini)]) == 0
    assert "ban-char-field (warning): ALTER TABLE readings ADD COLUMN unit CHAR(1)" in capsys.readouterr().out


def test_allow_comment_without_reason_fails_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = '# schema-warden: allow drop-column\nop.drop_column("readings", "legacy")'
    ini = make_project(tmp_path, [("0001", BASE_BODY), ("0002", body)])
    assert lint_migrations.main(["--all", "-c", str(ini)]) == 1
    out = capsys.readouterr().out
    assert "migrations/versions/0002.py:12: allow drop-column has no reason" in out
    assert "ban-drop-column: ALTER TABLE readings DROP COLUMN legacy" in out


def test_allowed_finding_is_reported_with_its_reason_and_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini = make_project(tmp_path, [("0001", BASE_BODY), ("0002", CASES["ban-drop-column"][1])])
    assert lint_migrations.main(["--all", "-c", str(ini), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    assert data["summary"] == {
        "revisions": 2,
        "errors": 0,
        "warnings": 1,  # require-lock-timeout: DROP COLUMN takes ACCESS EXCLUSIVE
        "allowed": 1,
        "bad_allow_comments": 0,
    }
    assert data["source"] == "offline SQL"
    [finding] = [f for f in data["revisions"][1]["findings"] if f["rule"] != LOCK_TIMEOUT]
    assert finding["rule"] == "ban-drop-column"
    assert finding["allowed"] == "no release reads legacy since v2.3"


def test_markdown_output_is_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = make_project(tmp_path, [("0001", BASE_BODY), ("0002", 'op.drop_table("devices")')])
    assert lint_migrations.main(["--all", "-c", str(ini), "--format", "markdown"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("### Migration lint · ❌ failed")
    assert "| ❌ | `0002` | `ban-drop-table` | `DROP TABLE devices` |" in out


def test_rule_selection_in_pyproject(tmp_path: Path) -> None:
    pyproject = (
        "[tool.schema-warden.lint]\n"
        'ignore = ["drop-column", "require-lock-timeout"]\n'
        'warn = ["ban-truncate"]\n'
    )
    body = 'op.drop_column("readings", "legacy")\nop.execute("TRUNCATE readings")'
    ini = make_project(tmp_path, [("0001", BASE_BODY), ("0002", body)], pyproject=pyproject)
    report = lint(ini, everything=True)
    [result] = [r for r in report.results if r.revision == "0002"]
    assert [(f.rule, f.severity) for f in result.findings] == [("ban-truncate", "warning")]
    assert not report.failed


def test_unknown_rule_in_pyproject_is_a_project_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini = make_project(
        tmp_path, [("0001", BASE_BODY)], pyproject='[tool.schema-warden.lint]\nignore = ["nope"]\n'
    )
    assert lint_migrations.main(["--all", "-c", str(ini)]) == 2
    assert "ignore names unknown rule nope" in capsys.readouterr().err


def test_revision_that_fails_offline_is_reported_and_can_be_allowed(tmp_path: Path) -> None:
    reads = 'rows = op.get_bind().execute(sa.text("SELECT id FROM devices")).fetchall()'
    ini = make_project(tmp_path, [("0001", BASE_BODY), ("0002", reads)])
    report = lint(ini, everything=True)
    [finding] = report.results[1].findings
    assert finding.rule == "unrenderable-revision"
    assert "raised AttributeError" in finding.statement
    assert report.failed
    allowed = "# schema-warden: allow unrenderable-revision -- reads devices to fill a cache\n" + reads
    write_revision(tmp_path / "migrations" / "versions", "0002", "0001", allowed)
    assert not lint(ini, everything=True).failed


def test_offline_render_never_reads_the_users_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret-pw@prod.example.invalid/iot")
    ini = make_project(tmp_path, [("0001", BASE_BODY), ("0002", 'op.execute("SELECT 1")')])
    (tmp_path / "migrations" / "env.py").write_text(
        ENV_PY.replace("import os\n", "import os\nassert 's3cret' not in os.environ['DATABASE_URL']\n"),
        encoding="utf-8",
    )
    assert not lint(ini, everything=True).failed
    assert os.environ["DATABASE_URL"] == "postgresql://app:s3cret-pw@prod.example.invalid/iot"


def test_alembic_template_env_py_renders_with_no_url_in_alembic_ini(tmp_path: Path) -> None:
    """Alembic's own template reads sqlalchemy.url in --sql mode; our ini has none (DESIGN.md)."""
    ini = make_project(tmp_path, [("0001", BASE_BODY), ("0002", 'op.execute("DROP TABLE readings")')])
    (tmp_path / "migrations" / "env.py").write_text(
        ENV_PY.replace('url=os.environ["DATABASE_URL"]', 'url=config.get_main_option("sqlalchemy.url")'),
        encoding="utf-8",
    )
    found = by_revision(lint(ini, everything=True))
    assert [rule for rule, _ in found["0002"]] == ["ban-drop-table"]
    assert "sqlalchemy.url" not in ini.read_text(encoding="utf-8")


def test_branches_and_merge_revision_are_each_rendered_alone(tmp_path: Path) -> None:
    ini = make_project(tmp_path, [("0001", BASE_BODY)])
    versions = tmp_path / "migrations" / "versions"
    write_revision(versions, "0002a", "0001", 'op.drop_column("readings", "legacy")')
    write_revision(versions, "0002b", "0001", 'op.execute("TRUNCATE devices")')
    write_revision(versions, "0003", ("0002a", "0002b"), 'op.create_index("ix_value", "readings", ["value"])')
    found = by_revision(lint(ini, everything=True))
    assert found == {
        "0001": [],
        "0002a": [("ban-drop-column", None)],
        "0002b": [("ban-truncate", None)],
        "0003": [("require-concurrent-index-creation", None)],
    }


# --- which revisions: git ------------------------------------------------------------------


def test_default_lints_revisions_new_or_changed_since_head(tmp_path: Path) -> None:
    init_repo(tmp_path)
    ini = make_project(tmp_path, [("0001", BASE_BODY), ("0002", 'op.drop_table("devices")')])
    commit_all(tmp_path, "two revisions")
    versions = tmp_path / "migrations" / "versions"
    write_revision(versions, "0003", "0002", 'op.drop_column("readings", "legacy")')
    report = lint(ini)
    assert report.selection == "revisions new or changed since HEAD"
    assert by_revision(report) == {"0003": [("ban-drop-column", None)]}

    git(tmp_path, "add", "migrations/versions/0003.py")
    write_revision(versions, "0001", None, BASE_BODY + '\nop.execute("TRUNCATE devices")')
    assert set(by_revision(lint(ini))) == {"0001", "0003"}


def test_base_ref_lints_what_a_branch_adds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init_repo(tmp_path)
    ini = make_project(tmp_path, [("0001", BASE_BODY)])
    commit_all(tmp_path, "base")
    git(tmp_path, "checkout", "-q", "-b", "feature")
    write_revision(tmp_path / "migrations" / "versions", "0002", "0001", 'op.drop_table("devices")')
    commit_all(tmp_path, "drop devices")
    assert by_revision(lint(ini)) == {}
    assert by_revision(lint(ini, base="main")) == {"0002": [("ban-drop-table", None)]}
    assert lint_migrations.main(["--base", "no-such-ref", "-c", str(ini)]) == 2
    assert "--base no-such-ref: no such git commit" in capsys.readouterr().err


def test_outside_git_all_revisions_are_linted(tmp_path: Path) -> None:
    ini = make_project(tmp_path, [("0001", BASE_BODY), ("0002", 'op.drop_table("devices")')])
    report = lint(ini)
    assert report.selection.startswith("all revisions")
    assert by_revision(report)["0002"] == [("ban-drop-table", None)]


# --- the bundled project and the real command line ----------------------------------------


def test_bundled_project_passes_with_its_allow_comment() -> None:
    report = lint(REPO_ROOT / "alembic.ini", everything=True)
    assert not report.failed, lint_migrations.render_text(report)
    found = by_revision(report)
    assert found["0001"] == []
    assert found["0002"] == [("require-concurrent-index-creation", "short write lock accepted: small table")]


def test_command_line_lint_and_exit_code(tmp_path: Path) -> None:
    ini = make_project(tmp_path, [("0001", BASE_BODY), ("0002", 'op.drop_table("devices")')])
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "schema_warden", "lint", "--all", "--config", str(ini)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "revision 0002 (0002.py): ban-drop-table: DROP TABLE devices" in done.stdout
    assert done.stderr == ""


def test_list_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert lint_migrations.main(["--list-rules"]) == 0
    rules = capsys.readouterr().out
    assert all(f"{rule.id} ({rule.severity})" in rules for rule in RULES)


def test_pre_commit_hook_lint_is_defined_for_other_repos_and_this_one() -> None:
    hooks = {h["id"]: h for h in yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert hooks["schema-warden-lint"]["entry"] == "schema-warden lint"
    local = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    ids = {h["id"]: h for repo in local["repos"] for h in repo["hooks"]}
    assert ids["schema-warden-lint"]["entry"] == "schema-warden lint"


def test_offline_lint_of_our_25_cases(tmp_path: Path) -> None:
    """Offline, every problem of tests/data/lint_cases.py is found; the two false alarms are
    the ones only a trace avoids: a varchar widening (no rewrite) and a revision that reads the
    database through op.get_bind() (unrenderable offline)."""
    from data.lint_cases import BASE, CASES

    revisions = [("c00", BASE)] + [(f"c{index + 1:02d}", body) for index, (_, body, _) in enumerate(CASES)]
    report = lint(make_project(tmp_path, revisions), everything=True)
    found = {r.revision: [f.rule for f in r.findings if f.allowed is None] for r in report.results}
    assert found["c00"] == []
    missed = [
        cid for index, (cid, _, problem) in enumerate(CASES) if problem and not found[f"c{index + 1:02d}"]
    ]
    alarms = {
        cid: found[f"c{i + 1:02d}"]
        for i, (cid, _, problem) in enumerate(CASES)
        if not problem and found[f"c{i + 1:02d}"]
    }
    assert missed == []
    assert alarms == {
        "widen-varchar": ["changing-column-type"],
        "get-bind-batched-backfill": ["unrenderable-revision"],
    }
