"""Drift between migrations and models: real drift found, the usual false positives not."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from fixture_project import READINGS_MODELS, READINGS_REVISIONS, Rev, check_on, make_project, readings_project
from schema_warden.project.loader import loaded_project
from schema_warden.proof.drift import (
    COULD_NOT_CHECK,
    MESSAGE,
    MESSAGE_EXTRA,
    NOT_IN_MODELS,
    describe_operation,
    failed_object,
    fix_command,
    suggest_message,
)
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
        "seen by Postgres (both schemas read from pg_catalog):",
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
    assert drift.details[1].startswith("  ~ enum status")
    assert "archived" in drift.details[1]
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
    assert note.startswith(
        "metadata.create_all of the models failed (at check constraint ck of table readings: "
        "function no_such_function(character varying) does not exist"
    )
    assert "): compared with Alembic only (CHECK constraints, enum labels" in note
    assert _databases(pg_server) == before


def test_models_side_built_ahead_is_used_only_for_the_same_prelude(tmp_path: Path, pg_server: Server) -> None:
    import sqlalchemy as sa_
    from schema_warden.project.imports import isolated_imports
    from schema_warden.project.loader import open_project
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
                # a models side built with another prelude is rebuilt, not trusted
                wrong = type(ahead)(('CREATE EXTENSION "hstore"',), Snapshot())
                rebuilt = check_drift(project, pg_server, connection, env, models=wrong, models_db="drift_m")
                assert rebuilt.status == PASS  # the empty snapshot would have been drift
                # a models side for the same prelude is used as it is
                same = type(ahead)(ahead.prelude, Snapshot())
                used = check_drift(project, pg_server, connection, env, models=same)
                assert used.status == FAIL
            engine.dispose()
    finally:
        pg_server.drop_database(database)


# --- honest verdicts: nothing passes that did not run (issue 18) ----------------------------

# A server default Alembic cannot compare: create_all compiles it (DDL compiles a column's
# default on its own), Alembic's compare_metadata compiles the expression itself, and fails.
UNRENDERABLE_DEFAULT = """
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class utcnow(FunctionElement):
    type = sa.DateTime()
    inherit_cache = True


@compiles(utcnow, "postgresql")
def _utcnow(element, compiler, **kw):
    if compiler.statement is not None:
        raise CompileError("no renderer knows utcnow")
    return "now()"

