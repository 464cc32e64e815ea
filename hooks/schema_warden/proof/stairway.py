"""The stairway: every revision up, down and up again, each step compared by snapshot.

For each revision in order (branches and merge points included): upgrade it alone and
snapshot; downgrade it alone and compare with the snapshot before it (the downgrade leaves
no trace); upgrade again and compare (consistency). Then the round trip head -> base ->
head. One connection, one snapshot per step; each step is a small function so that callers
(benchmark, incremental cache) can drive them one by one. ``parallel.run_stairway(jobs=None)`` lets a
forked child prove the first part of a long stairway at the same time
(proof/parallel.py), with the same results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from schema_warden.errors import one_line
from schema_warden.project.frames import user_traceback
from schema_warden.project.history import downgrade_is_empty
from schema_warden.project.loader import Project
from schema_warden.project.steps import MigrationFailed
from schema_warden.proof.data_check import Filler, allowed_reason, count_rows, losses
from schema_warden.render.report import FAIL, NOTE, PASS, CheckResult
from schema_warden.schema import incremental
from schema_warden.schema.diff import Change, compare
from schema_warden.schema.snapshot import Snapshot

NAME = "stairway"
ROUND_TRIP = "round-trip"
_SQL_SHOWN = 400  # characters of a failing statement shown


@dataclass(frozen=True)
class StepError:
    """A migration step that raised: one line and the trimmed detail."""

    message: str
    details: tuple[str, ...]
    sqlstate: str | None = None  # Postgres error code of a SQL failure


@dataclass(frozen=True)
class RevisionOutcome:
    result: CheckResult
    after: Snapshot | None  # schema with the revision applied; None when its upgrade failed
    stop: bool  # later revisions cannot run on this state
    irreversible: bool = False  # its downgrade does nothing although its upgrade changed the schema


def snapshot(project: Project, connection: Any) -> Snapshot:
    """Snapshot the schemas the project uses, without the tables it excludes."""
    snap = incremental.take(
        connection,
        schemas=project.settings.schemas,
        exclude_tables=project.settings.exclude_tables,
    )
    connection.rollback()  # end the read-only transaction
    return snap


def ignored_tables(project: Project) -> tuple[str, ...]:
    return ("alembic_version", *sorted(project.settings.exclude_tables))


def diff(project: Project, before: Snapshot, after: Snapshot) -> list[Change]:
    if _same(before, after):
        return []
    return compare(before, after, ignore_tables=ignored_tables(project))


_SECTIONS = tuple(f.name for f in fields(Snapshot))


def _same(before: Snapshot, after: Snapshot) -> bool:
    """True when every object of ``after`` is the very object of ``before`` (snapshot.take
    shares equal objects between snapshots): the schemas are equal, nothing to compare."""
    for name in _SECTIONS:
        old, new = getattr(before, name), getattr(after, name)
        if old.keys() != new.keys() or any(new[key] is not value for key, value in old.items()):
            return False
    return True


def label(project: Project, revision: Any) -> str:
    """``revision 0003 (versions/0003_add_humidity.py, "add humidity")``."""
    doc = one_line(revision.doc or "")
    text = f"revision {revision.revision} ({project.revision_file(revision)}"
    return text + (f', "{doc}")' if doc else ")")


def describe_error(project: Project, err: BaseException) -> StepError:
    """The error of a migration: SQL error text for SQL failures, the migration's own frames."""
    from sqlalchemy import exc

    cause = err.cause if isinstance(err, MigrationFailed) else err
    details: list[str] = []
    sqlstate = None
    if isinstance(cause, exc.DBAPIError) and cause.orig is not None:
        sqlstate = getattr(cause.orig, "pgcode", None) or getattr(cause.orig, "sqlstate", None)
        text = str(cause.orig).strip()
        message = one_line(text)
        details.extend(line.rstrip() for line in text.splitlines()[1:] if line.strip())
        statement = " ".join(str(cause.statement or "").split())
        if statement:
            shown = statement if len(statement) <= _SQL_SHOWN else statement[:_SQL_SHOWN] + " ..."
            details.append(f"SQL: {shown}")
    else:
        message = f"{type(cause).__name__}: {one_line(str(cause))}"
    if isinstance(err, MigrationFailed) and err.at_commit:
        details.append("(raised when its transaction was committed: a deferred constraint or trigger)")
    else:
        frames = _migration_frames(project, cause).splitlines()[:-1]  # last line repeats the message
        details.extend(frames)
    return StepError(message, tuple(details), sqlstate)


