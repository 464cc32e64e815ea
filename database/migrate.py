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
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from database import locks
from database.alembic_support import progress
from database.config import REPO_ROOT, Settings, excluded_tables, get_settings, project_settings
from database.errors import (
    DatabaseUnreachable,
    EmptyMigration,
    MigrationError,
    describe_step_failure,
    one_line,
    scrub,
)
from database.pooler import SET_SEARCH_PATH, refuse_pooled

ALEMBIC_INI = REPO_ROOT / "alembic.ini"
CONNECT_TIMEOUT_S = 10
UPGRADE_HINT = "run python database/manage.py db-upgrade"
MODELS_DB = "models"  # the database of the throwaway server that db-check builds the models in
ALEMBIC_BLIND_SPOTS = "a changed ENUM label list, CHECK expression or index expression"
_UNSEEN_KINDS = ("enum", "constraint", "index")  # changed in place: what compare_metadata misses
NO_SERVER_FIX = (
    "install the PostgreSQL server binaries (Debian/Ubuntu: apt-get install postgresql; "
    "macOS: brew install postgresql@16) or set SCHEMA_WARDEN_PG_BIN to their bin directory"
)

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
def connected(
    settings: Settings | None = None, *, read_only: bool = False, session: Sequence[str] = ()
) -> Iterator[Config]:
    """An Alembic Config bound to one connection to DATABASE_URL, in one transaction
    committed on success only (Alembic sees it begun and runs every revision inside it).

    ``read_only``: a READ ONLY transaction (Postgres refuses any write in it), rolled back
    at the end. The transaction sets the search_path it needs, and the ``session`` SQL
    (timeouts), for itself only: nothing depends on, or is left in, the server connection's
    session, which behind Neon's PgBouncer pooler other clients share.
    """
    from sqlalchemy import exc

    settings = settings or get_settings()
    engine = _engine(settings)
    try:
        try:
            connection = engine.connect()
            if read_only:
                connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            for sql in (SET_SEARCH_PATH, *session):
                connection.exec_driver_sql(sql)
        except exc.DBAPIError as err:
            raise _connect_error(err, settings) from None
        with connection:
            yield alembic_config(connection)
            if read_only:
                connection.rollback()
            else:
                connection.commit()
    finally:
        engine.dispose()


def _migrate(run: Callable[[Config], None], args: argparse.Namespace) -> None:
    """Run an upgrade/downgrade with progress lines; a failing step is named, its transaction undone.

    A lock timeout is tried again (``locks.LOCK_ATTEMPTS`` in all, pausing between them);
    the last one names the statement that waited and the session that held the lock.
    """
    settings = get_settings(warn=False)
    refuse_pooled(settings.url, settings.masked, source="DATABASE_URL", allow=args.allow_pooler)
    lock_timeout = args.lock_timeout
    session = locks.timeout_statements(lock_timeout, args.statement_timeout)
    attempts = locks.LOCK_ATTEMPTS if lock_timeout > 0 else 1
    for attempt in range(1, attempts + 1):
        watch = locks.BlockerWatch(settings.libpq_url, interval=max(0.02, min(lock_timeout / 4, 0.5)))
        try:
            with progress() as shown:
                try:
                    with connected(settings, session=session) as cfg:
                        if lock_timeout > 0:
                            connection = cfg.attributes["connection"]
                            watch.start(int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()))
                        run(cfg)
                        _show_current(cfg)
                    return
                except Exception as err:
                    if shown.step is None or isinstance(err, DatabaseUnreachable):
                        raise
                    if not locks.is_lock_timeout(err):
                        raise describe_step_failure(shown.step, err) from None
                    if attempt == attempts:
                        watch.stop()
                        raise describe_lock_timeout(shown.step, err, watch, lock_timeout, attempts) from None
        finally:
            watch.stop()
        pause = locks.backoff(attempt, lock_timeout)
        print(
            f"lock timeout ({locks.shown(lock_timeout)}): the transaction was rolled back; trying again "
            f"in {locks.shown(pause)} (attempt {attempt + 1} of {attempts})",
            file=sys.stderr,
        )
        time.sleep(pause)


