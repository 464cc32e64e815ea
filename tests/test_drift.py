"""Drift between migrations and models: real drift found, the usual false positives not."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from fixture_project import READINGS_MODELS, Rev, check_on, make_project, readings_project
from schema_warden.project.loader import loaded_project
from schema_warden.proof.drift import MESSAGE, describe_operation, fix_command, suggest_message
from schema_warden.render.report import FAIL, PASS, CheckResult
from schema_warden.schema.diff import Change
from schema_warden.server.postgres import Server

REPO_ROOT = Path(__file__).resolve().parent.parent


def _drift(checks: list[CheckResult]) -> CheckResult:
    [drift] = [c for c in checks if c.name == "drift"]
    return drift


def test_model_change_without_migration_is_drift_with_the_fixing_command(
    tmp_path: Path, pg_server: Server
) -> None:
    models = READINGS_MODELS.replace(
        'sa.Column("device", sa.String(32)),',
        'sa.Column("device", sa.String(32)),\n    sa.Column("humidity", sa.Float),',
    )
    ini = readings_project(tmp_path, models=models)
    drift = _drift(check_on(pg_server, ini))
    assert drift.status == FAIL
    assert drift.message == MESSAGE
    assert drift.details == (
        "  + column readings.humidity (double precision, nullable)",
        "autogenerate would write:",
        "  + add column readings.humidity (FLOAT, nullable)",
        f'fix: alembic -c {ini} revision --autogenerate -m "add humidity"',
    )


# What users complain about most: each of these is NOT drift.
CALM_MODELS = """
from sqlalchemy.dialects.postgresql import JSONB