def _migration_frames(project: Project, err: BaseException) -> str:
    text = user_traceback(err, project.root)
    env = project.env_py.name
    lines = text.splitlines()
    kept: list[str] = []
    skip_next = False
    for line in lines[:-1]:
        if line.startswith("  File "):
            skip_next = f'{env}"' in line.split(",")[0]
            if skip_next:
                continue
        elif skip_next:
            continue
        kept.append(line)
    return "\n".join([*kept, lines[-1]])


def _run(project: Project, connection: Any, action: Callable[[], None]) -> StepError | None:
    try:
        action()
        connection.commit()
    except MigrationFailed as err:
        connection.rollback()
        project.rolled_back(connection)
        return describe_error(project, err)
    except Exception as err:
        from sqlalchemy import exc

        if not isinstance(err, exc.SQLAlchemyError):
            raise
        connection.rollback()
        project.rolled_back(connection)
        return describe_error(project, err)
    return None


def apply(project: Project, connection: Any, revision: Any, *, downgrade: bool = False) -> StepError | None:
    """Upgrade (or downgrade) exactly ``revision`` and commit; the error if it raised."""
    return _run(project, connection, lambda: project.step(connection, revision, downgrade=downgrade))


def migrate(project: Project, connection: Any, target: str, *, downgrade: bool = False) -> StepError | None:
    """``upgrade heads`` / ``downgrade base`` and commit; the error if a revision raised."""
    return _run(project, connection, lambda: project.migrate(connection, target, downgrade=downgrade))


def _fail(project: Project, revision: Any, what: str, details: Sequence[str] = ()) -> CheckResult:
    return CheckResult(NAME, FAIL, f"{label(project, revision)}: {what}", revision.revision, tuple(details))


def trace_message(change: Change) -> str:
    """How a difference after a downgrade reads: what was left behind or not restored."""
    if change.action == "added":
        return f"downgrade leaves {change.kind} {change.name} behind"
    if change.action == "removed":
        return f"downgrade removes {change.kind} {change.name}, which existed before the upgrade"
    return f"downgrade does not restore {change.kind} {change.name} ({change.detail})"


def fill(filler: Filler | None, connection: Any, before: Snapshot) -> dict[str, int]:
    """Generated rows in every table before an upgrade (data check); the row counts."""
    if filler is None:
        return {}
    return filler.fill(connection, before, skip=("alembic_version",))


def data_losses(
    project: Project, connection: Any, revision: Any, counts: dict[str, int], after: Snapshot
) -> tuple[list[str], list[str]]:
    """(problems, notes): tables that lost rows in the upgrade; allowed ones become notes."""
    if not counts:
        return [], []
    lost = losses(counts, count_rows(connection, after, counts))
    if not lost:
        return [], []
    reason = allowed_reason(revision.path)
    if reason is not None:
        return [], [f"{loss.message()} (allowed: {reason})" for loss in lost]
    hint = "if the loss is intended: # schema-warden: allow data-loss -- reason (in the revision file)"
    return [*(loss.message() for loss in lost), hint], []


NOT_NULL_VIOLATION = "23502"  # rows any real table has break it too: never excused


def _empty_tables(connection: Any, counts: dict[str, int]) -> None:
    """Remove the generated rows (the filler puts them back at the next revision)."""
    tables = [key for key, count in counts.items() if count]
    if tables:
        names = ", ".join(".".join(f'"{part}"' for part in key.split(".")) for key in tables)
        connection.exec_driver_sql(f"TRUNCATE {names} CASCADE")
        connection.commit()


def _traced_apply(project: Project, connection: Any, revision: Any) -> StepError | None:
    """The upgrade, recorded statement by statement when ``project.traces`` asks for it
    (``check --trace``): with the generated rows in the tables, as production has rows."""
    if project.traces is None:
        return apply(project, connection, revision)
    from schema_warden.proof import trace

    with trace.recording(connection, revision.path) as recorded:
        error = apply(project, connection, revision)
    project.traces[revision.revision] = recorded
    return error