def describe_lock_timeout(
    step: Any, err: BaseException, watch: locks.BlockerWatch, lock_timeout: float, attempts: int
) -> MigrationError:
    """The upgrade gave up waiting for a lock: which statement waited, who held the lock."""
    failure = describe_step_failure(step, err)
    where = str(failure).split(" failed during ", 1)[0]
    statement = locks._short(str(getattr(err, "statement", "") or "")) or "a statement"
    blockers = list(watch.blockers.values())
    if blockers:
        held = "the lock was held by " + "; ".join(b.line() for b in blockers)
    else:
        held = "the session holding the lock was not seen (it let go between the checks)"
    return MigrationError(
        f"{where}: {statement} waited {attempts} times for a lock, {locks.shown(lock_timeout)} each "
        f"(lock_timeout), and gave up: {held}; nothing was applied (one transaction, rolled "
        "back): end that session or run again when it is done, or wait longer with --lock-timeout"
    )


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
    _migrate(lambda cfg: command.upgrade(cfg, args.revision), args)
    return 0


def downgrade(args: argparse.Namespace) -> int:
    if args.sql:
        with progress():
            command.downgrade(alembic_config(), args.revision, sql=True)
        return 0
    _migrate(lambda cfg: command.downgrade(cfg, args.revision), args)
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
    """Drift between the live database (at its current revision) and the models; never writes.

    The verdict comes from Postgres: the live schema is read from pg_catalog (one SELECT in a
    READ ONLY transaction), the models are built with ``metadata.create_all`` in a throwaway
    server, and the two snapshots are diffed, so changed ENUM labels, CHECK and index
    expressions show up, which Alembic's compare_metadata misses. Alembic then proposes the
    operations of the fixing migration. Without Postgres server binaries: Alembic only.
    """
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from schema_warden.api import describe_operations, take

    from database.alembic_support import drift_context_options

    excluded = excluded_tables()
    schemas = model_schemas()
    with connected(read_only=True) as cfg:
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

        extensions = [row[0] for row in connection.exec_driver_sql("SELECT extname FROM pg_extension")]
        # no prepared statement: the user's host may be Neon's pooler (PgBouncer, transaction mode)
        live = take(connection, schemas=schemas, exclude_tables=excluded, reuse_plan=False)
        ctx = MigrationContext.configure(connection, opts=drift_context_options())
        proposals = describe_operations(compare_metadata(ctx, Base.metadata))
    changes, note = compare_with_models(
        live, Base.metadata, extensions=extensions, schemas=schemas, exclude_tables=excluded
    )
    return report_drift(changes, proposals, note)


def model_schemas() -> tuple[str, ...]:
    """``[tool.schema-warden] schemas`` (default ``public``): the schemas the models live in."""
    schemas = project_settings(REPO_ROOT).get("schemas", ["public"])
    return (schemas,) if isinstance(schemas, str) else tuple(str(s) for s in schemas)  # type: ignore[union-attr]


def models_snapshot(
    binaries: Any,
    metadata: Any,
    *,
    extensions: Sequence[str] = (),
    schemas: Sequence[str] = ("public",),
    exclude_tables: Iterable[str] = (),
) -> Any:
    """Build the models with ``metadata.create_all`` in a throwaway server; its snapshot."""
    from schema_warden.api import take, throwaway_server
    from sqlalchemy import create_engine, pool

    with throwaway_server(binaries=binaries, memory=True) as server:
        server.create_database(MODELS_DB)
        for name in extensions:
            if name != "plpgsql":
                # one the local server lacks fails here; create_all then says what needs it
                with contextlib.suppress(Exception):
                    server.execute(f'CREATE EXTENSION IF NOT EXISTS "{name}"', MODELS_DB)
        for schema in schemas:
            server.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"', MODELS_DB)
        engine = create_engine(server.url(MODELS_DB), poolclass=pool.NullPool)
        try:
            with engine.connect() as connection:
                try:
                    metadata.create_all(connection)
                except Exception as err:
                    raise ModelsNotBuilt(one_line(str(getattr(err, "orig", None) or err))) from None
                return take(connection, schemas=schemas, exclude_tables=exclude_tables)
        finally:
            engine.dispose()


