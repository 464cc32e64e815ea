"""``schema-warden check``: prove an Alembic project's migrations in a throwaway PostgreSQL.

One throwaway server per run. The stairway (every revision up, down without a trace, up
again with the same schema), the round trip head -> base -> head, and drift at head
(the models built with ``create_all`` vs the migrated schema, plus Alembic's proposal of
the fixing migration). The guard never reads or connects to DATABASE_URL: while the
project's env.py runs, DATABASE_URL points at the throwaway database.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schema_warden import speed
from schema_warden.errors import (
    EXIT_ENVIRONMENT,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    ProjectError,
    TimedOut,
    WardenError,
    guarded,
    main_thread_only,
)
from schema_warden.render.report import FAIL, FORMATS, NOTE, PASS, CheckResult, Report, render

if TYPE_CHECKING:
    from schema_warden.project.loader import Project

# The project layer (0.05 s of imports) loads inside main(), after errors.guarded handles
# Ctrl-C and SIGTERM: a signal in the first tenth of a second is an interrupt too (exit 130).

DATABASE = "postgres"  # the throwaway server's own empty database: no CREATE DATABASE to wait for


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="schema-warden check",
        description=(
            "Prove the migrations in a throwaway PostgreSQL server: every revision up, down "
            "(no trace) and up again, a round trip head -> base -> head, and drift between "
            "the migrations and the models. Never connects to DATABASE_URL."
        ),
        epilog=(
            "exit codes: 0 clean, 1 problems found, 2 project error, 3 no PostgreSQL, 130 interrupted "
            "(Ctrl-C, SIGTERM). Past --timeout: 1 when a migration was running (the failure names "
            "the revision), 2 when env.py was. A sys.exit() or os._exit() in env.py or a migration "
            "is a failure naming it, never exit 0. "
            "Proofs of passing revisions, the server's data directory at head and the models' "
            "schema (by the SQL they compile to) are cached in $XDG_CACHE_HOME/schema-warden/proofs "
            "(--no-cache ignores them; deleting them is safe). SCHEMA_WARDEN_JOBS=1 "
            "runs in one process; by default a second process proves part of a long stairway "
            "when a CPU is idle."
        ),
    )
    parser.add_argument("--config", metavar="ALEMBIC_INI", help="path to alembic.ini (default ./alembic.ini)")
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    parser.add_argument("--pg-bin", metavar="DIR", help="PostgreSQL bin directory (initdb, postgres)")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first problem")
    parser.add_argument(
        "--no-data-check",
        action="store_true",
        help="do not fill the tables with generated rows before each upgrade (data preservation)",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help=(
            "record what each statement of each upgrade did, with the generated rows in the tables: "
            "the locks it took and whether it rewrote a table; risky ones are listed per revision "
            "(one process; adds a catalog read per statement)"
        ),
    )
    parser.add_argument(
        "--accept",
        action="store_true",
        help=(
            "write today's findings to schema-warden-accepted.toml (beside alembic.ini, or the "
            "accepted-findings setting) and exit 0: later runs report them as notes and fail only on "
            "new ones (for histories with problems in revisions that are applied everywhere)"
        ),
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="prove every revision again, ignoring (and not writing) the cache of earlier proofs",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help=(
            "end the run after SECONDS (default: [tool.schema-warden] timeout, else 600): the running "
            "statement is cancelled and the server stopped; exit 1 naming the revision that was "
            "running, or 2 when env.py was"
        ),
    )
    return parser


def _seconds(text: str) -> float:
    """A positive number of seconds (``--timeout``)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _interruptible_wait(conn: Any) -> None:
    """psycopg2 wait callback: Ctrl-C cancels the running statement and unwinds as KeyboardInterrupt."""
    import select

    from psycopg2 import Error
    from psycopg2.extensions import POLL_OK, POLL_READ, POLL_WRITE

    interrupted: KeyboardInterrupt | None = None  # raised again as it came (SIGTERM's, say)
    while True:
        try:
            state = conn.poll()
            if state == POLL_OK:
                break
            if state == POLL_READ:
                select.select([conn.fileno()], [], [])
            elif state == POLL_WRITE:
                select.select([], [conn.fileno()], [])
        except KeyboardInterrupt as err:
            interrupted = err
            with contextlib.suppress(Error):
                conn.cancel()
        except Error:
            if interrupted is not None:
                raise interrupted from None
            raise
    if interrupted is not None:
        raise interrupted


@contextlib.contextmanager
def interruptible_queries() -> Iterator[None]:
    from psycopg2 import extensions

    previous = extensions.get_wait_callback()
    extensions.set_wait_callback(_interruptible_wait)
    try:
        yield
    finally:
        extensions.set_wait_callback(previous)