def upgrade_with_rows(
    project: Project, connection: Any, revision: Any, before: Snapshot, filler: Filler | None
) -> tuple[dict[str, int], StepError | None, str | None]:
    """(row counts, error, note): the revision's upgrade on tables holding generated rows.

    The data check never invents a failure: an upgrade that fails on the generated rows
    (a cast of generated text, its own row-count assertion) is run again on empty tables and,
    when that passes, proven without data, with a note naming the error. A NOT NULL
    violation is not excused: every table with rows fails it. ``no-data`` revisions run on
    empty tables from the start.
    """
    counts = fill(filler, connection, before)
    if revision.revision in project.settings.no_data:
        _empty_tables(connection, counts)
        error = apply(project, connection, revision)
        return {}, error, None if error else "proven on empty tables (no-data in [tool.schema-warden])"
    error = _traced_apply(project, connection, revision)
    if error is None or not counts or error.sqlstate == NOT_NULL_VIOLATION:
        return counts, error, None
    _empty_tables(connection, counts)
    if apply(project, connection, revision) is not None:
        return counts, error, None  # fails on empty tables too: the first error is the finding
    note = (
        f"rejects the generated rows: {error.message}; proven without data (if that is the data's fault, "
        f'not the migration\'s: no-data = ["{revision.revision}"] in [tool.schema-warden])'
    )
    return {}, None, note


def check_revision(
    project: Project,
    connection: Any,
    revision: Any,
    before: Snapshot,
    filler: Filler | None = None,
    *,
    empty: bool | None = None,
) -> RevisionOutcome:
    """Rows in, up, snapshot, rows kept, down (no trace vs ``before``), up again (same schema).

    ``empty``: whether the revision's downgrade() does nothing, when the caller knows already.
    """
    counts, error, without = upgrade_with_rows(project, connection, revision, before, filler)
    if error is not None:
        details = list(error.details)
        if counts and error.sqlstate == NOT_NULL_VIOLATION:
            details.append(
                "(the tables held generated rows: a database with data fails the same way; "
                "give the new column a server default, or backfill it before SET NOT NULL)"
            )
        result = _fail(project, revision, f"upgrade failed: {error.message}", details)
        return RevisionOutcome(result, None, stop=True)
    after = snapshot(project, connection)
    problems, notes = data_losses(project, connection, revision, counts, after)
    if without is not None:
        notes = [without, *notes]

    if empty is None:
        empty = downgrade_is_empty(revision.path)
    if revision.revision in project.below_minimum():
        if problems:
            return RevisionOutcome(_fail(project, revision, problems[0], problems[1:]), after, stop=False)
        minimum = project.settings.minimum_downgrade_revision
        doc = one_line(revision.doc or "")
        title = f"{revision.revision} ({doc})" if doc else revision.revision
        kept = ", rows kept" if counts else ""
        msg = f"{title}: upgrade{kept}; downgrade not proven (minimum-downgrade-revision = {minimum})"
        return RevisionOutcome(CheckResult(NAME, NOTE, msg, revision.revision), after, stop=False)
    if empty and not problems and not diff(project, before, after):
        # a merge point or a data-only revision: its empty downgrade undoes all there is
        doc = one_line(revision.doc or "")
        title = f"{revision.revision} ({doc})" if doc else revision.revision
        msg = f"{title}: upgrade changes no schema, so its empty downgrade is complete"
        return RevisionOutcome(CheckResult(NAME, PASS, msg, revision.revision), after, stop=False)
    if empty and problems:
        result = _fail(project, revision, problems[0], problems[1:])
        return RevisionOutcome(result, after, stop=False, irreversible=True)
    if empty:
        if revision.revision in project.settings.irreversible:
            msg = f"{label(project, revision)}: downgrade not implemented (listed as irreversible)"
            result = CheckResult(NAME, NOTE, msg, revision.revision)
            return RevisionOutcome(result, after, stop=False, irreversible=True)
        what = (
            "downgrade is not implemented (its body is pass): write it, or list the revision in "
            f'[tool.schema-warden] irreversible = ["{revision.revision}"]'
        )
        return RevisionOutcome(_fail(project, revision, what), after, stop=False, irreversible=True)

    error = apply(project, connection, revision, downgrade=True)
    if error is not None:
        problems.append(f"downgrade failed: {error.message}")
        problems.extend(error.details)
        return RevisionOutcome(_fail(project, revision, problems[0], problems[1:]), after, stop=False)
    trace = diff(project, before, snapshot(project, connection))
    if trace:
        problems.append(trace_message(trace[0]))
        problems.extend(trace_message(c) for c in trace[1:])

    error = apply(project, connection, revision)
    if error is not None:
        failed = f"upgrade fails after its downgrade: {error.message}"
        if problems:  # the trace is the cause: name it first
            details = [*problems[1:], f"the upgrade then fails: {error.message}", *error.details]
            return RevisionOutcome(_fail(project, revision, problems[0], details), None, stop=True)
        return RevisionOutcome(_fail(project, revision, failed, error.details), None, stop=True)
    again = snapshot(project, connection)
    drifted = diff(project, after, again)
    if drifted:
        problems.append("upgrade after downgrade gives a different schema:")
        problems.extend(f"  {c.line()}" for c in drifted)
    if problems:
        return RevisionOutcome(_fail(project, revision, problems[0], problems[1:]), again, stop=False)
    if notes:
        message = f"{label(project, revision)}: {notes[0]}"
        return RevisionOutcome(
            CheckResult(NAME, NOTE, message, revision.revision, tuple(notes[1:])), again, False
        )
    doc = one_line(revision.doc or "")
    title = f"{revision.revision} ({doc})" if doc else revision.revision
    kept = ", rows kept" if counts else ""
    message = f"{title}: upgrade{kept}, downgrade (no trace), upgrade (same schema)"
    return RevisionOutcome(CheckResult(NAME, PASS, message, revision.revision), again, stop=False)