class ModelsNotBuilt(Exception):
    """``metadata.create_all`` failed in the throwaway database (an extension it lacks, say)."""


def compare_with_models(
    live: Any,
    metadata: Any,
    *,
    extensions: Sequence[str] = (),
    schemas: Sequence[str] = ("public",),
    exclude_tables: Iterable[str] = (),
) -> tuple[list[Any] | None, str]:
    """Postgres's comparison of the live snapshot with the models: (changes, note).

    ``changes`` is None when it could not run (no server binaries, the server or create_all
    failed); ``note`` then says why, what Alembic alone cannot see and what to do.
    """
    from schema_warden.api import INSTALL_HINT, EnvironmentProblem, compare, find_binaries, model_blind_spots

    excluded = tuple(sorted(exclude_tables))
    try:
        binaries = find_binaries()
    except EnvironmentProblem as err:
        reason = err.message.removesuffix(f": {INSTALL_HINT}")
        return None, _alembic_only(reason, NO_SERVER_FIX)
    try:
        models = models_snapshot(
            binaries, metadata, extensions=extensions, schemas=schemas, exclude_tables=excluded
        )
    except EnvironmentProblem as err:
        return None, _alembic_only(f"the throwaway PostgreSQL server failed: {err.message}", "")
    except ModelsNotBuilt as err:
        return None, _alembic_only(f"metadata.create_all failed in a throwaway database: {err}", "")
    changes = compare(live, models, ignore_tables=("alembic_version", *excluded))
    return model_blind_spots(changes), ""


def _alembic_only(reason: str, fix: str) -> str:
    note = f"note: compared with Alembic only ({reason}), which cannot see {ALEMBIC_BLIND_SPOTS}"
    return note + (f": {fix}" if fix else "")


def report_drift(changes: Sequence[Any] | None, proposals: Sequence[str], note: str = "") -> int:
    """Print db-check's verdict: Postgres's changes, Alembic's operations, the fix. Exit code."""
    from schema_warden.api import suggest_message

    if note:
        print(note, file=sys.stderr)
    if changes is not None and not changes:
        print("no drift: the database matches the models")
        if proposals:  # Postgres normalises what Alembic compares as text (now() vs CURRENT_TIMESTAMP)
            print("Alembic's comparison reports differences that Postgres does not (ignored):")
            for line in proposals:
                print(f"  {line}")
        return 0
    if changes is None and not proposals:
        print("no drift: the database matches the models")
        return 0
    print("drift: the database differs from the models")
    if changes:
        print("what a migration must change in the database to match the models:")
        for change in changes:
            print(f"  {change.line()}")
    message = suggest_message(changes) if changes else "describe the change"
    if proposals:
        print("autogenerate would write:")
        for line in proposals:
            print(f"  {line}")
        unseen = [c.name for c in changes or () if c.action == "changed" and c.kind in _UNSEEN_KINDS]
        if unseen:
            print(
                "autogenerate does not compare ENUM labels, CHECK or index expressions: add the "
                f"change of {', '.join(unseen)} to the migration by hand"
            )
        print(f'fix: python database/manage.py db-revision -m "{message}"')
    else:
        print(f"autogenerate does not see this change ({ALEMBIC_BLIND_SPOTS}): write the migration by hand")
        print(f'fix: python database/manage.py db-revision --empty -m "{message}"')
    return 1
