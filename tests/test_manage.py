"""database/manage.py end to end against a real PostgreSQL server.

The commands a user runs against their database (upgrade, downgrade, current) get their
server and a fresh database per test from pytest-postgresql (tests/project_postgres.py
says how that falls as root); tests that drive the guard's parts (db-check's throwaway
models database, injected engines) keep the session's throwaway server.
"""

# ruff: noqa: F811 - pytest-postgresql's fixtures are imported, then requested by name

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg2
import pytest
from project_postgres import (  # noqa: F401
    ProjectServer,
    postgresql,
    postgresql_proc,
    project_db,
    project_server,
    project_url,
)
from schema_warden.server.postgres import Server, throwaway_server

from database import manage
from database.alembic_support import drift_context_options

REPO_ROOT = Path(__file__).resolve().parent.parent
VERSIONS = REPO_ROOT / "database" / "alembic" / "versions"


def query(server: Server | ProjectServer, db: str, sql: str) -> list[tuple]:
    conn = psycopg2.connect(**server.connect_kwargs(db))
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.commit()
        conn.close()


def schema_dump(server: Server | ProjectServer, db: str) -> str:
    """pg_dump --schema-only of a database, minus comments and the random \\restrict key lines."""
    out = subprocess.run(
        [server.binaries.path("pg_dump"), "--schema-only", "--no-owner", "-d", server.libpq_url(db)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "\n".join(
        line
        for line in out.splitlines()
        if line and not line.startswith(("--", "\\restrict", "\\unrestrict"))
    )


def columns(server: Server | ProjectServer, db: str) -> list[str]:
    rows = query(
        server,
        db,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'temperature_readings' ORDER BY ordinal_position",
    )
    return [r[0] for r in rows]


def version(server: Server | ProjectServer, db: str) -> list[str]:
    return [r[0] for r in query(server, db, "SELECT version_num FROM alembic_version")]


def versions_listing() -> list[str]:
    return sorted(p.name for p in VERSIONS.glob("*.py"))


# --- in-process: the real project, a fresh database per test -------------------------------


def test_upgrade_creates_the_table_and_shows_progress(
    project_server: ProjectServer, project_db: str, project_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert manage.main(["db-upgrade"]) == 0
    out, err = capsys.readouterr()
    assert columns(project_server, project_db) == ["id", "temperature", "unit", "recorded_at", "device_id"]
    assert version(project_server, project_db) == ["0002"]
    assert err.splitlines() == [
        "Running upgrade <base> -> 0001, create temperature_readings",
        "Running upgrade 0001 -> 0002, add device_id to temperature_readings",
    ]
    assert out.strip() == "0002 (head)"


def test_rows_inserted_at_0001_all_survive_the_upgrade_to_0002(
    project_server: ProjectServer, project_db: str, project_url: str
) -> None:
    assert manage.main(["db-upgrade", "0001"]) == 0
    assert "device_id" not in columns(project_server, project_db)
    query(
        project_server,
        project_db,
        "INSERT INTO temperature_readings (temperature, unit, recorded_at) "
        "SELECT (i % 500) / 10.0, (ARRAY['C','F','K'])[1 + i % 3], "
        "timestamptz '2026-01-01 00:00+00' + i * interval '1 minute' FROM generate_series(1, 250) AS i",
    )
    before = query(
        project_server, project_db, "SELECT id, temperature, unit, recorded_at FROM temperature_readings"
    )

    assert manage.main(["db-upgrade"]) == 0

    after = query(
        project_server,
        project_db,
        "SELECT id, temperature, unit, recorded_at, device_id FROM temperature_readings",
    )
    assert len(before) == 250
    assert sorted(row[:4] for row in after) == sorted(before)
    assert {row[4] for row in after} == {None}
    assert (Decimal("0.10"), "F") in {row[1:3] for row in after}


def test_downgrade_one_step_then_upgrade_round_trips(
    project_server: ProjectServer, project_db: str, project_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert manage.main(["db-upgrade"]) == 0
    at_head = schema_dump(project_server, project_db)
    assert "ix_temperature_readings_device_id" in at_head
    capsys.readouterr()

    assert manage.main(["db-downgrade", "-1"]) == 0
    out, err = capsys.readouterr()
    assert "Running downgrade 0002 -> 0001, add device_id to temperature_readings" in err
    assert out.strip() == "0001"
    assert version(project_server, project_db) == ["0001"]
    assert "device_id" not in columns(project_server, project_db)
    assert "device_id" not in schema_dump(project_server, project_db)  # the index went too

    assert manage.main(["db-upgrade"]) == 0
    assert schema_dump(project_server, project_db) == at_head


def test_downgrade_to_base_removes_everything_it_made(
    project_server: ProjectServer, project_db: str, project_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert manage.main(["db-upgrade"]) == 0
    capsys.readouterr()
    assert manage.main(["db-downgrade", "base"]) == 0
    out, err = capsys.readouterr()
    assert "Running downgrade 0001 -> <base>, create temperature_readings" in err
    assert out.startswith("no revision")
    assert query(project_server, project_db, "SELECT to_regclass('temperature_readings')") == [(None,)]
    assert version(project_server, project_db) == []


def test_downgrade_requires_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        manage.main(["db-downgrade"])
    assert info.value.code == 2
    assert "revision" in capsys.readouterr().err


def test_current_on_an_empty_database_says_what_to_do(
    project_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert manage.main(["db-current"]) == 0
    assert "db-upgrade" in capsys.readouterr().out


def test_history_needs_no_database(capsys: pytest.CaptureFixture[str]) -> None:
    assert manage.main(["db-history"]) == 0
    out = capsys.readouterr().out
    assert "<base> -> 0001, create temperature_readings" in out
    assert "0001 -> 0002 (head), add device_id to temperature_readings" in out


def test_upgrade_sql_renders_without_a_database(capsys: pytest.CaptureFixture[str]) -> None:
    assert "DATABASE_URL" not in os.environ
    assert manage.main(["db-upgrade", "--sql"]) == 0
    out = capsys.readouterr().out
    assert "CREATE TABLE temperature_readings" in out
    assert "ALTER TABLE temperature_readings ADD COLUMN device_id VARCHAR(64)" in out


def test_check_on_the_committed_history_finds_no_drift(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert manage.main(["db-upgrade"]) == 0
    capsys.readouterr()
    assert manage.main(["db-check"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "no drift: the database matches the models"
    assert err == ""  # no "compared with Alembic only" note: Postgres's comparison ran


def test_check_never_writes_to_the_database(
    pg_server: Server, fresh_db: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from schema_warden.schema.snapshot import take

    def state() -> tuple[object, list[str], list[tuple]]:
        conn = psycopg2.connect(**pg_server.connect_kwargs(fresh_db))
        try:
            snap = take(conn, reuse_plan=False)
        finally:
            conn.close()
        return (
            snap,
            version(pg_server, fresh_db),
            query(pg_server, "postgres", "SELECT datname FROM pg_database ORDER BY 1"),
        )

    assert manage.main(["db-upgrade"]) == 0
    query(pg_server, fresh_db, "CREATE TABLE legacy_readings (id int)")  # drift: the whole report runs
    before = state()
    capsys.readouterr()
    assert manage.main(["db-check"]) == 1
    assert "- table legacy_readings" in capsys.readouterr().out
    assert state() == before  # schema, alembic_version and the server's databases all unchanged


def test_check_reads_in_a_transaction_that_refuses_writes(database_url: str) -> None:
    from sqlalchemy import exc

    from database.migrate import connected

    with pytest.raises(exc.InternalError, match="read-only transaction"), connected(read_only=True) as cfg:
        cfg.attributes["connection"].exec_driver_sql("CREATE TABLE sneaky (id int)")


def test_check_falls_back_to_alembic_when_create_all_fails(pg_server: Server, fresh_db: str) -> None:
    from schema_warden.schema.snapshot import take
    from sqlalchemy import Column, Integer, MetaData, Table, text

    from database.migrate import compare_with_models

    broken = MetaData()
    Table("readings", broken, Column("id", Integer, server_default=text("no_such_function()")))
    conn = psycopg2.connect(**pg_server.connect_kwargs(fresh_db))
    try:
        live = take(conn, reuse_plan=False)
    finally:
        conn.close()
    changes, note = compare_with_models(live, broken)
    assert changes is None
    assert note.startswith(
        "note: compared with Alembic only (metadata.create_all failed in a throwaway database: "
        "function no_such_function() does not exist)"
    )


def test_check_trusts_postgres_over_alembic_text_differences(capsys: pytest.CaptureFixture[str]) -> None:
    from database.migrate import report_drift

    noise = "~ alter column readings.at default now() -> CURRENT_TIMESTAMP"
    assert report_drift([], [noise]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no drift: the database matches the models\n")
    assert f"  {noise}" in out
    assert report_drift(None, [noise]) == 1  # without Postgres's verdict, Alembic's counts
    assert "fix: python database/manage.py db-revision" in capsys.readouterr().out


def test_check_without_server_binaries_notes_what_alembic_cannot_see(
    pg_server: Server,
    fresh_db: str,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert manage.main(["db-upgrade"]) == 0
    query(pg_server, fresh_db, "CREATE TABLE legacy_readings (id int)")
    empty = tmp_path / "no-postgres"
    empty.mkdir()
    monkeypatch.setenv("SCHEMA_WARDEN_PG_BIN", str(empty))
    capsys.readouterr()
    assert manage.main(["db-check"]) == 1
    out, err = capsys.readouterr()
    assert "- drop table legacy_readings" in out  # Alembic's comparison still reports
    assert "what a migration must change" not in out  # Postgres's comparison did not run
    assert err.startswith(f"note: compared with Alembic only (no postgres/initdb in {empty}")
    assert "cannot see a changed ENUM label list, CHECK expression or index expression" in err
    assert "SCHEMA_WARDEN_PG_BIN" in err
    assert len(err.splitlines()) == 1


def test_check_ignores_excluded_tables_and_reports_other_unknown_tables(
    pg_server: Server, fresh_db: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert manage.main(["db-upgrade"]) == 0
    query(pg_server, fresh_db, "CREATE TABLE _prisma_migrations (id text PRIMARY KEY)")
    capsys.readouterr()
    assert manage.main(["db-check"]) == 0  # [tool.schema-warden] exclude-tables

    query(pg_server, fresh_db, "CREATE TABLE legacy_readings (id int)")
    assert manage.main(["db-check"]) == 1
    out = capsys.readouterr().out
    assert "- drop table legacy_readings" in out
    assert "_prisma_migrations" not in out


def test_check_before_upgrade_asks_for_the_upgrade(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert manage.main(["db-upgrade", "0001"]) == 0
    capsys.readouterr()
    assert manage.main(["db-check"]) == 1
    assert "database is at 0001, head is 0002" in capsys.readouterr().out


def test_autogenerate_on_the_committed_history_finds_no_drift(pg_server: Server, fresh_db: str) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, pool

    from database.migrate import alembic_config
    from database.models import Base

    engine = create_engine(pg_server.url(fresh_db), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            command.upgrade(alembic_config(conn), "head")
            conn.commit()
            diffs = compare_metadata(
                MigrationContext.configure(conn, opts=drift_context_options()), Base.metadata
            )
    finally:
        engine.dispose()
    assert diffs == []


def test_env_py_uses_an_injected_engine_and_never_reads_database_url(
    pg_server: Server, fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alembic import command
    from sqlalchemy import create_engine, pool

    from database.migrate import alembic_config

    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw@db.invalid/never")  # reading it would fail
    engine = create_engine(pg_server.url(fresh_db), poolclass=pool.NullPool)
    try:
        command.upgrade(alembic_config(engine), "head")
    finally:
        engine.dispose()
    assert version(pg_server, fresh_db) == ["0002"]  # committed by env.py


def test_migrations_build_exactly_the_schema_of_the_models(pg_server: Server, fresh_db: str) -> None:
    """Stronger than autogenerate (which skips CHECK bodies): Postgres' own dump of both schemas."""
    from alembic import command
    from sqlalchemy import create_engine, pool

    from database.migrate import alembic_config
    from database.models import Base

    models_db = f"m_{uuid.uuid4().hex[:12]}"
    pg_server.create_database(models_db)
    try:
        for db, build in (
            (fresh_db, lambda conn: command.upgrade(alembic_config(conn), "head")),
            (models_db, Base.metadata.create_all),
        ):
            engine = create_engine(pg_server.url(db), poolclass=pool.NullPool)
            try:
                with engine.connect() as conn:
                    build(conn)
                    conn.commit()
            finally:
                engine.dispose()
        query(pg_server, fresh_db, "DROP TABLE alembic_version")
        assert schema_dump(pg_server, fresh_db) == schema_dump(pg_server, models_db)
    finally:
        pg_server.drop_database(models_db)


def test_failing_migration_names_its_revision_and_the_sql_error_and_rolls_back(
    pg_server: Server, fresh_db: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # an index of that name already exists: revision 0001 applies, 0002 cannot
    query(
        pg_server,
        fresh_db,
        "CREATE TABLE other (device_id text);"
        "CREATE INDEX ix_temperature_readings_device_id ON other (device_id)",
    )
    assert manage.main(["db-upgrade"]) == 1
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[-2].startswith("error: revision 0002 (")
    assert "20261125_0002_add_device_id_to_temperature_readings.py, line" in lines[-2]
    assert "failed during upgrade 0001 -> 0002" in lines[-2]
    assert 'relation "ix_temperature_readings_device_id" already exists' in lines[-2]
    assert lines[-1].startswith("  SQL: CREATE INDEX ix_temperature_readings_device_id")
    assert "Traceback" not in err
    # one transaction: revision 0001's table is gone again
    assert query(pg_server, fresh_db, "SELECT to_regclass('temperature_readings')") == [(None,)]


def test_help_of_every_command_works(capsys: pytest.CaptureFixture[str]) -> None:
    parser = manage.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert {"db-upgrade", "db-downgrade", "db-revision", "db-current", "db-history", "db-check"} <= set(
        commands
    )
    for name in ["", *commands]:
        with pytest.raises(SystemExit) as info:
            manage.main([name, "--help"] if name else ["--help"])
        assert info.value.code == 0, name
        assert "usage: python database/manage.py" in capsys.readouterr().out


# --- connection errors: exit 3, masked URL, no password anywhere ---------------------------


def test_wrong_password_is_exit_3_with_masked_url_and_no_password(capfd: pytest.CaptureFixture[str]) -> None:
    hba = "local all postgres trust\nlocal all all scram-sha-256\n"
    with throwaway_server(hba=hba) as server:
        server.execute("CREATE ROLE app LOGIN PASSWORD 'Right-Pw-417'")
        base = f"@/postgres?host={server.socket_dir}&port={server.port}"
        os.environ["DATABASE_URL"] = f"postgresql://app:Right-Pw-417{base}"
        try:
            assert manage.main(["db-current"]) == 0  # the right password gets in: the server is honest
            capfd.readouterr()
            os.environ["DATABASE_URL"] = f"postgresql://app:Wr0ng-S3cret{base}"
            assert manage.main(["db-current"]) == 3
        finally:
            del os.environ["DATABASE_URL"]
    out, err = capfd.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"error: cannot connect to postgresql://app:***{base}: ")
    assert 'password authentication failed for user "app"' in err
    assert "Wr0ng-S3cret" not in out + err and "Right-Pw-417" not in out + err


def test_refused_connection_is_exit_3_with_masked_url(capfd: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port on which nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ["DATABASE_URL"] = f"postgresql://app:Wr0ng-S3cret@127.0.0.1:{port}/db"
    try:
        assert manage.main(["db-upgrade"]) == 3
    finally:
        del os.environ["DATABASE_URL"]
    out, err = capfd.readouterr()
    assert err.startswith(f"error: cannot connect to postgresql://app:***@127.0.0.1:{port}/db: ")
    assert "refused" in err and "is the server running" in err
    assert "Wr0ng-S3cret" not in out + err
    assert err.count("\n") == 1


# --- the real command line -------------------------------------------------------------------


def run(cwd: Path, script: str, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if url:
        env["DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, script, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_runs_from_inside_the_database_directory(pg_server: Server, fresh_db: str, database_url: str) -> None:
    assert manage.main(["db-upgrade", "0001"]) == 0
    result = run(REPO_ROOT / "database", "manage.py", "db-current", url=database_url)
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "0001", "")


@pytest.fixture
def project_copy(tmp_path: Path) -> Iterator[Path]:
    """The database project copied to tmp_path: commands that write files never touch the repo."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("alembic.ini", "pyproject.toml"):
        shutil.copy2(REPO_ROOT / name, root / name)
    shutil.copytree(
        REPO_ROOT / "database",
        root / "database",
        ignore=shutil.ignore_patterns("__pycache__", ".env", "backups"),
    )
    repo_versions = versions_listing()
    yield root
    assert versions_listing() == repo_versions


def copy_versions(root: Path) -> list[Path]:
    return sorted((root / "database" / "alembic" / "versions").glob("*.py"))


def test_revision_on_unchanged_models_refuses_an_empty_migration(
    project_copy: Path, database_url: str
) -> None:
    assert run(project_copy, "database/manage.py", "db-upgrade", url=database_url).returncode == 0
    before = copy_versions(project_copy)

    result = run(project_copy, "database/manage.py", "db-revision", "-m", "nothing", url=database_url)
    assert result.returncode == 1
    assert result.stderr.startswith("error: no model changes found, so no migration was written")
    assert copy_versions(project_copy) == before

    result = run(project_copy, "database/manage.py", "db-revision", "--empty", "-m", "backfill units")
    assert result.returncode == 0, result.stderr
    (written,) = set(copy_versions(project_copy)) - set(before)
    assert re.fullmatch(r"\d{8}_0003_backfill_units\.py", written.name)


def test_revision_after_adding_a_column_writes_a_migration_that_upgrade_applies(
    project_copy: Path, pg_server: Server, fresh_db: str, database_url: str
) -> None:
    def manage_copy(*args: str) -> subprocess.CompletedProcess[str]:
        return run(project_copy, "database/manage.py", *args, url=database_url)

    assert manage_copy("db-upgrade").returncode == 0
    model = project_copy / "database" / "models" / "temperature.py"
    source = model.read_text()
    anchor = "    device_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)\n"
    assert anchor in source
    model.write_text(
        source.replace(
            anchor, anchor + "    humidity: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))\n"
        )
    )

    check = manage_copy("db-check")
    assert check.returncode == 1
    assert "+ column temperature_readings.humidity (numeric(5,2), nullable)" in check.stdout
    assert "+ add column temperature_readings.humidity (NUMERIC(5, 2), nullable)" in check.stdout
    assert 'fix: python database/manage.py db-revision -m "add humidity"' in check.stdout

    revision = manage_copy("db-revision", "-m", "add humidity")
    assert revision.returncode == 0, revision.stderr
    assert "Detected added column 'temperature_readings.humidity'" in revision.stderr
    written = [p for p in copy_versions(project_copy) if "_0003_add_humidity" in p.name]
    assert len(written) == 1
    # however ruff (when installed) laid the file out
    text = re.sub(r"\s+", "", written[0].read_text().replace("'", '"'))
    assert 'down_revision:str|Sequence[str]|None="0002"' in text
    assert 'op.add_column("temperature_readings",sa.Column("humidity",sa.Numeric(precision=5,scale=2)' in text
    assert 'op.drop_column("temperature_readings","humidity")' in text

    upgrade = manage_copy("db-upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert "Running upgrade 0002 -> 0003, add humidity" in upgrade.stderr
    assert columns(pg_server, fresh_db)[-1] == "humidity"
    assert version(pg_server, fresh_db) == ["0003"]
    assert manage_copy("db-check").returncode == 0

    assert manage_copy("db-downgrade", "-1").returncode == 0  # the generated downgrade works too
    assert "humidity" not in columns(pg_server, fresh_db)


UNIT_CHECK = "unit IN ('C', 'F', 'K')"
NARROWED_UNIT_CHECK = "unit IN ('C', 'F')"


def test_check_sees_a_changed_check_expression_that_alembic_misses(
    project_copy: Path, pg_server: Server, fresh_db: str, database_url: str
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import CheckConstraint, MetaData, create_engine, pool

    from database.models import NAMING_CONVENTION, Base

    assert manage.main(["db-upgrade"]) == 0
    model = project_copy / "database" / "models" / "temperature.py"
    source = model.read_text()
    assert f'CheckConstraint("{UNIT_CHECK}", name="unit")' in source
    model.write_text(source.replace(UNIT_CHECK, NARROWED_UNIT_CHECK))

    # Alembic alone, given the same models, sees nothing
    narrowed = MetaData(naming_convention=NAMING_CONVENTION)
    table = Base.metadata.tables["temperature_readings"].to_metadata(narrowed)
    (unit,) = [c for c in table.constraints if isinstance(c, CheckConstraint)]
    table.constraints.discard(unit)
    table.append_constraint(CheckConstraint(NARROWED_UNIT_CHECK, name="unit"))
    engine = create_engine(pg_server.url(fresh_db), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            assert [str(c.sqltext) for c in table.constraints if isinstance(c, CheckConstraint)] == [
                NARROWED_UNIT_CHECK
            ]
            assert (
                compare_metadata(MigrationContext.configure(conn, opts=drift_context_options()), narrowed)
                == []
            )
    finally:
        engine.dispose()

    check = run(project_copy, "database/manage.py", "db-check", url=database_url)
    assert check.returncode == 1, check.stderr
    lines = check.stdout.splitlines()
    (changed,) = [
        line
        for line in lines
        if line.startswith("  ~ constraint temperature_readings.ck_temperature_readings_unit")
    ]
    before, after = changed.split(" -> ")
    assert "'K'" in before and "'K'" not in after
    assert "autogenerate does not see this change" in check.stdout
    fix = 'db-revision --empty -m "change constraint ck_temperature_readings_unit"'
    assert f"fix: python database/manage.py {fix}" in lines
    assert check.stderr == ""
