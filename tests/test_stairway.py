"""The stairway and round trip on generated projects, on the session's server."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixture_project import READINGS_MODELS, READINGS_REVISIONS, Rev, check_on, make_project, readings_project
from schema_warden.render.report import FAIL, NOTE, PASS, CheckResult
from schema_warden.server.postgres import Server

FIRST = READINGS_REVISIONS[0]


def _by_name(checks: list[CheckResult]) -> dict[str, list[CheckResult]]:
    out: dict[str, list[CheckResult]] = {}
    for c in checks:
        out.setdefault(c.name, []).append(c)
    return out


def _line(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _failures(checks: list[CheckResult]) -> list[CheckResult]:
    return [c for c in checks if c.status == FAIL]


def test_consistent_project_passes_every_check(tmp_path: Path, pg_server: Server) -> None:
    checks = check_on(pg_server, readings_project(tmp_path))
    assert [(c.name, c.revision, c.status) for c in checks] == [
        ("stairway", "0001", PASS),
        ("stairway", "0002", PASS),
        ("round-trip", None, PASS),
        ("drift", None, PASS),
    ]
    assert checks[0].message == "0001 (create readings): upgrade, downgrade (no trace), upgrade (same schema)"


def test_upgrade_failing_in_sql_names_revision_file_and_sql_error(tmp_path: Path, pg_server: Server) -> None:
    bad = Rev(
        "0002", "0001", upgrade='op.execute("ALTER TABLE nope ADD COLUMN x integer")', message="bad sql"
    )
    checks = check_on(pg_server, make_project(tmp_path, revisions=[FIRST, bad]))
    [failure] = _failures(checks)
    assert failure.revision == "0002"
    assert failure.message == (
        'revision 0002 (migrations/versions/0002_bad_sql.py, "bad sql"): '
        'upgrade failed: relation "nope" does not exist'
    )
    assert "SQL: ALTER TABLE nope ADD COLUMN x integer" in failure.details
    assert not any("generated rows" in d for d in failure.details)  # not a data problem
    frames = [d for d in failure.details if d.startswith("  File")]
    line = _line(tmp_path / "migrations/versions/0002_bad_sql.py", "ALTER TABLE nope")
    assert frames == [f'  File "migrations/versions/0002_bad_sql.py", line {line}, in upgrade']
    assert {c.status for c in _by_name(checks)["round-trip"]} == {NOTE}


def test_upgrade_failing_at_its_commit_names_the_revision(tmp_path: Path, pg_server: Server) -> None:
    deferred = Rev(
        "0002",
        "0001",
        upgrade=(
            'op.execute("CREATE TABLE notes (reading_id integer REFERENCES readings '
            'DEFERRABLE INITIALLY DEFERRED)")\nop.execute("INSERT INTO notes VALUES (7)")'
        ),
        downgrade='op.drop_table("notes")',
        message="notes",
    )
    checks = check_on(pg_server, make_project(tmp_path, revisions=[FIRST, deferred]))
    [failure] = _failures(checks)
    assert failure.revision == "0002"
    assert failure.message.startswith(
        'revision 0002 (migrations/versions/0002_notes.py, "notes"): upgrade failed: insert or update '
        'on table "notes" violates foreign key constraint'
    )
    assert "(raised when its transaction was committed: a deferred constraint or trigger)" in failure.details


def test_downgrade_that_raises_is_reported_with_its_frame(tmp_path: Path, pg_server: Server) -> None:
    bad = Rev("0002", "0001", upgrade="pass", downgrade='raise RuntimeError("cannot undo")', message="raises")
    exits = Rev("0003", "0002", upgrade="import sys\nsys.exit(3)", message="exits")
    checks = check_on(pg_server, make_project(tmp_path, revisions=[FIRST, bad, exits]))
    failure, exit_failure = [c for c in _failures(checks) if c.name == "stairway"]
    assert exit_failure.message.endswith("upgrade failed: SystemExit: 3")
    assert failure.message == (
        'revision 0002 (migrations/versions/0002_raises.py, "raises"): '
        "downgrade failed: RuntimeError: cannot undo"
    )
    line = _line(tmp_path / "migrations/versions/0002_raises.py", "cannot undo")
    assert f'  File "migrations/versions/0002_raises.py", line {line}, in downgrade' in failure.details


@pytest.mark.parametrize(
    ("upgrade", "downgrade", "left"),
    [
        (
            'op.add_column("readings", sa.Column("humidity", sa.Float))\n'
            'op.create_index("ix_h", "readings", ["humidity"])',
            'op.drop_index("ix_h", table_name="readings")',
            "column readings.humidity",
        ),
        ('op.create_index("ix_v", "readings", ["value"])', 'op.execute("SELECT 1")', "index ix_v"),
        (
            'op.create_unique_constraint("uq_v", "readings", ["value"])',
            'op.execute("SELECT 1")',
            "constraint readings.uq_v",
        ),
        (
            "sa.Enum('a', 'b', name='mood').create(op.get_bind())\n"
            "op.add_column('readings', sa.Column('mood', sa.Enum(name='mood', create_type=False)))",
            'op.drop_column("readings", "mood")',
            "enum mood",
        ),
        ('op.execute("CREATE SEQUENCE counter")', 'op.execute("SELECT 1")', "sequence counter"),
    ],
    ids=["column", "index", "constraint", "enum", "sequence"],
)
def test_downgrade_leaving_a_trace_names_it(
    tmp_path: Path, pg_server: Server, upgrade: str, downgrade: str, left: str
) -> None:
    rev = Rev("0002", "0001", upgrade=upgrade, downgrade=downgrade, message="leaky")
    checks = check_on(pg_server, make_project(tmp_path, models=READINGS_MODELS, revisions=[FIRST, rev]))
    failure = _failures(checks)[0]
    assert failure.revision == "0002"
    assert (
        failure.message
        == f'revision 0002 (migrations/versions/0002_leaky.py, "leaky"): downgrade leaves {left} behind'
    )


def test_unimplemented_downgrade_fails_unless_listed_irreversible(tmp_path: Path, pg_server: Server) -> None:
    revisions = [FIRST, Rev("0002", "0001", upgrade=READINGS_REVISIONS[1].upgrade, message="add device")]
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=revisions)
    [failure] = _failures(check_on(pg_server, ini))
    assert "0002" in failure.message and "downgrade is not implemented (its body is pass)" in failure.message
    assert 'irreversible = ["0002"]' in failure.message

    (tmp_path / "pyproject.toml").write_text('[tool.schema-warden]\nirreversible = ["0002"]\n')
    checks = check_on(pg_server, ini)
    assert not _failures(checks)
    statuses = {(c.name, c.revision): c.status for c in checks}
    assert statuses[("stairway", "0002")] == NOTE
    assert statuses[("round-trip", None)] == NOTE
    assert statuses[("drift", None)] == PASS


def test_branches_and_merge_point_each_step_alone(tmp_path: Path, pg_server: Server) -> None:
    def col(rev: str, down: str | tuple[str, ...] | None, name: str) -> Rev:
        return Rev(
            rev,
            down,
            upgrade=f'op.add_column("readings", sa.Column("{name}", sa.Integer))',
            downgrade=f'op.drop_column("readings", "{name}")',
        )

    models = READINGS_MODELS.replace(
        'sa.Column("device", sa.String(32)),',
        'sa.Column("device", sa.String(32)),\n'
        + "".join(f'    sa.Column("{n}", sa.Integer),\n' for n in "abcd"),
    )
    revisions = [*READINGS_REVISIONS, col("a1", "0002", "a"), col("b1", "0002", "b"), col("a2", "a1", "c")]
    revisions.append(col("m", ("a2", "b1"), "d"))
    checks = check_on(pg_server, make_project(tmp_path, models=models, revisions=revisions))
    assert not _failures(checks)
    stairs = [c.revision for c in checks if c.name == "stairway"]
    assert len(stairs) == 6 and stairs[:2] == ["0001", "0002"] and stairs[-1] == "m"
    assert stairs.index("a1") < stairs.index("a2")


def test_fail_fast_stops_at_the_first_problem(tmp_path: Path, pg_server: Server) -> None:
    leaky = Rev(
        "0002",
        "0001",
        upgrade='op.create_index("ix_v", "readings", ["value"])',
        downgrade="op.execute('SELECT 1')",
    )
    third = Rev("0003", "0002", upgrade="op.execute('SELECT 1')", downgrade="op.execute('SELECT 1')")
    checks = check_on(pg_server, make_project(tmp_path, revisions=[FIRST, leaky, third]), fail_fast=True)
    assert [c.revision for c in checks if c.name == "stairway" and c.revision][-1] == "0002"
    assert _failures(checks)[-1].revision == "0002"


def test_autocommit_block_with_a_concurrent_index(tmp_path: Path, pg_server: Server) -> None:
    concurrent = Rev(
        "0003",
        "0002",
        upgrade="""
            with op.get_context().autocommit_block():
                op.create_index("ix_readings_value", "readings", ["value"], postgresql_concurrently=True)
        """,
        downgrade="""
            with op.get_context().autocommit_block():
                op.drop_index("ix_readings_value", table_name="readings", postgresql_concurrently=True)
        """,
    )
    models = READINGS_MODELS + 'sa.Index("ix_readings_value", readings.c.value)\n'
    checks = check_on(
        pg_server, make_project(tmp_path, models=models, revisions=[*READINGS_REVISIONS, concurrent])
    )
    assert [c.status for c in checks] == [PASS] * 5, [c.message for c in checks]


def test_rehearsal_leaves_the_data_a_proof_leaves(tmp_path: Path, pg_server: Server) -> None:
    """rehearse() makes the stairway's writes without its checks: same rows, same ids, same
    data-check state, so a later revision is proven on the very same data."""
    import uuid

    from schema_warden.project.imports import isolated_imports
    from schema_warden.project.loader import open_project
    from schema_warden.project.settings import find_config
    from schema_warden.proof.data_check import Filler
    from schema_warden.proof.stairway import prove, rehearse, snapshot
    from sqlalchemy import create_engine, pool

    seed = Rev(
        "0003",
        "0002",
        upgrade="op.execute(\"INSERT INTO readings (value, device) VALUES (1.5, 'seed')\")",
        downgrade="op.execute(\"DELETE FROM readings WHERE device = 'seed'\")",
        message="seed",
    )
    column = Rev(
        "0004",
        "0003",
        upgrade='op.add_column("readings", sa.Column("unit", sa.String(8), server_default="C"))',
        downgrade='op.drop_column("readings", "unit")',
        message="unit",
    )
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=[*READINGS_REVISIONS, seed, column])
    settings = find_config(ini)
    states = []
    with isolated_imports(settings.alembic_config.parent):
        project = open_project(settings=settings)
        for way in ("prove", "rehearse"):
            database = f"r_{uuid.uuid4().hex[:10]}"
            pg_server.create_database(database)
            engine = create_engine(pg_server.url(database), poolclass=pool.NullPool)
            try:
                with engine.connect() as connection:
                    filler = Filler()
                    base = snapshot(project, connection)
                    if way == "prove":
                        assert not prove(project, connection, project.revisions(), base, filler).stopped
                    else:
                        assert rehearse(project, connection, project.revisions(), base, filler) is None
                    rows = connection.exec_driver_sql("SELECT * FROM readings ORDER BY id").all()
                    ids = connection.exec_driver_sql("SELECT last_value FROM readings_id_seq").scalar()
                    states.append((rows, ids, filler.counter, filler.unfilled, filler.shapes))
                    connection.rollback()
            finally:
                engine.dispose()
                pg_server.drop_database(database)
    assert states[0] == states[1]
    rows = states[0][0]
    assert any(row.device == "seed" for row in rows) and len(rows) > 3  # generated rows and the seed


TOUCH = "op.execute(\"CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'\")"
TRIGGER = 'op.execute("CREATE TRIGGER trg BEFORE UPDATE ON readings FOR EACH ROW EXECUTE FUNCTION touch()")'


@pytest.mark.parametrize(
    ("upgrade", "downgrade", "left"),
    [
        (
            "op.execute(\"CREATE FUNCTION double_it(v float) RETURNS float LANGUAGE sql AS 'SELECT v * 2'\")",
            'op.execute("SELECT 1")',
            "function double_it(v double precision)",
        ),
        (
            'op.execute("ALTER TABLE readings ENABLE ROW LEVEL SECURITY")\n'
            'op.execute("CREATE POLICY mine ON readings USING (value > 0)")',
            'op.execute("ALTER TABLE readings DISABLE ROW LEVEL SECURITY")',
            "policy readings.mine",
        ),
        ('op.execute("CREATE EXTENSION pg_trgm")', 'op.execute("SELECT 1")', "extension pg_trgm"),
        (f"{TOUCH}\n{TRIGGER}", 'op.execute("DROP TRIGGER trg ON readings")', "function touch()"),
        (
            'op.execute("GRANT SELECT ON readings TO PUBLIC")',
            'op.execute("SELECT 1")',
            "grant on table readings to PUBLIC",
        ),
        (
            "op.execute(\"COMMENT ON INDEX readings_pkey IS 'by id'\")",
            'op.execute("SELECT 1")',
            "comment on index readings_pkey",
        ),
    ],
    ids=["function", "policy", "extension", "trigger-function", "grant", "comment"],
)
def test_downgrade_forgetting_a_function_policy_extension_names_it(
    tmp_path: Path, pg_server: Server, upgrade: str, downgrade: str, left: str
) -> None:
    rev = Rev("0002", "0001", upgrade=upgrade, downgrade=downgrade, message="leaky")
    checks = check_on(pg_server, make_project(tmp_path, models=READINGS_MODELS, revisions=[FIRST, rev]))
    failure = _failures(checks)[0]
    assert failure.revision == "0002"
    assert (
        failure.message
        == f'revision 0002 (migrations/versions/0002_leaky.py, "leaky"): downgrade leaves {left} behind'
    )


FIRST_MODELS = READINGS_MODELS.replace('    sa.Column("device", sa.String(32)),\n', "")
EVERY_KIND_UP = "\n".join(
    [
        'op.execute("CREATE EXTENSION pg_trgm")',
        TOUCH,
        TRIGGER,
        'op.execute("ALTER TABLE readings ENABLE ROW LEVEL SECURITY")',
        'op.execute("CREATE POLICY mine ON readings USING (value > 0)")',
        'op.execute("GRANT SELECT ON readings TO PUBLIC")',
        'op.execute("REVOKE EXECUTE ON FUNCTION touch() FROM PUBLIC")',
        "op.execute(\"COMMENT ON FUNCTION touch() IS 'keeps rows fresh'\")",
        "op.execute(\"COMMENT ON INDEX readings_pkey IS 'by id'\")",
    ]
)
EVERY_KIND_DOWN = "\n".join(
    [
        'op.execute("COMMENT ON INDEX readings_pkey IS NULL")',
        'op.execute("REVOKE SELECT ON readings FROM PUBLIC")',
        'op.execute("DROP POLICY mine ON readings")',
        'op.execute("ALTER TABLE readings DISABLE ROW LEVEL SECURITY")',
        'op.execute("DROP TRIGGER trg ON readings")',
        'op.execute("DROP FUNCTION touch()")',
        'op.execute("DROP EXTENSION pg_trgm")',
    ]
)


def test_functions_triggers_policies_grants_and_extensions_undone_pass_and_are_no_drift(
    tmp_path: Path, pg_server: Server
) -> None:
    rev = Rev("0002", "0001", upgrade=EVERY_KIND_UP, downgrade=EVERY_KIND_DOWN, message="the rest")
    checks = check_on(pg_server, make_project(tmp_path, models=FIRST_MODELS, revisions=[FIRST, rev]))
    assert [(c.name, c.status) for c in checks] == [
        ("stairway", PASS),
        ("stairway", PASS),
        ("round-trip", PASS),
        ("drift", PASS),
    ]


@pytest.mark.parametrize(
    ("upgrade", "downgrade", "left"),
    [
        ('op.execute("CREATE SCHEMA iot")', 'op.execute("SELECT 1")', "schema iot"),
        (
            'op.execute("CREATE DOMAIN positive AS numeric CHECK (VALUE > 0)")',
            'op.execute("SELECT 1")',
            "domain positive",
        ),
        (
            'op.execute("CREATE VIEW big AS SELECT id FROM readings WHERE value > 10")',
            'op.execute("SELECT 1")',
            "view big",
        ),
        (
            'op.execute("CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n FROM readings")',
            'op.execute("SELECT 1")',
            "view totals",
        ),
        ('op.execute("CREATE SEQUENCE counter INCREMENT 5")', 'op.execute("SELECT 1")', "sequence counter"),
        (
            f"{TOUCH}\n{TRIGGER}",
            'op.execute("DROP FUNCTION touch() CASCADE")\n' + TOUCH,
            "function touch()",
        ),
        (
            'op.execute("ALTER TABLE readings ENABLE ROW LEVEL SECURITY")',
            'op.execute("SELECT 1")',
            "row security readings",
        ),
        (
            'op.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO PUBLIC")',
            'op.execute("SELECT 1")',
            "default privileges for tables created by postgres in schema public to PUBLIC",
        ),
        (
            'op.execute("CREATE TABLE events (at date NOT NULL, n int) PARTITION BY RANGE (at)")\n'
            'op.execute("CREATE TABLE events_2026 PARTITION OF events "\n'
            "\"FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')\")",
            'op.execute("DROP TABLE events_2026")',
            "table events",
        ),
    ],
    ids=["schema", "domain", "view", "materialized-view", "sequence", "function-recreated", "row-security",
         "default-privileges", "partitioned-table"],
)  # fmt: skip
def test_downgrade_forgetting_any_other_kind_names_it(
    tmp_path: Path,
    pg_server: Server,
    upgrade: str,
    downgrade: str,
    left: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every kind the snapshot holds is part of the leftover check, not only tables and columns."""
    if left == "schema iot":  # a schema shows only when it is one the project compares
        (tmp_path / "pyproject.toml").write_text('[tool.schema-warden]\nschemas = ["public", "iot"]\n')
    rev = Rev("0002", "0001", upgrade=upgrade, downgrade=downgrade, message="leaky")
    checks = check_on(pg_server, make_project(tmp_path, models=READINGS_MODELS, revisions=[FIRST, rev]))
    failures = _failures(checks)
    assert failures and failures[0].revision == "0002", [c.message for c in checks]
    assert failures[0].message.startswith(
        'revision 0002 (migrations/versions/0002_leaky.py, "leaky"): downgrade '
    )
    assert left in " ".join([failures[0].message, *failures[0].details]), failures[0]