@dataclass(frozen=True)
class StairwayResult:
    checks: tuple[CheckResult, ...]
    base: Snapshot  # the empty database
    head: Snapshot | None  # the schema at head; None when the stairway stopped early
    reversible: bool  # every downgrade is implemented
    minimum: Snapshot | None = None  # the schema at minimum-downgrade-revision, when it ran here


@dataclass(frozen=True)
class Stretch:
    """Consecutive revisions proven on one connection, one result each, in order."""

    checks: tuple[CheckResult, ...]  # one per revision that ran
    after: Snapshot | None  # the schema after the last one; None unless every revision ran
    stopped: bool  # an upgrade failed: the revisions after the last result cannot run
    reversible: bool  # every downgrade that ran is implemented
    minimum: Snapshot | None = None  # the schema at minimum-downgrade-revision, when it ran here


def prove(
    project: Project,
    connection: Any,
    revisions: Sequence[Any],
    current: Snapshot,
    filler: Filler | None,
    *,
    fail_fast: bool = False,
    on_result: Callable[[CheckResult], None] | None = None,
) -> Stretch:
    """Check ``revisions`` one after the other; ``current`` is the schema before the first."""
    checks: list[CheckResult] = []
    reversible = True
    at_minimum: Snapshot | None = None
    for revision in revisions:
        empty = downgrade_is_empty(revision.path)
        outcome = check_revision(project, connection, revision, current, filler, empty=empty)
        checks.append(outcome.result)
        if revision.revision == project.settings.minimum_downgrade_revision:
            at_minimum = outcome.after
        if on_result is not None:
            on_result(outcome.result)
        if outcome.irreversible:
            reversible = False
        if outcome.stop or outcome.after is None:
            return Stretch(tuple(checks), None, stopped=True, reversible=reversible, minimum=at_minimum)
        if fail_fast and outcome.result.status == FAIL:
            return Stretch(tuple(checks), None, stopped=False, reversible=reversible, minimum=at_minimum)
        current = outcome.after
    return Stretch(tuple(checks), current, stopped=False, reversible=reversible, minimum=at_minimum)