def _history_problems(settings: Any) -> list[Any]:
    """A broken history (two heads, dangling links, cycles, unparsable files) stops the check:
    exit 2. Returns the statically read revision files (schema_warden.commands.heads.RevisionFile)."""
    from schema_warden.commands.heads import analyse, parse_revision_file, revision_paths, version_dirs

    ini = settings.alembic_config
    root = ini.parent
    _script, dirs, paths, recursive = version_dirs(ini, settings.version_locations)
    files = [parse_revision_file(p, root) for p in revision_paths(dirs, recursive)]
    for check in analyse(files, root, [str(p) for p in paths], multiple_heads=settings.multiple_heads):
        if check.status == FAIL:
            prefix = "" if check.name == "imports" else "broken migration history: "
            raise ProjectError(f"{prefix}{check.message}", detail="\n".join(check.details))
    return files


def _guess_plan(settings: Any, files: list[Any], major: int, options: dict[str, object]) -> Any:
    """The proof plan from the statically read files, or None: only a guess to start early."""
    from schema_warden.cache import proofs as cache

    try:
        return cache.early_plan(settings, files, major, options=options)
    except (OSError, ValueError, UnicodeDecodeError, WardenError):
        return None


def _preload() -> threading.Thread:
    """Import SQLAlchemy and Alembic (0.25 s) in a thread while the server starts (which
    mostly waits for tar and postgres); joined before anything forks."""

    from schema_warden.project.loader import import_alembic

    def load() -> None:
        main_thread_only()
        with contextlib.suppress(Exception):  # the real import later reports any problem
            import_alembic()

    thread = threading.Thread(target=load, name="schema-warden-preload", daemon=True)
    thread.start()
    return thread


class _Initdb:
    """initdb (0.5-0.7 s, a program of its own) in a thread while Python imports and reads
    the project, for a run that finds no initdb'd cluster cached: the first run on a machine."""

    def __init__(self, binaries: Any) -> None:
        from schema_warden.server.postgres import prepare_cluster

        self.cluster: Path | None = None
        self.error: BaseException | None = None

        def work() -> None:
            main_thread_only()
            try:
                self.cluster = prepare_cluster(binaries)
            except BaseException as err:  # raised again by result(), in the main thread
                self.error = err

        self.thread = threading.Thread(target=work, name="schema-warden-initdb", daemon=True)
        self.thread.start()

    def result(self) -> Path:
        self.thread.join()
        if self.error is not None:
            raise self.error
        if self.cluster is None:  # pragma: no cover - work() sets one or the other
            raise RuntimeError("initdb thread ended without a result")
        return self.cluster


def _version_note(project: Project, server: Any) -> list[str]:
    wanted = project.settings.postgres_version
    have = server.binaries.major
    note = f"PostgreSQL {server.binaries.version} ({server.binaries.bindir})"
    if wanted and wanted != have:
        note += f"; warning: production runs {wanted} ([tool.schema-warden] postgres-version)"
    return [note]


@dataclass(frozen=True)
class Pristine:
    """A database that holds exactly what a plain upgrade from empty to ``revision`` gives."""

    revision: str
    key: str  # the proof key of ``revision``
    database: str
    version_table: str  # quoted SQL name of Alembic's version table
    snapshot: str  # schema_warden.cache.proofs.snapshot_digest of the database


@dataclass(frozen=True)
class Outcome:
    checks: list[CheckResult]
    pristine: Pristine | None = None  # set when the run may save its data directory


def _quoted(*names: str | None) -> str:
    return ".".join('"' + n.replace('"', '""') + '"' for n in names if n)


def _version_table(env: Any) -> str:
    return _quoted(env.opts.get("version_table_schema"), env.opts.get("version_table") or "alembic_version")


