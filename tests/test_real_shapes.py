"""Alembic projects in the shapes public projects have, each checked as a new user would.

Each test writes a small project in the shape of a kind of public project (the docstring
says which) and asserts the verdict of ``schema-warden check``: its exit code and the
finding it names, or none.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixture_project import READINGS_MODELS, READINGS_REVISIONS, Rev, make_project, write_revision
from schema_warden.commands import check

REPO_ROOT = Path(__file__).resolve().parent.parent


def _check(ini: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = check.main(["--config", str(ini), "--no-cache", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


ENGINE_STYLE_ENV = """\
from alembic import context
from sqlalchemy import engine_from_config, pool

from fixture_app.models import metadata

config = context.config


def run_migrations_online():
    connectable = context.config.attributes.get("connection", None)
    if connectable is None:
        connectable = engine_from_config(
            config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
        )
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
"""


def test_engine_style_env_py(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """pytest-alembic's documented env.py: ``config.attributes["connection"]`` is taken for an
    Engine and ``connectable.connect()`` is called on it."""
    ini = make_project(
        tmp_path, models=READINGS_MODELS, revisions=READINGS_REVISIONS, env_py=ENGINE_STYLE_ENV
    )
    code, out = _check(ini, capsys)
    assert code == 0, out
    assert "ok   stairway: 0002" in out and "ok   round-trip" in out


def test_merge_and_data_only_revisions_need_no_downgrade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A branched history joined by ``alembic merge`` (empty upgrade and downgrade) and a
    data-only revision whose downgrade is ``pass``, as long-lived web apps have."""
    revisions = [
        READINGS_REVISIONS[0],
        Rev(
            "0002a",
            "0001",
            'op.add_column("readings", sa.Column("device", sa.String(32)))',
            'op.drop_column("readings", "device")',
            "add device",
        ),
        Rev("0002b", "0001", 'op.execute("UPDATE readings SET value = 0 WHERE value < 0")', "pass", "clamp"),
        Rev("0003", ("0002a", "0002b"), "pass", "pass", "merge heads"),
    ]
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=revisions)
    code, out = _check(ini, capsys)
    assert code == 0, out
    complete = "upgrade changes no schema, so its empty downgrade is complete"
    assert f"ok   stairway: 0003 (merge heads): {complete}" in out
    assert "ok   stairway: 0002b (clamp): upgrade changes no schema" in out
    assert "downgrade not implemented" not in out and "downgrade is not implemented" not in out
    assert "ok   round-trip" in out


def test_empty_downgrade_of_a_schema_change_still_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The counterpart: a revision that adds a column and forgets its downgrade."""
    revisions = [
        READINGS_REVISIONS[0],
        Rev(
            "0002",
            "0001",
            'op.add_column("readings", sa.Column("device", sa.String(32)))',
            "pass",
            "add device",
        ),
    ]
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=revisions)
    code, out = _check(ini, capsys)
    assert code == 1
    assert "revision 0002" in out and "downgrade is not implemented (its body is pass)" in out


def test_project_with_its_own_hooks_and_database_packages(tmp_path: Path) -> None:
    """A web app whose top-level packages are named ``hooks`` (its webhooks) and ``database``
    (its models), the names the guard's wheel once installed: with schema-warden installed
    beside it, its env.py imports its own packages and the check passes."""
    root = tmp_path / "webapp"
    ini = make_project(root, models=READINGS_MODELS, revisions=READINGS_REVISIONS)
    (root / "database").mkdir()
    (root / "database" / "__init__.py").write_text("")
    (root / "database" / "models.py").write_text("from fixture_app.models import metadata  # noqa: F401\n")
    (root / "hooks").mkdir()
    (root / "hooks" / "__init__.py").write_text("")
    (root / "hooks" / "webhooks.py").write_text("TOPIC = 'readings'\n")
    env = root / "migrations" / "env.py"
    text = env.read_text().replace(
        "from fixture_app.models import metadata",
        "from database.models import metadata\nfrom hooks.webhooks import TOPIC\nassert TOPIC == 'readings'",
    )
    env.write_text(text)
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "schema_warden", "check", "--config", str(ini), "--no-cache"],
        cwd=root,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   drift" in done.stdout
    # the guard itself is importable only as schema_warden
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import hooks.webhooks, database.models; print(hooks.__file__, database.__file__)",
        ],
        cwd=root,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert str(root) in probe.stdout and str(REPO_ROOT) not in probe.stdout


def test_script_location_in_package_form_with_several_colons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server package that ships its migrations inside itself (``pkg:server:database:_migrations``,
    as notebook and workflow servers do): every colon after the first is a path part."""
    root = tmp_path / "srv"
    ini = make_project(root, models=READINGS_MODELS, revisions=READINGS_REVISIONS)
    inner = root / "srvpkg" / "server" / "database"
    inner.mkdir(parents=True)
    for directory in (root / "srvpkg", root / "srvpkg" / "server", inner):
        (directory / "__init__.py").write_text("")
    (root / "migrations").rename(inner / "_migrations")
    text = ini.read_text().replace(
        "script_location = %(here)s/migrations", "script_location = srvpkg:server:database:_migrations"
    )
    ini.write_text(text)
    sys.path.insert(0, str(root))
    try:
        code, out = _check(ini, capsys)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "srvpkg" or m.startswith("srvpkg.")]:
            del sys.modules[name]
    assert code == 0, out
    assert "ok   stairway: 0002" in out