def rehearse(
    project: Project, connection: Any, revisions: Sequence[Any], current: Snapshot, filler: Filler | None
) -> int | None:
    """The stairway's writes for ``revisions`` without its checks: rows in, up, down, up.

    Leaves the database and ``filler`` as :func:`prove` would (so what follows is proven on
    the very same data) at about half its cost: one snapshot per revision instead of three
    (none without the data check), no comparisons. ``current``: the schema before the first.
    Returns the position of the revision where the stairway stops (an upgrade fails), or None.
    """
    for index, revision in enumerate(revisions):
        # the rows' snapshot only with the data check, as prove takes it
        before = current if index == 0 or filler is None else snapshot(project, connection)
        if upgrade_with_rows(project, connection, revision, before, filler)[1] is not None:
            return index
        if downgrade_is_empty(revision.path):
            continue
        if apply(project, connection, revision, downgrade=True) is not None:
            continue  # as in check_revision: the revision stays applied, no second upgrade
        if apply(project, connection, revision) is not None:
            return index
    return None


def assemble(
    base: Snapshot, revisions: Sequence[Any], stretch: Stretch, unfilled: dict[str, str]
) -> StairwayResult:
    """The stairway's result for ``revisions`` from the stretch that proved them (or stopped)."""
    checks = list(stretch.checks)
    left = revisions[len(checks) :]
    if stretch.stopped and left and checks:
        skipped = ", ".join(r.revision for r in left)
        stopped_at = revisions[len(checks) - 1].revision
        checks.append(CheckResult(NAME, NOTE, f"not run for {skipped}: the stairway stopped at {stopped_at}"))
    checks_noted = _with_data_note(checks, unfilled)
    return StairwayResult(checks_noted, base, stretch.after, stretch.reversible, stretch.minimum)


def _with_data_note(checks: list[CheckResult], unfilled: dict[str, str]) -> tuple[CheckResult, ...]:
    """Tables the data check could not fill are named (their rows were not checked)."""
    if not unfilled:
        return tuple(checks)
    lines = [f"table {table}: {reason}" for table, reason in sorted(unfilled.items())]
    message = f"not filled with generated rows, so their rows were not checked: {lines[0]}"
    return (*checks, CheckResult("data", NOTE, message, None, tuple(lines[1:])))


def round_trip(
    project: Project,
    connection: Any,
    base: Snapshot,
    head: Snapshot,
    target: str = "base",
    why: str = "proven earlier",
) -> CheckResult:
    """head -> ``target`` (base: only alembic_version may remain) -> head (the same schema as before).

    ``target`` is where the stairway started: base, or the last revision an earlier run proved
    (``base`` is then the schema at that revision).
    """
    where = "base" if target == "base" else f"revision {target} ({why})"
    error = migrate(project, connection, target, downgrade=True)
    if error is not None:
        return CheckResult(
            ROUND_TRIP, FAIL, f"downgrade to {where} failed: {error.message}", None, error.details
        )
    left = diff(project, base, snapshot(project, connection))
    error = migrate(project, connection, "heads")
    if error is not None:
        details = [c.line() for c in left] + list(error.details)
        return CheckResult(
            ROUND_TRIP, FAIL, f"upgrade from {where} failed: {error.message}", None, tuple(details)
        )
    if left:
        remains = "(only alembic_version may remain)" if target == "base" else "(it was not there before)"
        return CheckResult(
            ROUND_TRIP,
            FAIL,
            f"downgrade to {where} leaves {left[0].kind} {left[0].name} behind {remains}",
            None,
            tuple(c.line() for c in left),
        )
    changed = diff(project, head, snapshot(project, connection))
    if changed:
        short = "base" if target == "base" else target
        return CheckResult(
            ROUND_TRIP,
            FAIL,
            f"upgrade head -> {short} -> head gives a different schema than the stairway",
            None,
            tuple(c.line() for c in changed),
        )
    if target == "base":
        return CheckResult(ROUND_TRIP, PASS, "upgrade head, downgrade base (nothing left), upgrade head")
    return CheckResult(ROUND_TRIP, PASS, f"upgrade head, downgrade to {target} (nothing left), upgrade head")