def _replay(project: Project, server: Any, database: str, target: str) -> None:
    """Upgrade database ``database`` plainly to ``target`` (own connection, env.py runs)."""
    from sqlalchemy import create_engine, pool

    from schema_warden.proof.stairway import migrate

    engine = create_engine(server.url(database), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            project.environment(connection)  # env.py imports the models: ProjectError here
            connection.rollback()
            _replay_proven(project, connection, target, migrate)
    finally:
        engine.dispose()


def _replay_proven(project: Project, connection: Any, target: str, migrate: Any) -> None:
    error = migrate(project, connection, target)
    if error is not None:
        raise ProjectError(
            f"revision {target}: upgrade failed although an earlier run proved it: "
            f"{error.message}: run again with --no-cache",
            detail="\n".join(error.details),
        )


def _pristine_head(
    project: Project, server: Any, plan: Any, env: Any, database: str, connection: Any | None
) -> Pristine | None:
    """Database ``database`` brought to head plainly (``connection``: it is there already)."""
    from sqlalchemy import create_engine, pool

    from schema_warden.cache import proofs as cache
    from schema_warden.proof.stairway import migrate, snapshot

    heads = project.script.get_heads()
    if len(heads) != 1:
        return None
    head = heads[0]
    if connection is not None:
        digest = cache.snapshot_digest(snapshot(project, connection))
    else:
        engine = create_engine(server.url(database), poolclass=pool.NullPool)
        try:
            with engine.connect() as conn:
                if migrate(project, conn, "heads") is not None:
                    return None
                digest = cache.snapshot_digest(snapshot(project, conn))
        finally:
            engine.dispose()
    return Pristine(head, plan.keys[head], database, _version_table(env), digest)


def run_checks(
    project: Project,
    server: Any,
    *,
    fail_fast: bool = False,
    data_check: bool = True,
    database: str = DATABASE,
    use_cache: bool = True,
) -> list[CheckResult]:
    """Stairway, round trip and drift on database ``database`` (created here) of ``server``."""
    from schema_warden.cache import proofs as cache

    store, plan = cache.plan_project(
        project, server.binaries.major, enabled=use_cache, options={"data_check": data_check}
    )
    return _run_checks(
        project,
        server,
        store,
        plan,
        fail_fast=fail_fast,
        data_check=data_check,
        database=database,
        use_cache=use_cache,
    ).checks


# A saved data directory costs about 0.15 s (keeping "postgres" pristine: a copy for the
# stairway, a plain upgrade, drops, shutdown, archive); a plain upgrade replays a proven
# revision in about 2 ms. So a run that started from a saved revision saves again only when
# the next run would otherwise replay this many revisions or more.
SAVE_AFTER = 32


def _worth_saving(project: Project, at: str | None) -> bool:
    """Save this run's data directory? Always when it started from nothing saved."""
    if at is None:
        return True
    order = [r.revision for r in project.revisions()]
    return at not in order or len(order) - 1 - order.index(at) >= SAVE_AFTER


_BASELINE_NOTE = (
    "the baseline schema was created first ([tool.schema-warden] baseline); proofs are not cached "
    "for a project with a baseline: every revision is proven on every run"
)


def _keep_prefix(
    project: Project, server: Any, store: Any, plan: Any, stairway: Any, start: int, database: str
) -> CheckResult | None:
    """After a stairway that failed at a revision, the revisions before it stay proven for the
    next run (which then starts there), once their own round trip passes in a database of
    its own: the next run proves from the failure on, not from scratch. Linear histories only."""
    from sqlalchemy import create_engine, pool

    from schema_warden.proof.parallel import is_linear
    from schema_warden.proof.stairway import diff, migrate, snapshot

    revisions = project.revisions()
    failed = {c.revision for c in stairway.checks if c.status == FAIL and c.revision}
    first = next((i for i, r in enumerate(revisions) if r.revision in failed), None)
    if not plan.enabled or first is None or first <= start or not is_linear(revisions):
        return None
    last, target = revisions[first - 1].revision, (plan.resume if start else "base")
    name = f"{database}_prefix"
    server.create_database(name)
    engine = create_engine(server.url(name), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            project.environment(connection)
            connection.rollback()
            if start and migrate(project, connection, plan.resume) is not None:
                return None
            bottom = snapshot(project, connection)
            if migrate(project, connection, last) is not None:
                return None
            top = snapshot(project, connection)
            if migrate(project, connection, target, downgrade=True) is not None:
                return None
            if diff(project, bottom, snapshot(project, connection)):
                return None
            if migrate(project, connection, last) is not None or diff(
                project, top, snapshot(project, connection)
            ):
                return None
    finally:
        engine.dispose()
        server.drop_database(name)
    store.record(plan, [r.revision for r in revisions[start:first]])
    kept = _span_of(revisions[start:first])
    return CheckResult(
        "round-trip",
        NOTE,
        f"not past the first failure ({revisions[first].revision}); below it: upgrade {last}, downgrade to "
        f"{target} (nothing left), upgrade {last}: {kept} kept as proven, the next run starts there",
    )


def _span_of(revisions: Sequence[Any]) -> str:
    ids = [r.revision for r in revisions]
    span = ids[0] if len(ids) == 1 else f"{ids[0]}–{ids[-1]}"
    return f"{span}, {len(ids)} revision{'s' if len(ids) != 1 else ''}"


def _missing_schemas(project: Project, connection: Any) -> list[CheckResult]:
    """A schema of the ``schemas`` setting that the migrated database does not have at head:
    nothing in it was compared, so the check must not pass on it (a typo such as "pubic")."""
    import difflib

    from sqlalchemy import text

    rows = connection.execute(
        text(
            "SELECT nspname FROM pg_catalog.pg_namespace "
            "WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'"
        )
    )
    have = sorted(row[0] for row in rows)
    connection.rollback()
    found = []
    for schema in project.settings.schemas:
        if schema in have:
            continue
        near = difflib.get_close_matches(schema, have, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        found.append(
            CheckResult(
                "schemas",
                FAIL,
                f"[tool.schema-warden] schemas names {schema!r}, which the migrated database does not have "
                f"at head{hint}: nothing in it was checked; fix the name",
                None,
                (f"schemas at head: {', '.join(have)}",),
            )
        )
    return found


def _traced(project: Project) -> list[CheckResult]:
    """``check --trace``: each upgrade statement that locked an existing table ACCESS EXCLUSIVE,
    rewrote a table or failed, one line each, in revision order."""
    from schema_warden.lint.rules import statement_line

    if project.traces is None:
        return []
    found = []
    for revision in project.revisions():
        recorded = project.traces.get(revision.revision)
        for statement in recorded.statements if recorded is not None else ():
            if statement.facts.risky():
                took = f"{statement.facts.duration_s * 1000:.0f} ms with the generated rows"
                what = f"{statement_line(statement.sql)} — {statement.facts.summary()} ({took})"
                where = f"line {statement.line}" if statement.line else project.revision_file(revision)
                found.append(
                    CheckResult("trace", NOTE, f"{revision.revision}: {what}", revision.revision, (where,))
                )
    if not found:
        found.append(
            CheckResult(
                "trace", PASS, "no upgrade statement locked an existing table exclusively or rewrote one"
            )
        )
    return found


def _span(project: Project, count: int) -> str:
    """``0001-0047`` (47 revisions): the first ``count`` revisions, base to head."""
    first = project.revisions()[:count]
    return _span_of(first) if first else "none"


def _cached_message(project: Project, start: int) -> str:
    proven = _span(project, start)
    left = len(project.revisions()) - start
    now = "nothing new to prove" if left <= 0 else f"{left} proven now (below)"
    return f"{proven} proven by an earlier run (cache; --no-cache proves them again); {now}"


def _run_checks(
    project: Project,
    server: Any,
    store: Any,
    plan: Any,
    *,
    fail_fast: bool = False,
    data_check: bool = True,
    database: str = DATABASE,
    clusters: Any = None,
    at: str | None = None,
    use_cache: bool = True,
) -> Outcome:
    """The checks; ``clusters``: keep database ``database`` pristine (the stairway works in a
    copy when it has revisions to prove) so that the run can save it, when that pays
    (:data:`SAVE_AFTER`); ``at``: the revision database ``database`` holds already (started
    from a saved data directory); ``use_cache``: False with --no-cache (the models' side is
    then built on every run, like the proofs)."""
    from sqlalchemy import create_engine, pool

    from schema_warden.proof import baseline
    from schema_warden.proof.drift import check_drift
    from schema_warden.proof.parallel import run_stairway
    from schema_warden.proof.stairway import migrate, round_trip

    if database != DATABASE:
        server.create_database(database)
    models_cache = use_cache and speed.enabled("models-cache")
    pristine_db = database
    saving = clusters is not None and _worth_saving(project, at)
    copy = saving and plan.resume is not None and plan.start < len(project.revisions())
    if copy:  # the stairway fills tables with generated rows: not in the pristine database
        if at != plan.resume:
            _replay(project, server, pristine_db, plan.resume)
        database = f"{pristine_db}_stairway"
        server.copy_database(database, template=pristine_db)
    engine = create_engine(server.url(database), poolclass=pool.NullPool)
    try:
        with contextlib.ExitStack() as stack, engine.connect() as connection:
            env = project.environment(connection)  # env.py imports the models: ProjectError here
            connection.rollback()
            models_ahead = stack.enter_context(
                _models_ahead(project, server, connection, env, f"{database}_models", models_cache)
            )
            checks: list[CheckResult] = []
            if project.settings.baseline is not None:
                failed_baseline = baseline.create(project, connection)
                if failed_baseline is not None:
                    checks.append(failed_baseline)
                    checks.append(CheckResult("stairway", NOTE, "skipped: the baseline could not be created"))
                    return Outcome(checks)
                checks.append(CheckResult("baseline", NOTE, _BASELINE_NOTE))
            if project.settings.baseline_revision is not None:
                from_baseline = baseline.prove_down(project, connection)
                checks.extend(from_baseline.checks)
                if from_baseline.head is None:
                    checks.append(
                        CheckResult("drift", NOTE, "skipped: the way down from the baseline failed")
                    )
                    return Outcome(checks)
                drift = check_drift(
                    project, server, connection, env, models_db=f"{database}_models", models=models_ahead()
                )
                return Outcome([*checks, drift])
            if not project.revisions():
                checks.append(CheckResult("stairway", PASS, "no revisions: nothing to check"))
            start = 0
            if plan.resume is not None:  # proven before: upgrade plainly, prove only what follows
                if not copy and at != plan.resume:
                    _replay_proven(project, connection, plan.resume, migrate)
                start = plan.start
                checks.append(CheckResult("stairway", PASS, _cached_message(project, start)))
            jobs = 1 if project.traces is not None else None  # a child's traces stay in the child
            stairway = run_stairway(  # jobs=None: a forked child shares the work (proof/parallel.py)
                project, connection, fail_fast=fail_fast, data_check=data_check, start=start, jobs=jobs
            )
            checks.extend(stairway.checks)
            checks.extend(_traced(project))
            failed = any(c.status == FAIL for c in checks)
            if stairway.head is None or (failed and fail_fast):
                kept = (
                    None
                    if fail_fast
                    else _keep_prefix(project, server, store, plan, stairway, start, database)
                )
                checks.append(
                    kept or CheckResult("round-trip", NOTE, "skipped: the stairway did not reach head")
                )
                checks.append(CheckResult("drift", NOTE, "skipped: the stairway did not reach head"))
                return Outcome(checks)
            recorded = False
            if not project.revisions():
                pass
            elif failed:  # the round trip would repeat the stairway's failures
                kept = _keep_prefix(project, server, store, plan, stairway, start, database)
                checks.append(kept or CheckResult("round-trip", NOTE, "skipped: the stairway found problems"))
            elif not stairway.reversible:
                checks.append(
                    CheckResult("round-trip", NOTE, "skipped: a downgrade is not implemented (irreversible)")
                )
            else:
                minimum = project.settings.minimum_downgrade_revision
                if start and plan.resume and start >= len(project.revisions()):
                    trip = CheckResult(
                        "round-trip",
                        PASS,
                        f"not run again: nothing after {plan.resume}, whose round trip an earlier run proved "
                        "(cache; --no-cache runs it again)",
                    )
                elif start and plan.resume:
                    trip = round_trip(project, connection, stairway.base, stairway.head, plan.resume)
                    if trip.status == PASS:
                        proven = _span(project, start)
                        trip = replace(
                            trip, message=f"{trip.message}; below it: proven by an earlier run ({proven})"
                        )
                elif minimum is not None and stairway.minimum is not None:
                    trip = round_trip(
                        project,
                        connection,
                        stairway.minimum,
                        stairway.head,
                        minimum,
                        why="minimum-downgrade-revision",
                    )
                else:
                    trip = round_trip(project, connection, stairway.base, stairway.head)
                checks.append(trip)
                if checks[-1].status == FAIL and fail_fast:
                    return Outcome(checks)
                if checks[-1].status == PASS:  # stairway and round trip clean: remember the proofs
                    store.record(plan, [c.revision for c in stairway.checks if c.revision])
                    recorded = plan.enabled
            checks.extend(_missing_schemas(project, connection))
            checks.append(
                check_drift(
                    project,
                    server,
                    connection,
                    env,
                    models_db=f"{database}_models",
                    models=models_ahead(),
                    use_cache=models_cache,
                )
            )
            pristine = None
            if saving and recorded and not any(c.status == FAIL for c in checks):
                head = project.script.get_heads()
                if len(head) == 1 and not clusters.has(plan.keys[head[0]]):
                    # without a copy the stairway ran here: after the round trip from base (or
                    # with nothing to prove) this database is what a plain upgrade gives
                    pristine = _pristine_head(
                        project, server, plan, env, pristine_db, None if copy else connection
                    )
            return Outcome(checks, pristine)
    finally:
        engine.dispose()


@contextlib.contextmanager
def _models_ahead(
    project: Project, server: Any, connection: Any, env: Any, name: str, use_cache: bool
) -> Iterator[Callable[[], Any]]:
    """Drift's models side (create_all in database ``name``, snapshot, drop), built by a forked
    child while the stairway runs: work every run does, on the other CPU. Yields ``get()``,
    which waits for it; None (the child failed, or no fork here) lets check_drift build it."""
    from schema_warden.proof import parallel
    from schema_warden.proof.drift import extensions_of, models_side

    if env.metadata is None or not parallel.can_fork():
        yield lambda: None
        return
    extensions = extensions_of(connection)  # at head they may differ: check_drift then rebuilds
    dialect = connection.dialect

    def build() -> Any:
        return models_side(
            server, project, env.metadata, extensions, name, dialect=dialect, use_cache=use_cache
        )

    forked = parallel.Forked(build)
    try:
        yield forked.result
    finally:
        forked.stop()


def _holds(project: Project, server: Any, entry: Any) -> bool:
    """Does the server started from ``entry`` hold what the entry says (revision and schema)?"""
    from sqlalchemy import create_engine, pool
    from sqlalchemy.exc import SQLAlchemyError

    from schema_warden.cache import proofs as cache
    from schema_warden.proof.stairway import snapshot

    if entry.database != DATABASE:
        return False
    engine = create_engine(server.url(entry.database), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(f"SELECT version_num FROM {entry.version_table}").all()
            connection.rollback()
            if [tuple(r) for r in rows] != [(entry.revision,)]:
                return False
            return cache.snapshot_digest(snapshot(project, connection)) == entry.snapshot
    except SQLAlchemyError:
        return False
    finally:
        engine.dispose()


@dataclass
class _Launched:
    """A server started early: from a saved data directory (not yet checked against the
    project), or from the initdb'd cluster (``entry`` None) when none was saved."""

    entry: Any
    server: Any
    intact: bool  # the archive's digest matched
    stack: contextlib.ExitStack  # stops it


def _launch(binaries: Any, clusters: Any, entry: Any) -> _Launched | None:
    """Start the server from ``entry``'s archive; None (entry deleted) when it will not start."""
    from schema_warden.errors import EnvironmentProblem
    from schema_warden.server.postgres import throwaway_server

    attempt = contextlib.ExitStack()
    try:
        with clusters.reading(entry) as reading:  # its digest is checked meanwhile
            started = throwaway_server(binaries=binaries, memory=True, cluster=entry.archive)
            server = attempt.enter_context(started)
        return _Launched(entry, server, reading.intact, attempt.pop_all())
    except EnvironmentProblem:  # it did not even start: damaged
        clusters.discard(entry)
        return None
    finally:
        attempt.close()


def _launch_plain(binaries: Any) -> _Launched | None:
    """Start a server from the initdb'd cluster; None when it will not (the real start then
    reports why)."""
    from schema_warden.errors import EnvironmentProblem
    from schema_warden.server.postgres import throwaway_server

    attempt = contextlib.ExitStack()
    try:
        server = attempt.enter_context(throwaway_server(binaries=binaries, memory=True))
        return _Launched(None, server, True, attempt.pop_all())
    except EnvironmentProblem:
        return None
    finally:
        attempt.close()


def _start_server(
    stack: contextlib.ExitStack,
    project: Project,
    binaries: Any,
    clusters: Any,
    entry: Any,
    launched: _Launched | None = None,
    initdb: _Initdb | None = None,
) -> tuple[Any, str | None]:
    """The throwaway server, from ``entry``'s data directory when it is intact and holds what
    it says (else the entry is deleted); returns (server, revision its database is at).
    ``launched``: a server started early (from a guessed plan): used when it is ``entry``'s.
    ``initdb``: the initdb'd cluster being made meanwhile, else the server makes it."""
    from schema_warden.server.postgres import throwaway_server

    if launched is not None and launched.entry is None:  # started from the initdb'd cluster
        if entry is None:
            stack.enter_context(launched.stack)
            return launched.server, None
        launched.stack.close()  # Alembic's plan found a saved data directory after all
        launched = None
    if launched is not None and (entry is None or launched.entry.path != entry.path):
        launched.stack.close()  # the guess was wrong: not the entry this plan wants
        launched = None
    if entry is not None:
        launched = launched or _launch(binaries, clusters, entry)
        if launched is not None:
            if launched.intact and _holds(project, launched.server, entry):
                stack.enter_context(launched.stack)
                return launched.server, entry.revision
            launched.stack.close()
            clusters.discard(entry)
    cluster = initdb.result() if initdb is not None else None
    return stack.enter_context(throwaway_server(binaries=binaries, memory=True, cluster=cluster)), None


def _save(server: Any, clusters: Any, pristine: Pristine) -> None:
    """Keep the server's data directory, its database pristine at head, for the next run.

    Only a speed-up: a full disk or a server that does not stop cleanly saves nothing and
    changes nothing in the run's result."""
    from psycopg2 import Error

    try:
        for name in server.databases():
            if name != pristine.database:
                server.drop_database(name)
        clusters.save(
            server,
            revision=pristine.revision,
            key=pristine.key,
            database=pristine.database,
            version_table=pristine.version_table,
            snapshot=pristine.snapshot,
        )
    except (OSError, Error, WardenError):
        pass


def run(
    config: str | None = None,
    *,
    pg_bin: str | None = None,
    fail_fast: bool = False,
    data_check: bool = True,
    use_cache: bool = True,
    cwd: Path | None = None,
    on_report: Callable[[Report], None] | None = None,
    accept: bool = False,
    timeout: float | None = None,
    trace: bool = False,
) -> Report:
    """The check's report. ``on_report`` gets it as soon as it is complete, before the run
    saves its data directory for the next run (the one step left then).

    ``timeout`` (default: the ``timeout`` setting, 600 s) bounds the run: past it, the
    running statement is cancelled and the project's code interrupted (proof/watchdog.py),
    the server stopped, and :class:`TimedOut` names what was running. While the run lasts,
    ``os._exit()`` in the project's code raises (project/exits.py); a ``sys.exit()`` or
    ``os._exit()`` that no step caught is a ProjectError naming where it was called."""
    from schema_warden.project.exits import exits_raise
    from schema_warden.project.settings import find_config
    from schema_warden.proof.watchdog import Watchdog

    started = time.perf_counter()
    settings = find_config(config, cwd=cwd)
    seconds = settings.timeout if timeout is None else timeout
    seen: dict[str, Any] = {}  # the project once open, the report once shown
    dog = Watchdog(seconds)

    def shown(report: Report) -> None:
        seen["report"] = report
        if on_report is not None:
            on_report(report)

    try:
        with dog, exits_raise():
            return _run(
                settings,
                started,
                dog,
                seen,
                pg_bin=pg_bin,
                fail_fast=fail_fast,
                data_check=data_check,
                use_cache=use_cache,
                on_report=shown,
                accept=accept,
                trace=trace,
            )
    except KeyboardInterrupt as err:
        if not dog.fired:
            raise
        if "report" in seen:  # the deadline passed while the run saved its data: the report stands
            return seen["report"]  # type: ignore[no-any-return]
        raise _timed_out(err, seen.get("project"), seconds) from None
    except SystemExit as err:  # the project's sys.exit() or os._exit() outside every step
        raise _exited(err, settings, seen.get("project")) from None


def _timed_out(err: BaseException, project: Project | None, seconds: float) -> TimedOut:
    """What was running when the deadline passed, as the error the run ends with."""
    from schema_warden.project.frames import relative
    from schema_warden.project.steps import interrupted_in
    from schema_warden.proof.stairway import label

    after = f"timed out after {seconds:g} s"
    hint = "raise --timeout or [tool.schema-warden] timeout if it is slow on purpose"
    running = interrupted_in(err)
    if project is None or running is None:
        return TimedOut(f"schema-warden check {after}: {hint}", exit_code=EXIT_PROBLEMS, check="timeout")
    revision, upgrade = running
    if revision is None:
        return TimedOut(
            f"{relative(project.env_py, project.root)} {after} (env.py did not return): "
            "look for a loop or a wait in env.py or a module it imports",
            exit_code=EXIT_USAGE,
            check="env.py",
        )
    step = "proof" if upgrade is None else "upgrade" if upgrade else "downgrade"
    return TimedOut(
        f"{label(project, revision)}: {step} {after}: the statement was cancelled; {hint}",
        exit_code=EXIT_PROBLEMS,
        check="stairway",
        revision=revision.revision,
    )


def _exited(err: SystemExit, settings: Any, project: Project | None) -> ProjectError:
    from schema_warden.project.exits import culprit, exit_text
    from schema_warden.project.frames import user_traceback

    root = settings.alembic_config.parent
    where = culprit(
        err,
        root,
        project.env_py if project is not None else None,
        project.revisions() if project is not None else [],
    )
    return ProjectError(f"{where}: {exit_text(err)}", detail=user_traceback(err, root))


def _run(
    settings: Any,
    started: float,
    dog: Any,
    seen: dict[str, Any],
    *,
    pg_bin: str | None,
    fail_fast: bool,
    data_check: bool,
    use_cache: bool,
    on_report: Callable[[Report], None],
    accept: bool,
    trace: bool = False,
) -> Report:
    from schema_warden.cache import proofs as cache
    from schema_warden.cache import static as static_cache
    from schema_warden.project.frames import relative
    from schema_warden.project.imports import isolated_imports
    from schema_warden.project.loader import open_project, project_cwd
    from schema_warden.server.postgres import build_id, cluster_ready, find_binaries, signals_blocked

    options = {"data_check": data_check}
    # a baseline is not in the proofs' keys; a trace needs every upgrade to run
    if settings.baseline is not None or trace:
        use_cache = False
    with (
        project_cwd(settings.alembic_config),
        isolated_imports(settings.alembic_config.parent),
        contextlib.ExitStack() as early,
    ):
        early.enter_context(static_cache.active(use_cache))  # the files' static facts, by content
        files = _history_problems(settings)
        binaries = find_binaries(pg_bin)
        initdb = None
        # a first run on this machine: initdb meanwhile (into the cache, unless it is turned off)
        if speed.enabled("initdb-cache") and not cluster_ready(binaries):
            initdb = _Initdb(binaries)
            early.callback(initdb.thread.join)  # also on errors: no initdb left behind
        clusters = cache.ClusterCache(build_id(binaries), enabled=use_cache)
        launched = None
        guess = _guess_plan(settings, files, binaries.major, options) if use_cache else None
        entry = clusters.find(guess) if guess is not None else None
        preload = _preload()
        # the server starts while Alembic imports; a saved one is checked once the project is open
        with signals_blocked():  # see _start_server: a signal waits until it is registered
            if entry is not None:
                launched = _launch(binaries, clusters, entry)
            elif initdb is None:
                launched = _launch_plain(binaries)
            if launched is not None:
                early.callback(launched.stack.close)  # closes nothing once handed over
        preload.join()
        project = open_project(settings=settings, lazy=True)
        if trace:
            project.traces = {}
        seen["project"] = project
        count = len(project.revisions())
        title = f"schema-warden check: {relative(project.ini, Path.cwd())} ({count} revisions)"
        store, plan = cache.plan_project(
            project, binaries.major, enabled=use_cache, options=options, known=guess
        )
        with interruptible_queries(), contextlib.ExitStack() as stack:
            entry = clusters.find(plan)
            if (
                launched is not None
                and launched.entry is not None
                and guess is not None
                and guess.keys != plan.keys
            ):
                launched.stack.close()  # the static reading and Alembic disagree: no guessing
                launched = None
            # Starting a server runs programs with a preexec_fn (tar, postgres), so Python runs
            # its fork hooks: Ctrl-C inside logging's would print "Exception ignored" and
            # leave its lock in doubt. Signals wait the 0.1 s; the server is in the stack first.
            with signals_blocked():
                server, at = _start_server(stack, project, binaries, clusters, entry, launched, initdb)
            dog.server = server  # at the deadline, its running statements are cancelled
            # what this run can execute imports now: a broken revision file is exit 2 here,
            # and a forked worker of the stairway inherits the modules
            project.load_modules(after=at)
            notes = _version_note(project, server)
            outcome = _run_checks(
                project,
                server,
                store,
                plan,
                fail_fast=fail_fast,
                data_check=data_check,
                clusters=clusters if clusters.enabled else None,
                at=at,
                use_cache=use_cache,
            )
            checks = _accepted(project, outcome.checks, accept)
            report = Report(title, tuple(checks), time.perf_counter() - started, tuple(notes))
            on_report(report)
            if report.ok and outcome.pristine is not None:
                with signals_blocked():  # the report is out: the last step, a speed-up, finishes
                    _save(server, clusters, outcome.pristine)
    return report


def _accepted(project: Project, checks: Sequence[CheckResult], accept: bool) -> list[CheckResult]:
    """Findings listed as accepted become notes; ``accept``: list today's findings first."""
    from schema_warden.project import accepted
    from schema_warden.project.frames import relative

    path = project.settings.accepted_findings or project.root / accepted.DEFAULT_FILE
    where = relative(path, Path.cwd().resolve())
    if accept:
        findings = [c for c in checks if c.status == FAIL]
        accepted.write(path, findings)
        checks = [*checks, CheckResult(accepted.NAME, NOTE, f"{len(findings)} finding(s) written to {where}")]
    return accepted.apply(checks, accepted.read(path), where)


def error_report(err: WardenError, started: float) -> Report:
    """A project or environment error as a report, so JSON and Markdown readers always get one."""
    name = "environment" if err.exit_code == EXIT_ENVIRONMENT else "project"
    revision = None
    if isinstance(err, TimedOut):
        name, revision = err.check, err.revision
    details = tuple(err.detail.rstrip().splitlines()) if err.detail else ()
    return Report(
        "schema-warden check",
        (CheckResult(name, FAIL, err.message, revision, details),),
        time.perf_counter() - started,
    )


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()

    def show(report: Report) -> None:  # before the data directory is saved
        sys.stdout.write(render(report, args.format))
        sys.stdout.flush()

    try:
        report = run(
            args.config,
            pg_bin=args.pg_bin,
            fail_fast=args.fail_fast,
            data_check=not args.no_data_check,
            use_cache=not args.no_cache,
            on_report=show,
            accept=args.accept,
            trace=args.trace,
            timeout=args.timeout,
        )
    except WardenError as err:
        if args.format != "text":  # the one-line error still goes to stderr, with its exit code
            sys.stdout.write(render(error_report(err, started), args.format))
        raise
    return EXIT_OK if report.ok else EXIT_PROBLEMS