TWO_HEADS = [
    READINGS_REVISIONS[0],
    Rev(
        "0002",
        "0001",
        'op.add_column("readings", sa.Column("device", sa.String(32)))',
        'op.drop_column("readings", "device")',
        "add device",
    ),
    Rev(
        "1001",
        None,
        'op.create_table("audit", sa.Column("id", sa.Integer, primary_key=True))',
        'op.drop_table("audit")',
        "audit branch",
        filename="1001_audit.py",
    ),
]
AUDIT_MODELS = (
    READINGS_MODELS + 'audit = sa.Table("audit", metadata, sa.Column("id", sa.Integer, primary_key=True))\n'
)


def test_two_heads_by_design(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A workflow engine's history with an independent branch (two heads on purpose)."""
    ini = make_project(tmp_path, models=AUDIT_MODELS, revisions=TWO_HEADS)
    code, out = _check(ini, capsys)
    assert code == 2 and "2 heads" in out
    (tmp_path / "pyproject.toml").write_text("[tool.schema-warden]\nmultiple-heads = true\n")
    code, out = _check(ini, capsys)
    assert code == 0, out
    assert "ok   stairway: 1001" in out and "ok   stairway: 0002" in out and "ok   round-trip" in out


def test_minimum_downgrade_revision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An ML tracking server's history whose oldest revision cannot be downgraded (its
    downgrade raises): downgrades are proven down to the minimum revision only."""
    first = Rev(
        "0001",
        None,
        READINGS_REVISIONS[0].upgrade,
        'raise NotImplementedError("the initial schema cannot be downgraded")',
        "create readings",
    )
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=[first, READINGS_REVISIONS[1]])
    code, out = _check(ini, capsys)
    assert code == 1 and "revision 0001" in out and "NotImplementedError" in out
    (tmp_path / "pyproject.toml").write_text('[tool.schema-warden]\nminimum-downgrade-revision = "0001"\n')
    code, out = _check(ini, capsys)
    assert code == 0, out
    assert (
        "note stairway: 0001 (create readings): upgrade; downgrade not proven (minimum-downgrade-revision"
        in out
    )
    assert "ok   stairway: 0002" in out
    assert "ok   round-trip: upgrade head, downgrade to 0001 (nothing left), upgrade head" in out


def test_version_table_in_its_own_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A multi-tenant app that keeps Alembic's version table in a schema of its own
    (``version_table_schema="meta"`` in env.py); the schema is not made by any revision."""
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=READINGS_REVISIONS)
    env = tmp_path / "migrations" / "env.py"
    env.write_text(
        env.read_text().replace(
            "context.configure(connection=connectable, target_metadata=target_metadata)",
            "context.configure(connection=connectable, target_metadata=target_metadata, "
            'version_table_schema="meta")',
        )
    )
    code, out = _check(ini, capsys)
    assert code == 0, out
    assert "ok   round-trip" in out and "ok   drift" in out


