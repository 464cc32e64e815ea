"""The trace (proof/trace.py): locks, rewrites and durations of the statements a revision's
upgrade really ran, measured on the session's throwaway server; and ``lint --trace``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixture_project import Rev, make_project
from schema_warden.commands import lint as lint_migrations
from schema_warden.lint.rules import ACCESS_EXCLUSIVE
from schema_warden.project.loader import loaded_project
from schema_warden.proof import trace as tracing
from schema_warden.proof.stairway import apply
from schema_warden.server.postgres import Server

CREATE = Rev(
    "0001",
    None,
    upgrade="""
        op.create_table(
            "readings",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("unit", sa.String(32)),
            sa.Column("label", sa.String(64)),
            sa.Column("count", sa.Integer),
        )
        op.execute(
            "INSERT INTO readings (unit, label, count) SELECT 'C', 'x', g FROM generate_series(1, 50) g"
        )
    """,
)

# revision -> upgrade body, each on the table of 0001
STEPS = {
    "0002": 'op.add_column("readings", sa.Column("note", sa.Text()))',
    "0003": 'op.add_column("readings", sa.Column("source", sa.Text(), server_default="d", nullable=False))',
    "0004": 'op.add_column("readings", sa.Column("uid", sa.Uuid(),\n'
    '              server_default=sa.text("gen_random_uuid()")))',
    "0005": 'op.alter_column("readings", "unit", type_=sa.String(64), existing_type=sa.String(32))',
    "0006": 'op.alter_column("readings", "label", type_=sa.String(16), existing_type=sa.String(64))',
    "0007": 'op.alter_column("readings", "count", type_=sa.BigInteger(), existing_type=sa.Integer())',
    "0008": 'op.create_index("ix_readings_unit", "readings", ["unit"])',
    "0009": "with op.get_context().autocommit_block():\n"
    '    op.create_index("ix_readings_label", "readings", ["label"], postgresql_concurrently=True)',
    "0010": 'op.create_index("ix_readings_note", "readings", ["note"], postgresql_concurrently=True)',
}


def _revisions() -> list[Rev]:
    revisions, down = [CREATE], "0001"
    for rev, body in STEPS.items():
        revisions.append(Rev(rev, down, upgrade=body))
        down = rev
    return revisions


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory, pg_server: Server) -> Iterator[dict[str, tracing.Trace]]:
    """Each revision upgraded in order on a fresh database, traced; the last one fails."""
    from sqlalchemy import create_engine, pool

    ini = make_project(tmp_path_factory.mktemp("trace"), revisions=_revisions())
    database = f"trace_{uuid.uuid4().hex[:10]}"
    pg_server.create_database(database)
    engine = create_engine(pg_server.url(database), poolclass=pool.NullPool)
    found: dict[str, tracing.Trace] = {}
    try:
        with loaded_project(ini) as project, engine.connect() as connection:
            for script in project.revisions():
                with tracing.recording(connection, script.path) as trace:
                    error = apply(project, connection, script)
                found[script.revision] = trace
                if error is not None:
                    found[f"{script.revision}-error"] = trace
                    break
        yield found
    finally:
        engine.dispose()
        pg_server.drop_database(database)


def _statement(trace: tracing.Trace, start: str) -> tracing.TracedStatement:
    matches = [s for s in trace.statements if s.sql.lstrip().upper().startswith(start)]
    assert len(matches) == 1, [s.sql for s in trace.statements]
    return matches[0]


def _modes(statement: tracing.TracedStatement, relation: str = "readings") -> set[str]:
    return {lock.mode for lock in statement.facts.locks if lock.relation == relation}


def test_add_column_without_default_takes_access_exclusive_and_does_not_rewrite(
    traces: dict[str, tracing.Trace],
) -> None:
    added = _statement(traces["0002"], "ALTER TABLE")
    assert ACCESS_EXCLUSIVE in _modes(added)
    assert added.facts.access_exclusive() == ["readings"]
    assert added.facts.rewritten == ()
    assert added.facts.in_transaction is True
    assert added.facts.duration_s > 0


def test_add_column_with_a_constant_default_does_not_rewrite(traces: dict[str, tracing.Trace]) -> None:
    added = _statement(traces["0003"], "ALTER TABLE")
    assert ACCESS_EXCLUSIVE in _modes(added)
    assert added.facts.rewritten == ()  # PostgreSQL 11+: the default is stored, not written


def test_add_column_with_a_volatile_default_rewrites(traces: dict[str, tracing.Trace]) -> None:
    added = _statement(traces["0004"], "ALTER TABLE")
    assert added.facts.rewritten == ("readings",)


def test_widening_a_varchar_does_not_rewrite(traces: dict[str, tracing.Trace]) -> None:
    widened = _statement(traces["0005"], "ALTER TABLE")
    assert ACCESS_EXCLUSIVE in _modes(widened)
    assert widened.facts.rewritten == ()


@pytest.mark.parametrize("revision", ["0006", "0007"], ids=["narrow-varchar", "int-to-bigint"])
def test_narrowing_and_int_to_bigint_rewrite(traces: dict[str, tracing.Trace], revision: str) -> None:
    changed = _statement(traces[revision], "ALTER TABLE")
    assert ACCESS_EXCLUSIVE in _modes(changed)
    assert changed.facts.rewritten == ("readings",)
    assert "table readings rewritten" in changed.facts.summary()


def test_create_index_takes_a_share_lock_that_blocks_writes(traces: dict[str, tracing.Trace]) -> None:
    created = _statement(traces["0008"], "CREATE INDEX")
    assert _modes(created) == {"ShareLock"}
    assert created.facts.access_exclusive() == []
    # the new index itself is locked, as a relation that did not exist before
    assert any(lock.relation == "ix_readings_unit" and not lock.existed for lock in created.facts.locks)


def test_create_index_concurrently_in_autocommit_block_holds_no_lock_after_it(
    traces: dict[str, tracing.Trace],
) -> None:
    created = _statement(traces["0009"], "CREATE INDEX CONCURRENTLY")
    assert created.facts.in_transaction is False
    assert _modes(created) == set()  # its locks ended with its own transactions


def test_create_index_concurrently_in_a_transaction_fails_and_the_trace_keeps_it(
    traces: dict[str, tracing.Trace],
) -> None:
    assert "0010-error" in traces
    failed = _statement(traces["0010"], "CREATE INDEX CONCURRENTLY")
    assert failed.facts.in_transaction is True
    assert failed.facts.error is not None
    assert "cannot run inside a transaction block" in failed.facts.error


def test_each_statement_knows_the_line_of_its_op_call(traces: dict[str, tracing.Trace]) -> None:
    added = _statement(traces["0002"], "ALTER TABLE")
    source = Path(traces["0002"].revision_file).read_text().splitlines()
    assert added.line is not None
    assert "op.add_column" in source[added.line - 1]


def test_tracing_leaves_sqlalchemy_listeners_as_they_were(pg_server: Server) -> None:
    from sqlalchemy import create_engine, pool, text

    engine = create_engine(pg_server.url("postgres"), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            with tracing.recording(connection, __file__) as trace:
                connection.execute(text("SELECT 1"))
            connection.execute(text("SELECT 2"))
        assert [s.sql for s in trace.statements] == ["SELECT 1"]  # SELECT 2 ran after it
    finally:
        engine.dispose()


# --- lint --trace ------------------------------------------------------------------------

LINT_REVISIONS = [
    CREATE,
    Rev("0002", "0001", upgrade=STEPS["0005"]),  # widening: no rewrite, not flagged
    Rev("0003", "0002", upgrade=STEPS["0007"]),  # int -> bigint: rewritten, flagged
    Rev(
        "0004",
        "0003",
        upgrade="""
            bind = op.get_bind()
            if bind.execute(sa.text("SELECT count(*) FROM readings")).scalar() > 0:
                op.execute("SET lock_timeout = '2s'")
                op.drop_index("ix_missing", table_name="readings", if_exists=True)
        """,
    ),
    Rev("0005", "0004", upgrade=STEPS["0010"]),  # CONCURRENTLY in a transaction: fails
]


@pytest.fixture(scope="module")
def traced_report(tmp_path_factory: pytest.TempPathFactory) -> lint_migrations.LintReport:
    ini = make_project(tmp_path_factory.mktemp("lint-trace"), revisions=LINT_REVISIONS)
    with loaded_project(ini) as project:
        return lint_migrations.run(project, everything=True, trace=True)


def _rules(report: lint_migrations.LintReport) -> dict[str, list[str]]:
    return {r.revision: [f.rule for f in r.findings] for r in report.results}


def test_lint_trace_does_not_flag_a_widening_but_flags_a_rewrite(
    traced_report: lint_migrations.LintReport,
) -> None:
    rules = _rules(traced_report)
    assert "changing-column-type" not in rules["0002"]
    assert "changing-column-type" in rules["0003"]
    [finding] = [f for f in traced_report.results[2].findings if f.rule == "changing-column-type"]
    assert finding.traced == "ACCESS EXCLUSIVE on readings, table readings rewritten"
    assert finding.source_line is not None


def test_lint_trace_runs_a_revision_that_reads_the_database(
    traced_report: lint_migrations.LintReport,
) -> None:
    rules = _rules(traced_report)
    assert "unrenderable-revision" not in rules["0004"]
    assert traced_report.results[3].statements > 0


def test_lint_trace_flags_concurrently_in_a_transaction_and_notes_the_failure(
    traced_report: lint_migrations.LintReport,
) -> None:
    last = traced_report.results[4]
    assert "concurrently-in-transaction" in [f.rule for f in last.findings]
    assert last.note is not None and "upgrade failed on the throwaway server" in last.note


def test_lint_trace_text_lists_the_risky_statements_per_revision(
    traced_report: lint_migrations.LintReport,
) -> None:
    text = lint_migrations.render_text(traced_report)
    assert (
        "  0003: ALTER TABLE readings ALTER COLUMN count TYPE BIGINT — "
        "ACCESS EXCLUSIVE on readings, table readings rewritten"
    ) in text.splitlines()
    assert text.rstrip().endswith("traced on a throwaway PostgreSQL server")


def test_offline_lint_says_it_is_offline_and_flags_every_type_change(tmp_path: Path) -> None:
    ini = make_project(tmp_path, revisions=LINT_REVISIONS[:3])
    with loaded_project(ini) as project:
        report = lint_migrations.run(project, everything=True)
    rules = _rules(report)
    assert "changing-column-type" in rules["0002"]  # offline cannot know it does not rewrite
    assert "offline SQL" in lint_migrations.render_text(report).splitlines()[-1]


# --- our 25 cases (tests/data/lint_cases.py), each a history of its own ------------------


def _case_ids() -> list[str]:
    from data.lint_cases import CASES

    return [case_id for case_id, _, _ in CASES]


@pytest.mark.parametrize("case_id", _case_ids())
def test_lint_trace_finds_every_problem_of_our_cases_and_raises_no_false_alarm(
    tmp_path: Path, case_id: str
) -> None:
    from data.lint_cases import BASE, CASES

    [(_, body, problem)] = [case for case in CASES if case[0] == case_id]
    ini = make_project(
        tmp_path, revisions=[Rev("0000", None, upgrade=BASE), Rev("0001", "0000", upgrade=body)]
    )
    with loaded_project(ini) as project:
        report = lint_migrations.run(project, everything=True, trace=True)
    base, case = report.results
    assert [f.rule for f in base.findings] == []
    flagged = [f.rule for f in case.findings if f.allowed is None]
    assert bool(flagged) == problem, flagged
