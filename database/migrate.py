"""The migration commands of manage.py, on top of Alembic's command API.

Each function takes parsed arguments and returns an exit code. Errors a person can fix are
raised as :mod:`database.errors` exceptions (one line, an exit code) and printed by
manage.py. Only these commands connect to DATABASE_URL, and only when the user runs them.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from database.alembic_support import progress
from database.config import REPO_ROOT, Settings, get_settings
from database.errors import (
    DatabaseUnreachable,
    EmptyMigration,
    describe_step_failure,
    one_line,
    scrub,
)

ALEMBIC_INI = REPO_ROOT / "alembic.ini"
CONNECT_TIMEOUT_S = 10
UPGRADE_HINT = "run python database/manage.py db-upgrade"

__all__ = ["ALEMBIC_INI", "DatabaseUnreachable", "EmptyMigration", "alembic_config", "connected"]

# libpq's words -> what to check (first match wins)
_CONNECT_HINTS = (
    ("password authentication failed", "check the user and password in DATABASE_URL"),
    ("no password supplied", "put the password in DATABASE_URL"),
    ("could not translate host name", "check the host name in DATABASE_URL"),
    ("name or service not known", "check the host name in DATABASE_URL"),
    ("connection refused", "is the server running, and is the port in DATABASE_URL right?"),
    ("timeout expired", "is the host reachable from here (network, firewall)?"),
    ("does not exist", "check the database and user names in DATABASE_URL"),
    ("ssl", "check sslmode in DATABASE_URL (Neon needs sslmode=require)"),
)


def alembic_config(connection: Any = None) -> Config:
    # stdout given explicitly: Alembic's default is the sys.stdout of its import time
    cfg = Config(str(ALEMBIC_INI), stdout=sys.stdout)
    cfg.attributes["configure_logger"] = False  # progress() shows Alembic's lines instead
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _connect_error(err: BaseException, settings: Settings) -> DatabaseUnreachable:
    orig = getattr(err, "orig", None)
    reason = scrub(one_line(str(orig if orig is not None else err)), settings.url)
    hint = next((h for words, h in _CONNECT_HINTS if words in reason.lower()), "")
    return DatabaseUnreachable(
        f"cannot connect to {settings.masked}: {reason}" + (f" ({hint})" if hint else "")
    )


def _engine(settings: Settings) -> Any:
    from sqlalchemy import create_engine, pool
    from sqlalchemy.engine import make_url

    url = make_url(settings.url)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S  # an unreachable host fails in seconds
    return create_engine(url, poolclass=pool.NullPool, connect_args=connect_args)


@contextlib.contextmanager
def connected(settings: Settings | None = None) -> Iterator[Config]:
    """An Alembic Config bound to one connection to DATABASE_URL, committed on success only."""
    from sqlalchemy import exc

    settings = settings or get_settings()
    engine = _engine(settings)
    try:
        try:
            connection = engine.connect()
        except exc.DBAPIError as err:
            raise _connect_error(err, settings) from None
        with connection:
            yield alembic_config(connection)
            connection.commit()
    finally:
        engine.dispose()


def _migrate(run: Callable[[Config], None]) -> None:
    """Run an upgrade/downgrade with progress lines; a failing step is named, its transaction undone."""
    with progress() as shown:
        try:
            with connected() as cfg:
                run(cfg)
                _show_current(cfg)
        except Exception as err:
            if shown.step is None or isinstance(err, DatabaseUnreachable):
                raise
            raise describe_step_failure(shown.step, err) from None


def next_revision_id(script: ScriptDirectory) -> str | None:
    """Sequential ids (0001, 0002, ...) while the history uses them; else Alembic's random ids."""
    ids = [rev.revision for rev in script.walk_revisions()]
    if not ids:
        return "0001"
    if all(i.isdigit() for i in ids):
        return f"{max(int(i) for i in ids) + 1:04d}"
    return None


def upgrade(args: argparse.Namespace) -> int:
    if args.sql:
        with progress():
            command.upgrade(alembic_config(), args.revision, sql=True)
        return 0
    _migrate(lambda cfg: command.upgrade(cfg, args.revision))
    return 0


def downgrade(args: argparse.Namespace) -> int:
    if args.sql:
        with progress():
            command.downgrade(alembic_config(), args.revision, sql=True)
        return 0
    _migrate(lambda cfg: command.downgrade(cfg, args.revision))
    return 0


def revision(args: argparse.Namespace) -> int:
    found: list[bool] = []

    def refuse_empty(context: Any, rev: Any, directives: list[Any]) -> None:
        script = directives[0]
        changes = not all(ops.is_empty() for ops in script.upgrade_ops_list)
        found.append(changes)
        if not changes:
            directives[:] = []  # Alembic then writes no file

    rev_id = next_revision_id(ScriptDirectory.from_config(alembic_config()))
    if args.empty:
        scripts = command.revision(alembic_config(), message=args.message, rev_id=rev_id)
    else:
        with progress(), connected() as cfg:
            scripts = command.revision(
                cfg,
                message=args.message,
                autogenerate=True,
                rev_id=rev_id,
                process_revision_directives=refuse_empty,
            )
        if found and not any(found):
            raise EmptyMigration(
                "no model changes found, so no migration was written: change a model in "
                "database/models/ first, or use --empty for a hand-written data migration"
            )
    written = [s for s in (scripts if isinstance(scripts, list) else [scripts]) if s is not None]
    for script in written:
        _format(script.path)
        print(f"review {script.path}, then {UPGRADE_HINT}")
    return 0


def _format(path: str) -> None:
    """Give a new migration the repository's code style when ruff is installed (optional)."""
    ruff = shutil.which("ruff")
    if ruff is None:
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for argv in ([ruff, "check", "--fix", "--quiet", path], [ruff, "format", "--quiet", path]):
            subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, timeout=60, check=False)


def _show_current(cfg: Config, *, verbose: bool = False) -> None:
    from alembic.runtime.migration import MigrationContext

    heads = MigrationContext.configure(cfg.attributes["connection"]).get_current_heads()
    if heads:
        command.current(cfg, verbose=verbose)
    else:
        print(f"no revision: no migration is applied to this database ({UPGRADE_HINT})")


def current(args: argparse.Namespace) -> int:
    with connected() as cfg:
        _show_current(cfg, verbose=args.verbose)
    return 0


def history(args: argparse.Namespace) -> int:
    command.history(alembic_config(), verbose=args.verbose, indicate_current=False)
    return 0


def check(args: argparse.Namespace) -> int:
    """Drift between the live database (at its current revision) and the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from database.alembic_support import describe_diffs, drift_context_options

    with connected() as cfg:
        connection = cfg.attributes["connection"]
        script = ScriptDirectory.from_config(cfg)
        heads = set(script.get_heads())
        at = set(MigrationContext.configure(connection).get_current_heads())
        if at != heads:
            print(
                f"database is at {', '.join(sorted(at)) or 'no revision'}, head is "
                f"{', '.join(sorted(heads))}: {UPGRADE_HINT} first, then check again"
            )
            return 1
        from database.models import Base

        ctx = MigrationContext.configure(connection, opts=drift_context_options())
        diffs = compare_metadata(ctx, Base.metadata)
    if not diffs:
        print("no drift: the database matches the models")
        return 0
    print("drift: the database differs from the models; a migration matching the models would:")
    for line in describe_diffs(diffs):
        print(f"  {line}")
    print('fix: python database/manage.py db-revision -m "describe the change"')
    return 1