def test_models_env_py_does_not_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A notebook server whose env.py imports only its Base; the model modules register their
    tables when the app imports them, which a migration run never does."""
    root = tmp_path / "nb"
    ini = make_project(root, models="", revisions=READINGS_REVISIONS)
    (root / "fixture_app" / "tables.py").write_text(
        "import sqlalchemy as sa\nfrom fixture_app.models import metadata\n\n" + READINGS_MODELS
    )
    code, out = _check(ini, capsys)
    assert code == 1 and "readings" in out
    (root / "pyproject.toml").write_text('[tool.schema-warden]\nmodels = ["fixture_app.tables"]\n')
    code, out = _check(ini, capsys)
    assert code == 0, out
    assert "ok   drift" in out


def test_versions_directory_chosen_at_run_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An app with a versions directory per dialect, chosen in env.py at run time
    (``versions/postgresql/``); alembic.ini names none of them."""
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=READINGS_REVISIONS)
    versions = tmp_path / "migrations" / "versions"
    dialect_dir = versions / "postgresql"
    dialect_dir.mkdir()
    for path in versions.glob("*.py"):
        path.rename(dialect_dir / path.name)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.schema-warden]\nversion-locations = ["migrations/versions/postgresql"]\n'
    )
    code, out = _check(ini, capsys)
    assert code == 0, out
    assert "ok   stairway: 0002" in out


def test_alembic_ini_in_backend_run_from_the_repository_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FastAPI full-stack template: ``backend/alembic.ini`` with ``script_location = app/alembic``
    and ``prepend_sys_path = .`` (both relative to ``backend/``, where its developers run
    Alembic), models in ``backend/app/models.py``; the pre-commit hook runs from the root."""
    backend = tmp_path / "repo" / "backend"
    ini = make_project(backend, models=READINGS_MODELS, revisions=READINGS_REVISIONS, package="app")
    (backend / "app" / "alembic").parent.mkdir(exist_ok=True)
    (backend / "migrations").rename(backend / "app" / "alembic")
    text = ini.read_text().replace("script_location = %(here)s/migrations", "script_location = app/alembic")
    ini.write_text(text.replace("prepend_sys_path = %(here)s", "prepend_sys_path = ."))
    monkeypatch.chdir(tmp_path / "repo")
    code = check.main(["--config", "backend/alembic.ini", "--no-cache"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ok   stairway: 0002" in out and "ok   drift" in out
    assert Path.cwd() == tmp_path / "repo"


ANYIO_ENV = """\
import os

import anyio.from_thread
from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from fixture_app.models import metadata

config = context.config


def do_run_migrations(connection):
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations():
    url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+asyncpg://", 1)
    connectable = create_async_engine(url, poolclass=pool.NullPool)
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await connectable.dispose()


# the app runs its migrations from a worker thread of its event loop (a startup hook)
anyio.from_thread.run(run_async_migrations)
"""


def test_env_py_that_needs_an_anyio_worker_thread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An async web app (Starlette/FastAPI style) whose env.py calls ``anyio.from_thread.run``,
    which only works in a thread AnyIO started: the guard runs it in one, with no setting."""
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=READINGS_REVISIONS, env_py=ANYIO_ENV)
    code, out = _check(ini, capsys)
    assert code == 0, out
    assert "ok   stairway: 0002" in out and "ok   round-trip" in out and "ok   drift" in out


def test_env_py_whose_helper_needs_an_anyio_worker_thread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same app with the bridge in its own helper module (``app/runner.py``): env.py's text
    does not show it; AnyIO's error, raised before any step ran, does."""
    helper = "import anyio.from_thread\n\n\ndef run_in_loop(fn):\n    return anyio.from_thread.run(fn)\n"
    env_py = ANYIO_ENV.replace("import anyio.from_thread\n", "from fixture_app.runner import run_in_loop\n")
    env_py = env_py.replace(
        "anyio.from_thread.run(run_async_migrations)", "run_in_loop(run_async_migrations)"
    )
    assert "from_thread" not in env_py
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=READINGS_REVISIONS, env_py=env_py)
    (tmp_path / "fixture_app" / "runner.py").write_text(helper)
    code, out = _check(ini, capsys)
    assert code == 0, out
    assert "ok   stairway: 0002" in out and "ok   drift" in out