"""

# the migrations add humidity, which the models forgot; "at" has the default above
FORGOTTEN_REVISION = Rev(
    "0003",
    "0002",
    upgrade="""
        op.add_column("readings", sa.Column("at", sa.DateTime, server_default=sa.text("now()")))
        op.add_column("readings", sa.Column("humidity", sa.Float))
    """,
    downgrade='op.drop_column("readings", "humidity")\nop.drop_column("readings", "at")',
)


def _forgetful_models(extra: str = "", before: str = "") -> str:
    return (
        UNRENDERABLE_DEFAULT
        + before
        + READINGS_MODELS.replace(
            'sa.Column("device", sa.String(32)),',
            'sa.Column("device", sa.String(32)),\n    sa.Column("at", sa.DateTime, server_default=utcnow()),'
            + extra,
        )
    )


def test_drift_that_neither_way_could_compare_fails_naming_both(tmp_path: Path, pg_server: Server) -> None:
    """It said `ok drift: no drift found by Alembic's comparison` with humidity forgotten."""
    models = _forgetful_models('\n    sa.CheckConstraint("no_such_function(device)", name="ck"),')
    revisions = [*READINGS_REVISIONS, FORGOTTEN_REVISION]
    drift = _drift(check_on(pg_server, readings_project(tmp_path, models=models, revisions=revisions)))
    assert drift.status == FAIL
    assert drift.message == COULD_NOT_CHECK
    create_all, alembic = drift.details[:2]
    assert create_all.startswith(
        "  metadata.create_all of the models failed (at check constraint ck of table readings: "
        "function no_such_function(character varying) does not exist"
    )
    assert alembic == "  Alembic's compare_metadata failed (no renderer knows utcnow)"


def test_extension_in_its_own_schema_is_in_the_models_database_and_drift_is_seen(
    tmp_path: Path, pg_server: Server
) -> None:
    """create_all failed (the opclass's extension and schema were only in the migrated
    database), Alembic failed too, and the check said `ok drift`."""
    index = (
        'sa.Index("ix_readings_device_trgm", readings.c.device, postgresql_using="gin",'
        ' postgresql_ops={"device": "extensions.gin_trgm_ops"})\n'
    )
    models = _forgetful_models() + index
    extension = Rev(
        "0004",
        "0003",
        upgrade="""
            op.execute("CREATE SCHEMA extensions")
            op.execute("CREATE EXTENSION pg_trgm SCHEMA extensions")
            op.create_index("ix_readings_device_trgm", "readings", ["device"], postgresql_using="gin",
                            postgresql_ops={"device": "extensions.gin_trgm_ops"})
        """,
        downgrade="""
            op.drop_index("ix_readings_device_trgm", "readings")
            op.execute("DROP EXTENSION pg_trgm")
            op.execute("DROP SCHEMA extensions")
        """,
    )
    revisions = [*READINGS_REVISIONS, FORGOTTEN_REVISION, extension]
    drift = _drift(check_on(pg_server, readings_project(tmp_path, models=models, revisions=revisions)))
    assert drift.status == FAIL
    assert drift.message == MESSAGE_EXTRA
    assert drift.details[:2] == (
        "seen by Postgres (both schemas read from pg_catalog):",
        "  - column readings.humidity (double precision, nullable) [destructive]: " + NOT_IN_MODELS,
    )
    assert (
        "not seen by Alembic: Alembic's compare_metadata failed (no renderer knows utcnow)" in drift.details
    )
    assert "is its module imported? (set `models = [...]` in [tool.schema-warden])" in NOT_IN_MODELS


TRGM_MODELS = """
items = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kind", sa.Enum("a", "b", name="item_kind", create_type=False)),
)
sa.Index("ix_items_name_trgm", items.c.name, postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"})
"""

TRGM_REVISIONS = [
    Rev(
        "0001",
        None,
        upgrade="""
            op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            op.execute("CREATE TYPE item_kind AS ENUM ('a', 'b')")
            op.create_table(
                "items",
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("name", sa.Text, nullable=False),
                sa.Column("kind", sa.Enum("a", "b", name="item_kind", create_type=False)),
            )
            op.create_index("ix_items_name_trgm", "items", ["name"], postgresql_using="gin",
                            postgresql_ops={"name": "gin_trgm_ops"})
        """,
        downgrade="""
            op.drop_table("items")
            op.execute("DROP TYPE item_kind")
            op.execute("DROP EXTENSION pg_trgm")
        """,
    )
]


def test_opclass_index_and_a_type_only_migrations_create_pass_honestly(
    tmp_path: Path, pg_server: Server
) -> None:
    drift = _drift(check_on(pg_server, make_project(tmp_path, models=TRGM_MODELS, revisions=TRGM_REVISIONS)))
    assert (drift.status, drift.message, drift.details) == (
        PASS,
        "the migrations build exactly what the models declare",
        (),
    )


def test_a_table_only_migrations_create_points_at_the_models_import(
    tmp_path: Path, pg_server: Server
) -> None:
    extra = Rev(
        "0003", "0002", upgrade='op.create_table("devices", sa.Column("id", sa.Integer, primary_key=True))'
    )
    ini = readings_project(tmp_path, revisions=[*READINGS_REVISIONS, extra])
    drift = _drift(check_on(pg_server, ini))
    assert drift.status == FAIL
    assert drift.details[1].startswith("  - table devices")
    assert drift.details[1].endswith(f": {NOT_IN_MODELS}")


def test_a_failed_create_all_statement_names_its_object() -> None:
    assert (
        failed_object("CREATE INDEX ix_items_name ON items USING gin (name gin_trgm_ops)", "operator class")
        == "index ix_items_name on table items"
    )
    assert (
        failed_object('ALTER TABLE "a" ADD CONSTRAINT fk_a_b FOREIGN KEY(b_id) REFERENCES b (id)', "x")
        == "constraint fk_a_b on table a"
    )
    statement = (
        "CREATE TABLE t (id SERIAL NOT NULL, tags citext, CONSTRAINT ck_t CHECK (length(tags) > 0), "
        "PRIMARY KEY (id))"
    )
    assert failed_object(statement, 'type "citext" does not exist') == "table t"
    assert (
        failed_object(statement, "function length(citext) does not exist")
        == "check constraint ck_t of table t"
    )
