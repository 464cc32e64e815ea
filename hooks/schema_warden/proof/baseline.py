"""Histories that do not start from an empty database: a baseline schema first.

Projects whose app creates its tables with ``metadata.create_all`` (or a SQL dump) and only
then stamps Alembic's head never replay from empty: their first revision expects tables to
exist. ``baseline`` (settings) is that schema, made before anything runs:

- without ``baseline-revision`` the stairway runs on top of it as usual, and the round trip's
  ``downgrade base`` must give the baseline back;
- with ``baseline-revision`` (a revision, or ``head``) the database starts as the baseline
  stamped there, as a fresh install is: every revision from there down is downgraded,
  upgraded again (the same schema) and downgraded for good, step by step; then
  ``upgrade heads`` from the bottom must rebuild exactly the stamped baseline.
"""

from __future__ import annotations

from typing import Any

from schema_warden.errors import ProjectError, one_line
from schema_warden.project.frames import user_traceback
from schema_warden.project.loader import Project
from schema_warden.proof.stairway import (
    NAME,
    ROUND_TRIP,
    StairwayResult,
    apply,
    diff,
    label,
    migrate,
    snapshot,
)
from schema_warden.render.report import FAIL, PASS, CheckResult

BASELINE = "baseline"


def create(project: Project, connection: Any) -> CheckResult | None:
    """Make the baseline schema and commit; a FAIL that says why when it cannot be made."""
    from sqlalchemy import exc

    try:
        project.create_baseline(connection)
        connection.commit()
    except ProjectError:
        raise
    except exc.SQLAlchemyError as err:
        connection.rollback()
        cause = getattr(err, "orig", None) or err
        return CheckResult(
            BASELINE,
            FAIL,
            f"the baseline ({project.settings.baseline}) could not be created: {one_line(str(cause))}",
            None,
            tuple(user_traceback(err, project.root).splitlines()[:-1]),
        )
    return None


def _down_from(project: Project, target: str) -> list[Any]:
    """The revisions a stamp at ``target`` stands on, head first, down to the minimum."""
    revisions = list(project.revisions())
    if target not in ("head", "heads"):
        applied = project._ancestry(target)
        revisions = [r for r in revisions if r.revision in applied]
    below = project.below_minimum()  # the minimum and its ancestors: not downgraded
    return [r for r in reversed(revisions) if r.revision not in below]


def prove_down(project: Project, connection: Any) -> StairwayResult:
    """From the baseline stamped at ``baseline-revision``: each revision down, up, down."""
    target = project.settings.baseline_revision or "head"
    project.stamp(connection, "heads" if target == "head" else target)
    connection.commit()
    top = snapshot(project, connection)
    current = top
    checks: list[CheckResult] = []
    for revision in _down_from(project, target):
        result, current, stop = _prove_one(project, connection, revision, current)
        checks.append(result)
        if stop:
            return StairwayResult(tuple(checks), top, None, False)
    error = migrate(project, connection, "heads")
    if error is not None:
        checks.append(CheckResult(ROUND_TRIP, FAIL, f"upgrade heads from the bottom failed: {error.message}"))
        return StairwayResult(tuple(checks), top, None, False)
    rebuilt = diff(project, top, snapshot(project, connection))
    if rebuilt:
        checks.append(
            CheckResult(
                ROUND_TRIP,
                FAIL,
                f"upgrade heads from the bottom does not rebuild the baseline: {rebuilt[0].line()}",
                None,
                tuple(c.line() for c in rebuilt[1:]),
            )
        )
    else:
        checks.append(
            CheckResult(ROUND_TRIP, PASS, "downgrade from the stamped baseline, upgrade heads (same schema)")
        )
    return StairwayResult(tuple(checks), top, snapshot(project, connection), True)


def _prove_one(
    project: Project, connection: Any, revision: Any, before: Any
) -> tuple[CheckResult, Any, bool]:
    """(result, the schema below ``revision``, stop) for one revision of the way down."""
    error = apply(project, connection, revision, downgrade=True)
    if error is not None:
        what = f"{label(project, revision)}: downgrade failed: {error.message}"
        return CheckResult(NAME, FAIL, what, revision.revision, error.details), before, True
    below = snapshot(project, connection)
    error = apply(project, connection, revision)
    if error is not None:
        what = f"{label(project, revision)}: upgrade after its downgrade failed: {error.message}"
        return CheckResult(NAME, FAIL, what, revision.revision, error.details), below, True
    again = snapshot(project, connection)
    changed = diff(project, before, again)
    if changed:  # the state differs from the baseline's: what follows would prove the wrong schema
        what = (
            f"{label(project, revision)}: downgrade then upgrade gives a different schema than the baseline"
        )
        return CheckResult(NAME, FAIL, what, revision.revision, tuple(c.line() for c in changed)), again, True
    error = apply(project, connection, revision, downgrade=True)
    if error is not None:
        what = f"{label(project, revision)}: second downgrade failed: {error.message}"
        return CheckResult(NAME, FAIL, what, revision.revision, error.details), again, True
    doc = one_line(revision.doc or "")
    title = f"{revision.revision} ({doc})" if doc else revision.revision
    return (
        CheckResult(NAME, PASS, f"{title}: downgrade, upgrade (same schema), from the baseline"),
        below,
        False,
    )