# a history that starts from a schema the app made with create_all: its first revision
# alters a table no revision creates
FROM_CREATE_ALL = [
    Rev(
        "0001",
        None,
        'op.add_column("readings", sa.Column("device", sa.String(32)))',
        'op.drop_column("readings", "device")',
        "add device",
    ),
]
OLD_SCHEMA = """\
import sqlalchemy as sa

metadata = sa.MetaData()
readings = sa.Table(
    "readings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
)
"""


def test_history_that_starts_from_create_all_needs_a_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A workflow engine whose first install runs create_all: replayed from empty, its first
    revision fails; with the schema it expects as ``baseline`` the history is proven."""
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=FROM_CREATE_ALL)
    (tmp_path / "fixture_app" / "legacy.py").write_text(OLD_SCHEMA)
    code, out = _check(ini, capsys)
    assert code == 1 and 'relation "readings" does not exist' in out
    (tmp_path / "pyproject.toml").write_text(
        '[tool.schema-warden]\nbaseline = "fixture_app.legacy:metadata"\n'
    )
    code, out = _check(ini, capsys)
    assert code == 0, out
    assert "note baseline: the baseline schema was created first" in out
    assert "ok   stairway: 0001 (add device): upgrade, rows kept, downgrade (no trace)" in out
    assert "ok   round-trip: upgrade head, downgrade base (nothing left), upgrade head" in out


def test_baseline_from_a_sql_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same history whose starting schema is kept as a SQL dump beside the project."""
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=FROM_CREATE_ALL)
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "schema.sql").write_text(
        "CREATE TABLE readings (id serial PRIMARY KEY, value double precision NOT NULL);\n"
    )
    (tmp_path / "pyproject.toml").write_text('[tool.schema-warden]\nbaseline = "db/schema.sql"\n')
    code, out = _check(ini, capsys)
    assert code == 0, out
    assert "ok   stairway: 0001" in out and "ok   drift" in out


def test_baseline_stamped_at_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A notebook server's fresh install: create_all of today's models, then ``alembic stamp
    head``; the guard proves each downgrade from there and the way back up."""
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=FROM_CREATE_ALL)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.schema-warden]\nbaseline = "fixture_app.models:metadata"\nbaseline-revision = "head"\n'
    )
    code, out = _check(ini, capsys)
    assert code == 0, out
    assert "ok   stairway: 0001 (add device): downgrade, upgrade (same schema), from the baseline" in out
    assert "ok   round-trip: downgrade from the stamped baseline, upgrade heads (same schema)" in out
    assert "ok   drift" in out


def test_baseline_stamped_at_head_finds_a_downgrade_that_loses_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The counterpart: a downgrade that drops more than its upgrade added."""
    broken = [
        Rev(
            "0001",
            None,
            'op.add_column("readings", sa.Column("device", sa.String(32)))',
            'op.drop_column("readings", "device")\nop.drop_column("readings", "value")',
            "add device",
        )
    ]
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=broken)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.schema-warden]\nbaseline = "fixture_app.models:metadata"\nbaseline-revision = "head"\n'
    )
    code, out = _check(ini, capsys)
    assert code == 1, out
    assert "revision 0001" in out and "readings.value" in out


