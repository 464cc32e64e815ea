"""Finding and loading Alembic projects: settings, bad projects, isolated imports, env guard."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fixture_project import READINGS_MODELS, Rev, make_project, readings_project, write_models
from schema_warden.errors import ProjectError
from schema_warden.project.history import downgrade_is_empty, static_revision
from schema_warden.project.imports import isolated_imports
from schema_warden.project.loader import loaded_project, open_project
from schema_warden.project.settings import find_config, load_settings
from schema_warden.server.postgres import Server
from sqlalchemy import create_engine, make_url, pool

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_settings_defaults_without_pyproject(tmp_path: Path) -> None:
    settings = load_settings(cwd=tmp_path)
    assert settings.alembic_config == tmp_path.resolve() / "alembic.ini"
    assert settings.exclude_tables == frozenset({"_prisma_migrations"})
    assert settings.schemas == ("public",)
    assert settings.postgres_version is None
    assert settings.irreversible == frozenset()


def test_settings_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.schema-warden]\n"
        'alembic-config = "db/alembic.ini"\n'
        'exclude-tables = ["legacy", "_prisma_migrations"]\n'
        'schemas = ["public", "iot"]\n'
        "postgres-version = 16\n"
        'irreversible = ["0005"]\n'
        "[tool.schema-warden.lint]\n"
        'ignore = ["prefer-bigint"]\n'
    )
    settings = load_settings(cwd=tmp_path)
    assert settings.alembic_config == tmp_path.resolve() / "db" / "alembic.ini"
    assert settings.exclude_tables == frozenset({"legacy", "_prisma_migrations"})
    assert settings.schemas == ("public", "iot")
    assert settings.postgres_version == 16
    assert settings.irreversible == frozenset({"0005"})
    assert settings.lint == {"ignore": ["prefer-bigint"]}
    # an explicit --config wins over alembic-config
    assert load_settings("other.ini", cwd=tmp_path).alembic_config == tmp_path.resolve() / "other.ini"


def test_bad_setting_is_a_project_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.schema-warden]\npostgres-version = "sixteen"\n')
    with pytest.raises(ProjectError, match="postgres-version must be a number"):
        load_settings(cwd=tmp_path)


def test_bundled_project_settings_and_revisions() -> None:
    with loaded_project(cwd=REPO_ROOT) as project:
        assert project.settings.postgres_version == 17
        assert [r.revision for r in project.revisions()] == ["0001", "0002"]
        assert project.is_bundled_layout()


def test_no_alembic_ini(tmp_path: Path) -> None:
    with pytest.raises(ProjectError) as err:
        find_config(cwd=tmp_path)
    assert err.value.message.startswith(f"no alembic.ini at {tmp_path.resolve() / 'alembic.ini'}")
    assert "--config" in err.value.message


def test_missing_script_directory(tmp_path: Path) -> None:
    ini = readings_project(tmp_path)
    ini.write_text(ini.read_text().replace("%(here)s/migrations", "%(here)s/nowhere"))
    with pytest.raises(ProjectError) as err, loaded_project(ini):
        pass
    assert "script_location '%(here)s/nowhere' does not exist" in err.value.message
    assert "\n" not in err.value.message


def test_migration_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    ini = readings_project(tmp_path)
    path = tmp_path / "migrations" / "versions" / "0001_create_readings.py"
    path.write_text(path.read_text().replace("def downgrade() -> None:", "def downgrade() -> None"))
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t.startswith("def downgrade"))
    with pytest.raises(ProjectError) as err, loaded_project(ini):
        pass
    assert err.value.message.startswith(
        f"migrations/versions/0001_create_readings.py:{line}: syntax error in migration"
    )


def test_env_py_raising_is_named_with_user_frames_only(
    tmp_path: Path, fresh_db: str, pg_server: Server
) -> None:
    ini = readings_project(tmp_path)
    env = tmp_path / "migrations" / "env.py"
    env.write_text(env.read_text().replace("config = context.config", "config = context.config\n1 / 0"))
    engine = create_engine(pg_server.url(fresh_db), poolclass=pool.NullPool)
    try:
        with loaded_project(ini) as project, engine.connect() as conn, pytest.raises(ProjectError) as err:
            project.environment(conn)
    finally:
        engine.dispose()
    assert err.value.message == "migrations/env.py raised ZeroDivisionError: division by zero"
    assert 'File "migrations/env.py", line' in err.value.detail
    assert "site-packages" not in err.value.detail and "hooks/" not in err.value.detail


def test_model_syntax_error_is_named(tmp_path: Path, fresh_db: str, pg_server: Server) -> None:
    ini = readings_project(tmp_path)
    models = write_models(tmp_path, READINGS_MODELS + "\nbroken = (\n")
    engine = create_engine(pg_server.url(fresh_db), poolclass=pool.NullPool)
    try:
        with loaded_project(ini) as project, engine.connect() as conn, pytest.raises(ProjectError) as err:
            project.environment(conn)
    finally:
        engine.dispose()
    assert err.value.message.startswith("fixture_app/models.py:")
    assert "syntax error in a module env.py imports" in err.value.message
    assert models.exists()


def test_isolated_imports_keep_same_named_projects_apart(
    tmp_path: Path, fresh_db: str, pg_server: Server
) -> None:
    first = make_project(tmp_path / "a", models='sa.Table("alpha", metadata, sa.Column("id", sa.Integer))')
    second = make_project(tmp_path / "b", models='sa.Table("beta", metadata, sa.Column("id", sa.Integer))')
    before = set(sys.modules)
    path_before = list(sys.path)
    engine = create_engine(pg_server.url(fresh_db), poolclass=pool.NullPool)
    tables = []
    try:
        for ini in (first, second, first):
            with loaded_project(ini) as project, engine.connect() as conn:
                tables.append(sorted(project.metadata(conn).tables))
    finally:
        engine.dispose()
    assert tables == [["alpha"], ["beta"], ["alpha"]]
    assert not any(name.startswith("fixture_app") for name in set(sys.modules) - before)
    assert sys.path == path_before


def test_env_sees_the_throwaway_database_not_database_url(
    tmp_path: Path, fresh_db: str, pg_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:secret@production.example/db")
    monkeypatch.setenv("PGPASSWORD", "secret")
    ini = readings_project(tmp_path)
    env = tmp_path / "migrations" / "env.py"
    env.write_text(
        env.read_text().replace(
            "config = context.config",
            "import os\nconfig = context.config\n"
            "os.environ['SEEN'] = os.environ['DATABASE_URL'] + ' ' + config.get_main_option('sqlalchemy.url')"
            " + ' ' + str(os.environ.get('PGPASSWORD'))",
        )
    )
    engine = create_engine(pg_server.url(fresh_db), poolclass=pool.NullPool)
    try:
        with loaded_project(ini) as project, engine.connect() as conn:
            project.environment(conn)
    finally:
        engine.dispose()
    database_url, sqlalchemy_url, password = os.environ.pop("SEEN").split()
    for url in (make_url(database_url), make_url(sqlalchemy_url)):
        assert (url.database, url.query["host"]) == (fresh_db, str(pg_server.socket_dir))
    assert password == "None"
    assert os.environ["DATABASE_URL"] == "postgresql://user:secret@production.example/db"
    assert os.environ["PGPASSWORD"] == "secret"


@pytest.mark.parametrize(
    ("body", "empty"),
    [("pass", True), ('"""Irreversible."""\n    ...', True), ('op.drop_table("t")', False)],
)
def test_downgrade_is_empty(tmp_path: Path, body: str, empty: bool) -> None:
    path = tmp_path / "r.py"
    path.write_text(f"def upgrade():\n    pass\n\n\ndef downgrade():\n    {body}\n")
    assert downgrade_is_empty(path) is empty


def test_isolated_imports_leave_installed_packages_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a virtualenv inside the project's directory, as many developers keep one
    site = tmp_path / ".venv" / "lib" / "python3" / "site-packages"
    (site / "fakelib_sw").mkdir(parents=True)
    (site / "fakelib_sw" / "__init__.py").write_text("VALUE = 1\n")
    (tmp_path / "json").mkdir()  # a project directory named like a stdlib module
    monkeypatch.syspath_prepend(str(site))
    import json

    import fakelib_sw  # type: ignore[import-not-found]

    try:
        with isolated_imports(tmp_path):
            assert sys.modules["fakelib_sw"] is fakelib_sw
            assert sys.modules["json"] is json
    finally:
        sys.modules.pop("fakelib_sw", None)


def test_isolated_imports_see_an_edit_made_within_the_same_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a .pyc is trusted by its source's mtime in whole seconds and its size: an edit of the
    # same size in the same second must still be seen, and the guard writes no __pycache__
    module = tmp_path / "models_sw_edit.py"
    module.write_text("LENGTH = 32\n")
    stamp = module.stat().st_mtime_ns
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as without PYTHONDONTWRITEBYTECODE
    with isolated_imports(tmp_path):
        import models_sw_edit  # type: ignore[import-not-found]

        assert models_sw_edit.LENGTH == 32
    module.write_text("LENGTH = 64\n")
    os.utime(module, ns=(stamp, stamp))
    with isolated_imports(tmp_path):
        import models_sw_edit  # type: ignore[import-not-found]

        assert models_sw_edit.LENGTH == 64
    assert not (tmp_path / "__pycache__").exists()


def _count_env_runs(ini: Path) -> None:
    env = ini.parent / "migrations" / "env.py"
    env.write_text(
        env.read_text().replace(
            "config = context.config",
            "config = context.config\nos.environ['ENV_RUNS'] = str(int(os.environ['ENV_RUNS']) + 1)",
        )
    )


def _stairway_steps(ini: Path, url: str) -> list[str]:
    """Every revision up, down and up again through Project.step; the versions seen after each."""
    engine = create_engine(url, poolclass=pool.NullPool)
    seen = []
    try:
        with loaded_project(ini) as project, engine.connect() as conn:
            for revision in project.revisions():
                for downgrade in (False, True, False):
                    project.step(conn, revision, downgrade=downgrade)
                    conn.commit()
                    seen.append(
                        conn.exec_driver_sql(
                            "SELECT string_agg(version_num, ',') FROM alembic_version"
                        ).scalar()
                    )
                    conn.rollback()
    finally:
        engine.dispose()
    return seen


def test_env_py_runs_once_per_connection_for_many_steps(
    tmp_path: Path, fresh_db: str, pg_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENV_RUNS", "0")
    ini = readings_project(tmp_path)
    _count_env_runs(ini)
    seen = _stairway_steps(ini, pg_server.url(fresh_db))
    assert os.environ["ENV_RUNS"] == "1"
    assert seen == ["0001", None, "0001", "0002", "0001", "0002"]


def test_env_py_with_its_own_engine_gets_the_guards_connection_and_runs_once(
    tmp_path: Path, fresh_db: str, pg_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENV_RUNS", "0")
    ini = readings_project(tmp_path, env_uses_injected_connection=False)
    _count_env_runs(ini)
    seen = _stairway_steps(ini, pg_server.url(fresh_db))
    # its engine lends the guard's connection (project/routing.py): driven again like the plain env.py
    assert os.environ["ENV_RUNS"] == "1"
    assert seen == ["0001", None, "0001", "0002", "0001", "0002"]


def test_the_version_table_is_read_once_then_followed_and_read_again_after_a_rollback(
    tmp_path: Path, fresh_db: str, pg_server: Server
) -> None:
    from schema_warden.proof.stairway import apply
    from sqlalchemy import event

    ini = make_project(
        tmp_path,
        revisions=[
            Rev(
                "0001",
                None,
                upgrade='op.create_table("readings", sa.Column("id", sa.Integer, primary_key=True))',
                downgrade='op.drop_table("readings")',
            ),
            Rev(
                "0002",
                "0001",
                upgrade='op.add_column("readings", sa.Column("c2", sa.Integer))\nop.execute("SELECT 1/0")',
                downgrade='op.drop_column("readings", "c2")',
            ),
            Rev(  # on a branch of its own: its commit fails (a deferred foreign key)
                "0003",
                "0001",
                upgrade=(
                    'op.execute("CREATE TABLE notes (reading_id integer REFERENCES readings '
                    'DEFERRABLE INITIALLY DEFERRED)")\nop.execute("INSERT INTO notes VALUES (7)")'
                ),
                downgrade='op.drop_table("notes")',
            ),
        ],
    )
    engine = create_engine(pg_server.url(fresh_db), poolclass=pool.NullPool)
    reads: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "version_num" in statement:
            reads.append(statement)

    def version(conn: object) -> str | None:
        value = conn.exec_driver_sql("SELECT string_agg(version_num, ',') FROM alembic_version").scalar()  # type: ignore[attr-defined]
        conn.rollback()  # type: ignore[attr-defined]
        return value

    try:
        with loaded_project(ini) as project, engine.connect() as conn:
            by_id = {revision.revision: revision for revision in project.revisions()}
            first, second, third = by_id["0001"], by_id["0002"], by_id["0003"]
            for downgrade in (False, True, False, True, False):  # env.py's run reads, then followed
                assert apply(project, conn, first, downgrade=downgrade) is None
            assert version(conn) == "0001"
            # the first step (env.py's run) finds no version table; the next reads it once
            assert len(reads) == 1 + 1  # and version()
            error = apply(project, conn, second)  # fails and is rolled back: read again
            assert error is not None and "division by zero" in error.message
            assert version(conn) == "0001"
            conn.exec_driver_sql("SELECT 1")  # in the caller's transaction, which it rolls back:
            project.step(conn, first, downgrade=True)
            conn.rollback()  # read again
            assert version(conn) == "0001"
            assert apply(project, conn, first, downgrade=True) is None
            assert apply(project, conn, first) is None
            assert version(conn) == "0001"
            assert len(reads) == 2 + 1 + 1 + 1 + 1 + 1  # one read after each rollback
            # its steps ran, its commit failed: in Alembic's own transaction, then in the caller's
            error = apply(project, conn, third)
            assert error is not None and "violates foreign key constraint" in error.message
            assert "(raised when its transaction was committed" in error.details[-1]
            assert version(conn) == "0001"
            conn.exec_driver_sql("SELECT 1")
            error = apply(project, conn, third)
            assert error is not None and "violates foreign key constraint" in error.message
            assert version(conn) == "0001"
            assert apply(project, conn, first, downgrade=True) is None
            assert version(conn) is None
    finally:
        engine.dispose()


# --- lazily imported revision modules (open_project(lazy=True)) ------------------------------


def _column_revisions(count: int) -> list[Rev]:
    """A readings table, then a column per revision: ``count`` revisions 0001.. in a line."""
    revs = [
        Rev(
            "0001",
            None,
            upgrade='op.create_table("readings", sa.Column("id", sa.Integer, primary_key=True))',
            downgrade='op.drop_table("readings")',
            message="create readings",
        )
    ]
    for n in range(2, count + 1):
        revs.append(
            Rev(
                f"{n:04d}",
                f"{n - 1:04d}",
                upgrade=f'op.add_column("readings", sa.Column("c{n}", sa.Integer))',
                downgrade=f'op.drop_column("readings", "c{n}")',
                message=f"add c{n}\n\nA longer description of c{n}.",
            )
        )
    return revs


def _marking_project(root: Path, count: int = 6) -> tuple[Path, Path]:
    """A project whose revision files each append their id to a file when imported."""
    ini = make_project(root, revisions=_column_revisions(count))
    marker = root / "imported.txt"
    for path in sorted((root / "migrations" / "versions").glob("*.py")):
        text = path.read_text()
        mark = f"with open({str(marker)!r}, 'a') as _fh:\n    _fh.write(revision + '\\n')\n"
        text = text.replace("depends_on = None\n", f"depends_on = None\n\n{mark}")
        path.write_text(text)
    return ini, marker


def _imported(marker: Path) -> list[str]:
    return marker.read_text().split() if marker.exists() else []


def _described(project: object) -> list[tuple[object, ...]]:
    return [
        (
            r.revision,
            r.down_revision,
            r.branch_labels,
            r.dependencies,
            r.path,
            r.doc,
            r.longdoc,
            str(r),
            r.log_entry,
        )
        for r in project.revisions()  # type: ignore[attr-defined]
    ]


def test_lazy_project_opens_without_importing_revision_modules(tmp_path: Path) -> None:
    ini, marker = _marking_project(tmp_path)
    with loaded_project(ini, lazy=True) as project:
        assert project.lazy
        assert _imported(marker) == []
        lazy = _described(project)
        heads = project.script.get_heads()
        assert _imported(marker) == []  # ids, docs, history lines: all read statically
    with loaded_project(ini) as project:
        assert not project.lazy
        assert _imported(marker) == ["0001", "0002", "0003", "0004", "0005", "0006"]
        assert lazy == _described(project)
        assert heads == project.script.get_heads() == ["0006"]
    assert lazy[2][5:7] == (
        "add c3",
        "add c3\n\nA longer description of c3.\n\nRevision ID: 0003\nRevises: 0002",
    )


def test_lazy_revision_imports_on_first_use_only(tmp_path: Path, fresh_db: str, pg_server: Server) -> None:
    ini, marker = _marking_project(tmp_path)
    engine = create_engine(pg_server.url(fresh_db), poolclass=pool.NullPool)
    try:
        with loaded_project(ini, lazy=True) as project, engine.connect() as conn:
            revisions = project.revisions()
            assert callable(revisions[3].module.upgrade)
            assert _imported(marker) == ["0004"]
            assert revisions[3].module is revisions[3].module  # imported once
            project.migrate(conn, "0002")
            conn.commit()
            assert _imported(marker) == ["0004", "0001", "0002"]
            assert [r.module_loaded for r in revisions] == [True, True, False, True, False, False]
            columns = conn.exec_driver_sql(
                "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns"
                " WHERE table_name = 'readings'"
            ).scalar()
            assert columns == "c2,id"
            project.load_modules(after="0004")  # a database at 0004 still needs 0005 and 0006
            assert _imported(marker) == ["0004", "0001", "0002", "0005", "0006"]
            # the module is the one Alembic would load: its naming, its file, no bytecode written
            module = revisions[1].module
            assert module.__name__ == Path(revisions[1].path).name.replace(".", "_")
            assert module.__file__ == revisions[1].path
    finally:
        engine.dispose()
    assert not (tmp_path / "migrations" / "versions" / "__pycache__").exists()


def test_lazy_revision_imports_project_modules_through_prepend_sys_path(tmp_path: Path) -> None:
    ini = make_project(tmp_path, models="LENGTH = 42", revisions=_column_revisions(2))
    path = next((tmp_path / "migrations" / "versions").glob("0002_*.py"))
    path.write_text(
        path.read_text().replace(
            "from alembic import op\n", "from alembic import op\n\nfrom fixture_app import models\n"
        )
    )
    with loaded_project(ini, lazy=True) as project:
        assert project.lazy
        assert project.revisions()[1].module.models.LENGTH == 42
    assert "fixture_app" not in sys.modules  # still isolated


@pytest.mark.parametrize(
    "change",
    [
        ("revision = '0003'", "revision = '00' + '03'"),
        ("down_revision = '0002'", "down_revision = ('0002',) + ()"),
        ("branch_labels = None", "branch_labels = None\nif True:\n    branch_labels = ('x',)"),
        ("depends_on = None", "depends_on = None\nglobals()['depends_on'] = '0001'"),
        ("import sqlalchemy as sa", "import sqlalchemy as sa\nfrom os.path import *"),
        ("branch_labels = None", "branch_labels = None\nbranch_labels = None"),
        ("import sqlalchemy as sa", "import sqlalchemy as sa\nimport sqlalchemy as revision"),
    ],
    ids=["computed-id", "computed-down", "conditional", "globals", "star-import", "twice", "import-as"],
)
def test_not_statically_readable_revision_loads_the_project_eagerly(
    tmp_path: Path, change: tuple[str, str]
) -> None:
    ini, marker = _marking_project(tmp_path, count=4)
    path = next((tmp_path / "migrations" / "versions").glob("0003_*.py"))
    text = (
        path.read_text()
        .replace('revision = "0003"', "revision = '0003'")
        .replace('down_revision = "0002"', "down_revision = '0002'")
    )
    assert change[0] in text
    path.write_text(text.replace(change[0], change[1], 1))
    assert static_revision(path) is None
    with loaded_project(ini, lazy=True) as project:
        assert not project.lazy  # Alembic's own loading: every file imported
        assert sorted(_imported(marker)) == ["0001", "0002", "0003", "0004"]
        assert [r.revision for r in project.revisions()][-2:] == ["0003", "0004"]


def test_static_revision_reads_the_template_forms(tmp_path: Path) -> None:
    path = tmp_path / "abc_merge.py"
    path.write_text(
        '"""merge heads\n\nRevision ID: abc\n"""\n'
        "from typing import Sequence, Union\n\n"
        'revision: str = "abc"\n'
        'down_revision: Union[str, Sequence[str], None] = ("x1", "y2")\n'
        'branch_labels: Union[str, Sequence[str], None] = ["main"]\n'
        "\n\ndef upgrade() -> None:\n    revision = 'local'\n    exec_ = revision\n"
    )
    static = static_revision(path)
    assert static is not None
    assert (static.revision, static.down_revision, static.branch_labels, static.depends_on) == (
        "abc",
        ("x1", "y2"),
        ["main"],
        None,
    )
    assert static.docstring == "merge heads\n\nRevision ID: abc\n"
    path.write_text("revision = 'abc'\n")  # no down_revision: Alembic's own error, eagerly
    assert static_revision(path) is None


def _broken_project(root: Path) -> tuple[Path, Path]:
    ini, _marker = _marking_project(root, count=4)
    path = next((root / "migrations" / "versions").glob("0003_*.py"))
    path.write_text(
        path.read_text().replace("depends_on = None\n", "depends_on = None\nimport no_such_module_sw\n")
    )
    return ini, path


def test_broken_revision_gives_the_eager_project_error_when_loaded(
    tmp_path: Path, fresh_db: str, pg_server: Server
) -> None:
    ini, path = _broken_project(tmp_path)
    with pytest.raises(ProjectError) as eager, loaded_project(ini):
        pass
    expected = f"migrations/versions/{path.name} failed to import: ModuleNotFoundError: No module named"
    assert eager.value.message.startswith(expected)
    engine = create_engine(pg_server.url(fresh_db), poolclass=pool.NullPool)
    try:
        with loaded_project(ini, lazy=True) as project, engine.connect() as conn:
            assert project.lazy
            project.load_modules(project.revisions()[:2])  # the proven ones would not be loaded
            with pytest.raises(ProjectError) as lazy:
                project.load_modules(project.revisions()[2:])
            assert (lazy.value.message, lazy.value.detail) == (eager.value.message, eager.value.detail)
            with pytest.raises(ProjectError) as migrating:  # used without load_modules: the same error
                project.migrate(conn, "heads")
            assert migrating.value.message == eager.value.message
    finally:
        engine.dispose()


def _results(project: object, server: Server, database: str) -> list[tuple[object, ...]]:
    from schema_warden.commands.check import run_checks

    try:
        checks = run_checks(project, server, database=database, use_cache=False)  # type: ignore[arg-type]
    finally:
        server.drop_database(database)
        server.drop_database(f"{database}_models")
    return [(c.name, c.status, c.message, c.details) for c in checks]


@pytest.mark.parametrize("which", ["bundled", "fixture", "fixture-with-drift"])
def test_check_results_are_the_same_lazy_and_eager(tmp_path: Path, pg_server: Server, which: str) -> None:
    if which == "bundled":
        ini = REPO_ROOT / "alembic.ini"
    else:
        ini = make_project(tmp_path, models=READINGS_MODELS, revisions=_column_revisions(4))
        if which == "fixture":
            columns = ", ".join(f'sa.Column("c{n}", sa.Integer)' for n in range(2, 5))
            write_models(
                tmp_path,
                f'sa.Table("readings", metadata, sa.Column("id", sa.Integer, primary_key=True), {columns})',
            )
    settings = find_config(ini)
    results = []
    for lazy in (False, True):
        with isolated_imports(settings.alembic_config.parent):
            project = open_project(settings=settings, lazy=lazy)
            assert project.lazy is lazy  # lazy: each module imported when the stairway first uses it
            results.append(_results(project, pg_server, f"w_{uuid.uuid4().hex[:10]}"))
    assert results[0] == results[1]
    assert any(status == "fail" for _n, status, *_ in results[0]) is (which == "fixture-with-drift")


def test_load_modules_after_a_revision_skips_its_ancestors_on_branches(tmp_path: Path) -> None:
    marker = tmp_path / "imported.txt"
    revs = [Rev("0001", None), Rev("0002", "0001"), Rev("0003", "0001"), Rev("0004", ("0002", "0003"))]
    ini = make_project(tmp_path, revisions=revs)
    for path in (tmp_path / "migrations" / "versions").glob("*.py"):
        mark = f"with open({str(marker)!r}, 'a') as _fh:\n    _fh.write(revision + '\\n')\n"
        path.write_text(path.read_text().replace("depends_on = None\n", f"depends_on = None\n{mark}"))
    with loaded_project(ini, lazy=True) as project:
        assert project.lazy
        project.load_modules(after="0002")  # 0003 is on the other branch: not applied at 0002
        assert sorted(_imported(marker)) == ["0003", "0004"]
        project.load_modules(after="no-such-revision")  # unknown: everything
        assert sorted(_imported(marker)) == ["0001", "0002", "0003", "0004"]


def test_import_alembic_skips_pygments_but_leaves_it_importable() -> None:
    """Mako takes its plain fallback instead of importing Pygments (0.04 s); Pygments, when
    installed, imports normally afterwards."""
    code = (
        "import sys\n"
        "from schema_warden.project.loader import import_alembic\n"
        "import_alembic()\n"
        "assert 'alembic.runtime.migration' in sys.modules and 'mako.exceptions' in sys.modules\n"
        "assert not any(n == 'pygments' or n.startswith('pygments.') for n in sys.modules)\n"
        "try:\n"
        "    import pygments\n"
        "except ImportError as err:\n"
        "    assert 'halted' not in str(err), err\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr


def test_ini_without_prepend_sys_path_loads_lazily(tmp_path: Path) -> None:
    """An older project's alembic.ini (no prepend_sys_path, no path_separator): env.py puts
    its project root on sys.path itself, as inis written before Alembic 1.5 expect."""
    ini = readings_project(tmp_path)
    text = ini.read_text().replace("prepend_sys_path = %(here)s\n", "").replace("path_separator = os\n", "")
    ini.write_text(text)
    env = tmp_path / "migrations" / "env.py"
    env.write_text(
        "import os, sys\nsys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))\n"
        + env.read_text()
    )
    with loaded_project(ini, lazy=True) as project:
        assert project.lazy is True
        assert [r.revision for r in project.revisions()] == ["0001", "0002"]


# --- settings keys are validated --------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "suggested"),
    [
        ("exclude-table", "exclude-tables"),
        ("exclude_tables", "exclude-tables"),
        ("postgres_version", "postgres-version"),
        ("multiple-head", "multiple-heads"),
        ("alembic-conf", "alembic-config"),
    ],
)
def test_unknown_setting_is_an_error_that_suggests_the_nearest_key(
    key: str, suggested: str, tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text(f'[tool.schema-warden]\n{key} = ["legacy"]\n')
    with pytest.raises(ProjectError) as err:
        load_settings(cwd=tmp_path)
    assert err.value.exit_code == 2
    assert f"[tool.schema-warden] has no setting {key!r} (did you mean {suggested!r}?)" in str(err.value)
    assert str(tmp_path / "pyproject.toml") in str(err.value)


def test_unknown_setting_far_from_any_key_lists_the_settings(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.schema-warden]\ncolour = "blue"\n')
    with pytest.raises(ProjectError) as err:
        load_settings(cwd=tmp_path)
    message = str(err.value)
    assert "has no setting 'colour': the settings are alembic-config, exclude-tables, " in message
    assert "did you mean" not in message


VALID_SETTINGS = {
    "alembic-config": '"alembic.ini"',
    "exclude-tables": '["legacy"]',
    "schemas": '["public"]',
    "postgres-version": "16",
    "irreversible": '["0001"]',
    "lint": "{}",
    "models": '["app.models"]',
    "baseline": '"app.models:Base"',
    "baseline-revision": '"0001"',
    "multiple-heads": "true",
    "minimum-downgrade-revision": '"0001"',
    "version-locations": '["versions"]',
    "no-data": '["audit_log"]',
    "accepted-findings": '"accepted-findings.toml"',
    "timeout": "600",
}


@pytest.mark.parametrize("key", sorted(VALID_SETTINGS))
def test_every_documented_setting_is_accepted(key: str, tmp_path: Path) -> None:
    """Including the ones other commands read (their values are theirs to validate)."""
    (tmp_path / "pyproject.toml").write_text(f"[tool.schema-warden]\n{key} = {VALID_SETTINGS[key]}\n")
    try:
        load_settings(cwd=tmp_path)
    except ProjectError as err:
        assert "has no setting" not in str(err)


def test_unknown_setting_is_one_line_and_exit_2_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    (tmp_path / "migrations" / "versions").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text('[tool.schema-warden]\nexclude-table = ["legacy"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "schema_warden", "heads"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "has no setting 'exclude-table' (did you mean 'exclude-tables'?)" in done.stderr