status = sa.Enum("new", "done", name="status")
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column("state", status, nullable=False, server_default="new"),
    sa.Column("payload", JSONB, server_default=sa.text("'{}'::jsonb")),
    sa.Column("unit", sa.String(1), server_default="C"),
    sa.CheckConstraint("char_length(name) > 0", name="ck_events_name"),
)
sa.Index("ix_events_lower_name", sa.func.lower(events.c.name))
"""

CALM_REVISIONS = [
    Rev(
        "0001",
        None,
        upgrade="""
            op.create_table(
                "events",
                sa.Column("unit", sa.String(1), server_default=sa.text("'C'::text")),
                sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
                sa.Column("state", sa.Enum("new", "done", name="status"), nullable=False,
                          server_default="new"),
                sa.Column("name", sa.String(50), nullable=False),
                sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                          server_default=sa.text("CURRENT_TIMESTAMP")),
                sa.CheckConstraint("char_length(name)>0", name="ck_events_name"),
            )
            op.execute("CREATE INDEX ix_events_lower_name ON events (LOWER(name))")
            op.create_table("_prisma_migrations", sa.Column("id", sa.String(36), primary_key=True))
            op.create_table("legacy", sa.Column("id", sa.Integer, primary_key=True))
        """,
        downgrade="""
            op.drop_table("legacy")
            op.drop_table("_prisma_migrations")
            op.drop_table("events")
            sa.Enum(name="status").drop(op.get_bind())
        """,
    ),
    Rev(
        "0002",
        "0001",
        upgrade="""
            from sqlalchemy.dialects.postgresql import JSONB
            op.add_column("events", sa.Column("payload", JSONB, server_default=sa.text("'{}'::jsonb")))
        """,
        downgrade='op.drop_column("events", "payload")',
    ),
]


def _calm_project(tmp_path: Path, models: str = CALM_MODELS) -> Path:
    return make_project(
        tmp_path,
        models=models,
        revisions=CALM_REVISIONS,
        pyproject='[tool.schema-warden]\nexclude-tables = ["_prisma_migrations", "legacy"]\n',
    )


def test_no_false_positives_defaults_enums_checks_expression_indexes_excluded_tables_order(
    tmp_path: Path, pg_server: Server
) -> None:
    checks = check_on(pg_server, _calm_project(tmp_path))
    assert [c.status for c in checks] == [PASS] * len(checks), [c.details for c in checks]
    assert _drift(checks).message == "the migrations build exactly what the models declare"


def test_views_and_sequences_only_migrations_create_are_not_drift(tmp_path: Path, pg_server: Server) -> None:
    extra = Rev(
        "0003",
        "0002",
        upgrade="""
            op.execute("CREATE VIEW named_events AS SELECT id, name FROM events")
            op.execute("CREATE SEQUENCE invoice_numbers")
        """,
        downgrade="""
            op.execute("DROP SEQUENCE invoice_numbers")
            op.execute("DROP VIEW named_events")
        """,
    )
    ini = make_project(
        tmp_path,
        models=CALM_MODELS,
        revisions=[*CALM_REVISIONS, extra],
        pyproject='[tool.schema-warden]\nexclude-tables = ["_prisma_migrations", "legacy"]\n',
    )
    assert _drift(check_on(pg_server, ini)).status == PASS


def test_changed_enum_labels_are_drift_even_though_autogenerate_misses_them(
    tmp_path: Path, pg_server: Server
) -> None:
    models = CALM_MODELS.replace('"new", "done", name="status"', '"new", "done", "archived", name="status"')
    drift = _drift(check_on(pg_server, _calm_project(tmp_path, models)))
    assert drift.status == FAIL
    assert drift.details[0].startswith("  ~ enum status")
    assert "archived" in drift.details[0]
    assert "autogenerate does not see this change" in " ".join(drift.details)
    assert drift.details[-1].endswith('revision -m "update status"')


def test_changed_check_and_index_expressions_are_drift(tmp_path: Path, pg_server: Server) -> None:
    models = CALM_MODELS.replace("char_length(name) > 0", "char_length(name) > 2").replace(
        "sa.func.lower(events.c.name)", "sa.func.upper(events.c.name)"
    )
    drift = _drift(check_on(pg_server, _calm_project(tmp_path, models)))
    assert drift.status == FAIL
    text = "\n".join(drift.details)
    assert "ck_events_name" in text and "> 2" in text
    assert "ix_events_lower_name" in text and "upper" in text


def test_suggested_messages_are_short() -> None:
    def change(kind: str, action: str, name: str) -> Change:
        return Change(kind, action, name, name.split(".")[0], "", False)

    assert suggest_message([change("column", "added", "readings.humidity")]) == "add humidity"
    assert (
        suggest_message(
            [change("table", "added", "devices"), change("column", "added", "readings.device_id")]
        )
        == "create devices and add device_id"
    )
    many = [change("column", "removed", f"t.c{i}") for i in range(4)]
    assert suggest_message(many) == "drop c0, drop c1 and 2 more"


def test_operations_read_as_sentences_without_python_reprs() -> None:
    table = sa.Table("readings", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    column = sa.Column("humidity", sa.Float, server_default=sa.text("0"))
    lines = [
        describe_operation(("add_column", None, "readings", column)),
        describe_operation(("remove_table", table)),
        describe_operation(
            [
                ("modify_nullable", None, "readings", "id", {}, True, False),
                ("modify_type", None, "t", "c", {}, sa.Integer(), sa.BigInteger()),
            ]
        ),
    ]
    assert lines == [
        "+ add column readings.humidity (FLOAT, nullable, default 0)",
        "- drop table readings",
        "~ alter column readings.id SET NOT NULL; ~ alter column t.c type INTEGER -> BIGINT",
    ]
    assert not any(" object at 0x" in line for line in lines)


def test_fixing_command_of_the_bundled_project_is_manage_py() -> None:
    with loaded_project(REPO_ROOT / "alembic.ini") as project:
        assert (
            fix_command(project, "add humidity") == 'python database/manage.py db-revision -m "add humidity"'
        )
        assert (
            fix_command(project, "x", autogenerate=False)
            == 'python database/manage.py db-revision --empty -m "x"'
        )


def _databases(server: Server) -> set[str]:
    import psycopg2

    conn = psycopg2.connect(**server.connect_kwargs("postgres"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database")
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def test_models_that_create_all_cannot_build_fall_back_to_alembic_and_leave_no_database(
    tmp_path: Path, pg_server: Server
) -> None:
    models = READINGS_MODELS.replace(
        'sa.Column("device", sa.String(32)),',
        'sa.Column("device", sa.String(32)),\n    sa.CheckConstraint("no_such_function(device)", name="ck"),',
    )
    before = _databases(pg_server)
    drift = _drift(check_on(pg_server, readings_project(tmp_path, models=models)))
    # Alembic does not compare CHECK constraints: its comparison alone finds nothing
    assert drift.status == PASS
    assert drift.message == "no drift found by Alembic's comparison"
    [note] = drift.details
    assert note.startswith("metadata.create_all failed (function no_such_function(character varying)")
    assert note.endswith("): compared with Alembic only")
    assert _databases(pg_server) == before


def test_models_side_built_ahead_is_used_only_for_the_same_extensions(
    tmp_path: Path, pg_server: Server
) -> None:
    import sqlalchemy as sa_
    from schema_warden.project.loader import isolated_imports, open_project
    from schema_warden.proof.drift import check_drift, extensions_of, models_side
    from schema_warden.schema.snapshot import Snapshot

    ini = readings_project(tmp_path)
    database = "drift_ahead"
    pg_server.create_database(database)
    try:
        with isolated_imports(ini.parent):
            project = open_project(ini)
            engine = sa_.create_engine(pg_server.url(database), poolclass=sa_.pool.NullPool)
            with engine.connect() as connection:
                env = project.environment(connection)
                connection.rollback()
                project.migrate(connection, "heads")
                connection.commit()
                ahead = models_side(pg_server, project, env.metadata, extensions_of(connection), "drift_m")
                assert ahead.snapshot is not None and "drift_m" not in _databases(pg_server)
                assert check_drift(project, pg_server, connection, env, models=ahead).status == PASS
                # a models side that claims other extensions is rebuilt, not trusted
                wrong = type(ahead)(("hstore",), Snapshot())
                rebuilt = check_drift(project, pg_server, connection, env, models=wrong, models_db="drift_m")
                assert rebuilt.status == PASS  # the empty snapshot would have been drift
                # a models side for the same extensions is used as it is
                used = check_drift(project, pg_server, connection, env, models=type(ahead)((), Snapshot()))
                assert used.status == FAIL
            engine.dispose()
    finally:
        pg_server.drop_database(database)