def test_minimum_downgrade_revision_is_part_of_the_proofs_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Proofs made while downgrades below the minimum were skipped are not reused once the
    setting is removed: the broken downgrade is found again."""
    first = Rev("0001", None, READINGS_REVISIONS[0].upgrade, 'raise NotImplementedError("no")', "create")
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=[first, READINGS_REVISIONS[1]])
    (tmp_path / "pyproject.toml").write_text('[tool.schema-warden]\nminimum-downgrade-revision = "0001"\n')
    assert check.main(["--config", str(ini)]) == 0
    (tmp_path / "pyproject.toml").write_text("[tool.schema-warden]\n")
    assert check.main(["--config", str(ini)]) == 1
    assert "NotImplementedError" in capsys.readouterr().out


def test_accepting_the_findings_of_an_old_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A long-lived app whose applied revision 0002 forgot its downgrade years ago: the team
    accepts that finding once; later runs fail only on new problems, and a fixed finding's
    entry is named stale."""
    revisions = [
        READINGS_REVISIONS[0],
        Rev(
            "0002",
            "0001",
            'op.add_column("readings", sa.Column("device", sa.String(32)))',
            "pass",
            "add device",
        ),
    ]
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=revisions)
    code, out = _check(ini, capsys, "--accept")
    assert code == 0, out
    accepted_file = tmp_path / "schema-warden-accepted.toml"
    text = accepted_file.read_text()
    assert 'check = "stairway"' in text and 'revision = "0002"' in text and "fingerprint = " in text
    assert "1 finding(s) written to" in out

    code, out = _check(ini, capsys)
    assert code == 0, out
    assert "note stairway: accepted (" in out and "downgrade is not implemented" in out

    # a new problem still fails
    write_revision(
        tmp_path,
        Rev(
            "0003", "0002", 'op.create_table("t", sa.Column("id", sa.Integer))', 'op.execute("SELECT 1")', "t"
        ),
    )
    code, out = _check(ini, capsys)
    assert code == 1 and "revision 0003" in out

    # fixed: the entry is stale
    (tmp_path / "migrations" / "versions" / "0003_t.py").unlink()
    write_revision(
        tmp_path,
        Rev("0002", "0001", revisions[1].upgrade, 'op.drop_column("readings", "device")', "add device"),
    )
    code, out = _check(ini, capsys)
    assert code == 0, out
    assert "note accepted: stale entry in" in out


def test_generated_rows_never_invent_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A data migration that asserts what the app's own data looks like (a row-count check and a
    JSON cast of a text column), as workflow engines write them: it fails on generated rows,
    passes on empty tables; the check goes on and says so."""
    revisions = [
        READINGS_REVISIONS[0],
        Rev(
            "0002",
            "0001",
            """
            op.add_column("readings", sa.Column("device", sa.String(32)))
            bind = op.get_bind()
            count = bind.execute(sa.text("SELECT count(*) FROM readings")).scalar()
            if count:
                raise RuntimeError(f"expected a fresh install, found {count} readings")
            """,
            'op.drop_column("readings", "device")',
            "add device",
        ),
    ]
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=revisions)
    code, out = _check(ini, capsys)
    assert code == 0, out
    assert (
        "note stairway: revision 0002" in out and "rejects the generated rows: RuntimeError: expected" in out
    )
    assert "proven without data" in out and "ok   round-trip" in out
    (tmp_path / "pyproject.toml").write_text('[tool.schema-warden]\nno-data = ["0002"]\n')
    code, out = _check(ini, capsys)
    assert code == 0, out
    assert "proven on empty tables (no-data in [tool.schema-warden])" in out


def test_a_not_null_column_without_default_still_fails_on_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The counterpart: NOT NULL without a default fails on every table with rows; not excused."""
    revisions = [
        READINGS_REVISIONS[0],
        Rev(
            "0002",
            "0001",
            'op.add_column("readings", sa.Column("device", sa.String(32), nullable=False))',
            'op.drop_column("readings", "device")',
            "add device",
        ),
    ]
    ini = make_project(
        tmp_path,
        models=READINGS_MODELS.replace("sa.String(32))", "sa.String(32), nullable=False)"),
        revisions=revisions,
    )
    code, out = _check(ini, capsys)
    assert code == 1, out
    assert "FAIL stairway: revision 0002" in out and "upgrade failed" in out and "server default" in out


