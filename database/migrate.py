"""The migration commands of manage.py, on top of Alembic's command API.

Each function takes parsed arguments and returns an exit code; errors a person can fix
are raised as :class:`database.config.ConfigError` or :class:`DatabaseUnreachable` and
turned into one line by manage.py.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Iterator
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from database.config import REPO_ROOT, Settings, get_settings

ALEMBIC_INI = REPO_ROOT / "alembic.ini"


class DatabaseUnreachable(Exception):
    """Cannot connect (wrong password, unknown host, refused). Exit code 3."""

    exit_code = 3


class EmptyMigration(Exception):
    """Autogenerate found nothing to migrate. Exit code 1."""

    exit_code = 1


def alembic_config(connection: Any = None) -> Config:
    cfg = Config(str(ALEMBIC_INI))
    cfg.attributes["configure_logger"] = False
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _scrub(text: str, settings: Settings) -> str:
    """Remove the password from a driver message, whatever the driver put in it."""
    from sqlalchemy.engine import make_url

    password = make_url(settings.url).password
    if password:
        text = text.replace(str(password), "***")
    return text


@contextlib.contextmanager
def connected(settings: Settings | None = None) -> Iterator[Config]:
    """An Alembic Config bound to one connection to DATABASE_URL, committed on success."""
    from sqlalchemy import create_engine, exc, pool

    settings = settings or get_settings()
    engine = create_engine(settings.url, poolclass=pool.NullPool)
    try:
        try:
            connection = engine.connect()
        except exc.DBAPIError as err:
            reason = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
            reason = re.sub(r"\s+", " ", _scrub(reason, settings))
            raise DatabaseUnreachable(f"cannot connect to {settings.masked}: {reason}") from None
        with connection:
            yield alembic_config(connection)
            connection.commit()
    finally:
        engine.dispose()


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
        command.upgrade(alembic_config(), args.revision, sql=True)
        return 0
    with connected() as cfg:
        command.upgrade(cfg, args.revision)
        command.current(cfg)
    return 0


def downgrade(args: argparse.Namespace) -> int:
    if args.sql:
        command.downgrade(alembic_config(), args.revision, sql=True)
        return 0
    with connected() as cfg:
        command.downgrade(cfg, args.revision)
        command.current(cfg)
    return 0


def revision(args: argparse.Namespace) -> int:
    found: list[bool] = []

    def refuse_empty(context: Any, rev: Any, directives: list[Any]) -> None:
        script = directives[0]
        empty = all(ops.is_empty() for ops in script.upgrade_ops_list)
        found.append(not empty)
        if empty and not args.empty:
            directives[:] = []

    rev_id = next_revision_id(ScriptDirectory.from_config(alembic_config()))
    if args.empty:
        command.revision(alembic_config(), message=args.message, rev_id=rev_id)
        return 0
    with connected() as cfg:
        command.revision(
            cfg,
            message=args.message,
            autogenerate=True,
            rev_id=rev_id,
            process_revision_directives=refuse_empty,
        )
    if found and not found[0]:
        raise EmptyMigration(
            "no model changes found, so no migration was written "
            "(use --empty for a hand-written data migration)"
        )
    return 0


def current(args: argparse.Namespace) -> int:
    with connected() as cfg:
        command.current(cfg, verbose=args.verbose)
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
        ctx = MigrationContext.configure(connection)
        heads = set(script.get_heads())
        at = set(ctx.get_current_heads())
        if at != heads:
            print(
                f"database is at {', '.join(sorted(at)) or 'no revision'}, head is "
                f"{', '.join(sorted(heads))}: run python database/manage.py db-upgrade first"
            )
            return 1
        ctx = MigrationContext.configure(connection, opts=drift_context_options())
        from database.models import Base

        diffs = compare_metadata(ctx, Base.metadata)
    if not diffs:
        print("no drift: the database matches the models")
        return 0
    print("drift: the models have changes that no migration makes:")
    for line in describe_diffs(diffs):
        print(f"  {line}")
    print('fix: python database/manage.py db-revision -m "describe the change"')
    return 1
