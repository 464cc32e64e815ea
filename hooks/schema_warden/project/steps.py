"""Alembic's migration steps wrapped so that a failure names the revision that raised."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from schema_warden.project.frames import user_frame_files


class MigrationFailed(Exception):
    """A revision's upgrade() or downgrade() raised: carries the revision and the cause."""

    def __init__(
        self, revision: Any, upgrade: bool, cause: BaseException, *, at_commit: bool = False
    ) -> None:
        super().__init__(str(cause))
        self.revision = revision
        self.upgrade = upgrade
        self.cause = cause
        self.at_commit = at_commit  # its function returned; the commit after it failed


class Guarded:
    """A MigrationStep whose migration function reports which revision failed."""

    def __init__(self, step: Any, ran: list[Any]) -> None:
        self._step = step
        self._ran = ran  # the steps whose migration function returned, in order

    def __getattr__(self, name: str) -> Any:
        return getattr(self._step, name)

    def __str__(self) -> str:
        return str(self._step)

    __repr__ = __str__

    def should_delete_branch(self, heads: Any) -> bool:
        # Alembic walks every ancestor of the target to answer this for a downgrade; on a
        # linear stretch (one head, the step's own, and one revision below it) the answer
        # is always no: known without the walk, which made the stairway quadratic
        from alembic.runtime.migration import RevisionStep

        step = self._step
        if (
            isinstance(step, RevisionStep)
            and step.is_downgrade
            and set(heads) == {step.revision.revision}
            and len(step.to_revisions) == 1
        ):
            return False
        return bool(step.should_delete_branch(heads))

    @property
    def migration_fn(self) -> Callable[..., Any]:
        fn = self._step.migration_fn
        step = self._step

        def run(**kw: Any) -> Any:
            try:
                result = fn(**kw)
            except (Exception, SystemExit) as err:  # sys.exit() and os._exit() (exits.py) too
                raise MigrationFailed(step.revision, step.is_upgrade, err) from err
            except KeyboardInterrupt as err:  # Ctrl-C, SIGTERM or the timeout: say where it was
                mark_interrupted(err, step.revision, step.is_upgrade)
                raise
            self._ran.append(step)
            return result

        return run


def mark_interrupted(err: BaseException, revision: Any, upgrade: bool | None) -> None:
    """Remember on ``err`` the innermost revision (``upgrade`` True or False) or env.py
    (``revision`` None) that was running when an interrupt arrived."""
    if not hasattr(err, "schema_warden_running"):
        err.schema_warden_running = (revision, upgrade)  # type: ignore[attr-defined]


def interrupted_in(err: BaseException) -> tuple[Any, bool | None] | None:
    """(revision or None for env.py, upgrade) marked by :func:`mark_interrupted`, if any."""
    return getattr(err, "schema_warden_running", None)


def is_database_error(err: BaseException) -> bool:
    from sqlalchemy import exc

    return isinstance(err, exc.DBAPIError)


def raised_in_migration(err: BaseException, project: Any) -> bool:
    paths = {str(Path(r.path).resolve()) for r in project.revisions()}
    return any(str(Path(f).resolve()) in paths for f in user_frame_files(err))