def test_check_trace_lists_what_each_upgrade_locked_and_rewrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An IoT history that widens a varchar (no rewrite) and turns an integer column into a
    bigint (rewrite under ACCESS EXCLUSIVE) while the tables hold rows: --trace tells them apart."""
    models = READINGS_MODELS.replace(
        'sa.Column("device", sa.String(32))', 'sa.Column("device", sa.String(64))'
    )
    models = models.replace("\n)\n", '\n    sa.Column("total", sa.BigInteger),\n)\n', 1)
    revisions = [
        *READINGS_REVISIONS,
        Rev(
            "0003",
            "0002",
            'op.alter_column("readings", "device", type_=sa.String(64), existing_type=sa.String(32))',
            'op.alter_column("readings", "device", type_=sa.String(32), existing_type=sa.String(64))',
            "widen device",
        ),
        Rev("0004", "0003", 'op.add_column("readings", sa.Column("total", sa.Integer))',
            'op.drop_column("readings", "total")', "add total"),
        Rev(
            "0005",
            "0004",
            'op.alter_column("readings", "total", type_=sa.BigInteger, existing_type=sa.Integer)',
            'op.alter_column("readings", "total", type_=sa.Integer, existing_type=sa.BigInteger)',
            "bigint totals",
        ),
    ]  # fmt: skip
    ini = make_project(tmp_path, models=models, revisions=revisions)
    code, out = _check(ini, capsys, "--trace")
    assert code == 0, out
    traced = [line for line in out.splitlines() if line.startswith("note trace:")]
    assert any(
        line.startswith("note trace: 0005: ALTER TABLE readings ALTER COLUMN total TYPE BIGINT")
        and "ACCESS EXCLUSIVE on readings" in line
        and "rewritten" in line
        and "ms with the generated rows" in line
        for line in traced
    ), traced
    # widening takes the lock too, briefly, but rewrites nothing
    widened = [line for line in traced if line.startswith("note trace: 0003:")]
    assert widened and all("rewritten" not in line for line in widened), traced


def test_a_schema_setting_the_database_does_not_have_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``schemas = ["pubic"]`` (a typo) would compare nothing: a model column with no migration
    must not pass as "ok"."""
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=READINGS_REVISIONS[:1])
    (tmp_path / "pyproject.toml").write_text('[tool.schema-warden]\nschemas = ["pubic"]\n')
    code, out = _check(ini, capsys)
    assert code == 1, out
    assert "FAIL schemas: [tool.schema-warden] schemas names 'pubic', which the migrated database" in out
    assert "(did you mean 'public'?)" in out


def test_the_revisions_below_a_failure_stay_proven(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A long-lived app with one broken downgrade in the middle of its history: every commit
    re-proved the whole history while the failure stood. The revisions below it now stay
    proven; fixing it re-proves from there."""
    revisions = [
        READINGS_REVISIONS[0],
        Rev("0002", "0001", 'op.add_column("readings", sa.Column("a", sa.Integer))',
            'op.drop_column("readings", "a")', "add a"),
        Rev("0003", "0002", 'op.add_column("readings", sa.Column("b", sa.Integer))',
            'op.execute("SELECT 1")', "add b"),
        Rev("0004", "0003", 'op.add_column("readings", sa.Column("c", sa.Integer))',
            'op.drop_column("readings", "c")', "add c"),
    ]  # fmt: skip
    models = READINGS_MODELS.replace(
        'sa.Column("device", sa.String(32)),',
        'sa.Column("a", sa.Integer), sa.Column("b", sa.Integer), sa.Column("c", sa.Integer),',
    )
    ini = make_project(tmp_path, models=models, revisions=revisions)
    assert check.main(["--config", str(ini)]) == 1
    out = capsys.readouterr().out
    assert "revision 0003" in out and "downgrade leaves column readings.b behind" in out
    assert "note round-trip: not past the first failure (0003); below it:" in out
    assert "0001–0002, 2 revisions kept as proven, the next run starts there" in out

    assert check.main(["--config", str(ini)]) == 1
    out = capsys.readouterr().out
    assert "ok   stairway: 0001–0002, 2 revisions proven by an earlier run" in out
    assert "stairway: 0001 (" not in out and "revision 0003" in out

    write_revision(
        tmp_path, Rev("0003", "0002", revisions[2].upgrade, 'op.drop_column("readings", "b")', "add b")
    )
    assert check.main(["--config", str(ini)]) == 0
    out = capsys.readouterr().out
    assert "ok   stairway: 0001–0002, 2 revisions proven by an earlier run" in out
    assert "ok   stairway: 0003 (add b)" in out and "ok   stairway: 0004 (add c)" in out
    assert "ok   round-trip: upgrade head, downgrade to 0002 (nothing left), upgrade head" in out
