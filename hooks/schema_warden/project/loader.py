"""Find and load an Alembic project: alembic.ini, ``[tool.schema-warden]`` settings, scripts, env.py.

The guard reaches a project only through its ``alembic.ini`` and ``env.py`` (never by
importing the project's models itself), so it works on any Alembic project. Migrations run
in-process with a connection injected into ``config.attributes["connection"]``; while the
project's code runs, ``DATABASE_URL``, ``sqlalchemy.url`` and the libpq ``PG*`` variables
point at the throwaway database, so even an env.py that ignores the injected connection
cannot reach the user's database.

``open_project(lazy=True)`` reads the revision ids with ``ast`` and imports a revision's
module only when something uses it (a warm check executes few revisions); a project whose
revision files are not all plain literals is loaded eagerly, exactly as Alembic does.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schema_warden.errors import ProjectError, one_line
from schema_warden.project.environment import quiet_logging, throwaway_environment
from schema_warden.project.exits import exit_text, exits_raise
from schema_warden.project.frames import import_failure, relative, syntax_error, user_traceback
from schema_warden.project.imports import isolated_imports
from schema_warden.project.lazy import lazy_revision_map
from schema_warden.project.session import EnvSession, create_version_schema, in_anyio_worker, watch_env
from schema_warden.project.settings import Settings, find_config
from schema_warden.project.steps import (
    Guarded,
    MigrationFailed,
    is_database_error,
    mark_interrupted,
    raised_in_migration,
)


@dataclass(frozen=True)
class EnvInfo:
    """What env.py configured: the models' metadata and its context options."""

    metadata: Any  # MetaData, a sequence of them, or None
    opts: dict[str, Any]


# --- the project ----------------------------------------------------------------------


class Project:
    """An Alembic project: its Config, its ScriptDirectory (loaded once) and its env.py."""

    def __init__(self, settings: Settings, config: Any, script: Any) -> None:
        self.settings = settings
        self.config = config
        self.script = script
        self.ini = settings.alembic_config
        self.root = settings.alembic_config.parent
        self.env_py = Path(script.dir) / "env.py"
        self._revisions: list[Any] | None = None
        self._session: EnvSession | None = None
        self.lazy = False  # revision modules imported on first use (open_project(lazy=True))
        self._below_minimum: set[str] | None = None
        self.traces: dict[str, Any] | None = None  # revision -> its upgrade's trace (check --trace)
        self._anyio_worker: bool | None = None  # env.py runs in an AnyIO worker thread

    def revisions(self) -> list[Any]:
        """Every revision (alembic ``Script``), base -> head, branches in topological order."""
        if self._revisions is None:
            self._revisions = list(reversed(list(self.script.walk_revisions("base", "heads"))))
        return self._revisions

    def load_modules(self, revisions: Iterable[Any] | None = None, *, after: str | None = None) -> None:
        """Import these revisions' modules now (every revision's when None), base -> head.

        ``after``: a database is at this revision already: every revision except it and its
        ancestors (what an upgrade from there can execute). For a lazily opened project the
        revisions a run will execute fail here, up front, with the ProjectError an eager
        open_project gives (and forked workers inherit the modules). Nothing to do for an
        eager one.
        """
        if revisions is None:
            applied = self._ancestry(after) if after is not None else set()
            revisions = [r for r in self.revisions() if r.revision not in applied]
        for revision in revisions:
            _ = revision.module

    def _ancestry(self, revision: str) -> set[str]:
        """``revision`` and every revision an upgrade to it applies (down revisions, depends_on)."""
        by_id = {r.revision: r for r in self.revisions()}
        found: set[str] = set()
        todo = [revision]
        while todo:
            current = by_id.get(todo.pop())
            if current is None or current.revision in found:
                continue
            found.add(current.revision)
            for attr in (current.down_revision, current.dependencies):
                todo.extend((attr,) if isinstance(attr, str) else attr or ())
        return found

    def below_minimum(self) -> set[str]:
        """``minimum-downgrade-revision`` and every revision below it: downgrades not proven."""
        minimum = self.settings.minimum_downgrade_revision
        if minimum is None:
            return set()
        if self._below_minimum is None:
            if minimum not in {r.revision for r in self.revisions()}:
                raise ProjectError(
                    f"[tool.schema-warden] minimum-downgrade-revision {minimum!r} is not a revision of "
                    "this history: set it to a revision id (schema-warden heads lists them)"
                )
            self._below_minimum = self._ancestry(minimum)
        return self._below_minimum

    def revision_file(self, revision: Any) -> str:
        return relative(revision.path, self.root)

    def is_bundled_layout(self) -> bool:
        """The IoT team's own layout: database/manage.py next to database/alembic."""
        return (self.root / "database" / "manage.py").is_file() and Path(self.script.dir).resolve() == (
            self.root / "database" / "alembic"
        ).resolve()

    # env.py runs ------------------------------------------------------------------------

    def run_env(self, connection: Any, fn: Callable[[Any, Any], list[Any]]) -> Any:
        """Run env.py online on ``connection`` with ``fn`` choosing the steps; returns its context."""
        return self._run_env(connection, fn, remember=False)

    def _run_env(
        self,
        connection: Any,
        fn: Callable[[Any, Any], list[Any]],
        *,
        remember: bool,
        ran: list[Any] | None = None,
    ) -> Any:
        from alembic.runtime.environment import EnvironmentContext

        self.config.attributes["connection"] = connection
        self.config.attributes["configure_logger"] = False
        with throwaway_environment(connection, self.config), quiet_logging():
            self._import_models()
            env = EnvironmentContext(self.config, self.script, fn=fn)
            calls = watch_env(env) if remember else None
            create_version_schema(env, connection)
            with env:
                self._exec_env(self.script.run_env, ran)
                try:
                    context = env.get_context()
                except Exception:  # env.py never called context.configure()
                    return None
        if calls is not None:
            self._session = EnvSession.capture(env, context, connection, fn, calls)
        return context

    def create_baseline(self, connection: Any) -> None:
        """The schema the first revision expects (``baseline``): a .sql file run as one script,
        or the ``create_all`` of a declarative Base / MetaData. Not committed here."""
        baseline = self.settings.baseline
        if baseline is None:
            return
        if baseline.endswith(".sql"):
            try:
                sql = Path(baseline).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise ProjectError(f"[tool.schema-warden] baseline: cannot read {baseline}: {err}") from None
            connection.exec_driver_sql(sql)
            return
        metadata = self._baseline_metadata(baseline)
        metadata.create_all(connection)

    def _baseline_metadata(self, baseline: str) -> Any:
        import importlib

        from sqlalchemy import MetaData

        module_name, _, attr = baseline.partition(":")
        with self._on_path(), exits_raise():
            try:
                found: Any = importlib.import_module(module_name)
                for part in (attr or "metadata").split("."):
                    found = getattr(found, part)
            except (Exception, SystemExit) as err:
                raise ProjectError(
                    f"[tool.schema-warden] baseline {baseline!r}: {type(err).__name__}: "
                    f'{one_line(str(err))}: name a declarative Base or a MetaData as "package.module:Base"',
                    detail=user_traceback(err, self.root),
                ) from None
        metadata = getattr(found, "metadata", found)
        if not isinstance(metadata, MetaData):
            raise ProjectError(
                f"[tool.schema-warden] baseline {baseline!r} is a {type(found).__name__}, "
                "not a declarative Base or a MetaData"
            )
        return metadata

    @contextlib.contextmanager
    def _on_path(self) -> Iterator[None]:
        """The project root on sys.path for the block (as Alembic's prepend_sys_path would)."""
        root = str(self.root)
        added = root not in sys.path
        if added:
            sys.path.append(root)
        try:
            yield
        finally:
            if added:
                with contextlib.suppress(ValueError):
                    sys.path.remove(root)

    def stamp(self, connection: Any, target: str) -> None:
        """``alembic stamp target`` on ``connection``: the version table says ``target``, nothing runs."""
        script = self.script
        self._run_steps(connection, lambda rev, _ctx: list(script._stamp_revs(target, rev)))

    def _import_models(self) -> None:
        """The ``models`` setting: modules env.py does not import itself, imported before it
        runs so that their tables are in its metadata (declarative classes register there)."""
        import importlib

        for name in self.settings.models:
            if name in sys.modules:
                continue
            try:
                with self._on_path(), exits_raise():
                    importlib.import_module(name)
            except (Exception, SystemExit) as err:
                raise ProjectError(
                    f"[tool.schema-warden] models: {name} failed to import: {type(err).__name__}: "
                    f"{one_line(str(err))}: fix the module name (a dotted module path, importable from "
                    "the project root or prepend_sys_path)",
                    detail=user_traceback(err, self.root),
                ) from None

    def _run_again(self, session: EnvSession, fn: Callable[[Any, Any], list[Any]], ran: list[Any]) -> None:
        """The steps of ``fn`` through the MigrationContext an earlier env.py run configured.

        What env.py does is configure a context on the injected connection and run its
        migrations in a transaction: done here directly, env.py is not executed again.
        """
        from alembic.operations import Operations

        context = session.context
        connection = session.connection

        def migrate() -> None:
            # a fresh DDL implementation, as a new env.py run would make: its memo remembers
            # the enum types a create_table made, which a downgrade may have dropped since
            impl = context.impl
            context.impl = type(impl)(
                impl.dialect,
                impl.connection,
                impl.as_sql,
                context.opts.get("transactional_ddl"),
                impl.output_buffer,
                impl.context_opts,
            )
            context._migrations_fn = fn
            context._transaction = None
            context._in_external_transaction = connection.in_transaction()
            with context.begin_transaction(), Operations.context(context):
                context.run_migrations()

        self.config.attributes["connection"] = connection
        try:
            with throwaway_environment(connection, self.config), quiet_logging(), session.env:
                self._exec_env(migrate, ran, env_runs=False)
        except BaseException:
            session.forget_heads()  # rolled back: the version table is what it was, or unknown
            raise

    def _call(self, run: Callable[[], None], ran: list[Any] | None) -> None:
        """``run()``, in an AnyIO worker thread when env.py needs one.

        An env.py that bridges into async code with ``anyio.from_thread.run`` only works in a
        thread AnyIO started (as its app's request handlers are). Such an env.py is seen in its
        text, or by AnyIO's own error before any step ran; it then runs in a worker thread of
        an event loop the guard starts, with no setting.
        """
        if self._anyio_worker is None:
            try:
                text = self.env_py.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            self._anyio_worker = "from_thread" in text and "anyio" in text
        if self._anyio_worker:
            in_anyio_worker(run)
            return
        try:
            run()
        except Exception as err:  # RuntimeError, or NoEventLoopError in newer AnyIO
            if "AnyIO worker thread" not in str(err) or ran:
                raise
            self._anyio_worker = True
            in_anyio_worker(run)

    def _exec_env(
        self, run: Callable[[], None], ran: list[Any] | None = None, *, env_runs: bool = True
    ) -> None:
        """Run env.py (or, ``env_runs`` False, the steps it configured); ``ran``: the steps that
        returned so far.

        ``os._exit()`` raises here (exits.py) instead of ending the guard's process."""
        try:
            with exits_raise():
                self._call(run, ran)
        except (MigrationFailed, ProjectError):  # a revision file imported on first use failed
            raise
        except KeyboardInterrupt as err:  # outside a migration function
            if ran:  # Alembic was recording (or committing) the last step that returned
                mark_interrupted(err, ran[-1].revision, ran[-1].is_upgrade)
            elif env_runs:  # env.py's own code
                mark_interrupted(err, None, None)
            raise
        except SyntaxError as err:
            what = "env.py" if Path(err.filename or "").name == "env.py" else "a module env.py imports"
            raise syntax_error(err, self.root, what) from None
        except ImportError as err:
            raise ProjectError(
                f"{relative(self.env_py, self.root)} failed to import: {one_line(str(err))}: "
                "check the module names and prepend_sys_path in alembic.ini",
                detail=user_traceback(err, self.root),
            ) from None
        except (Exception, SystemExit) as err:  # sys.exit() and os._exit() in env.py too
            if raised_in_migration(err, self):
                raise
            if ran and is_database_error(err):  # the commit after the steps (deferred checks)
                raise MigrationFailed(ran[-1].revision, ran[-1].is_upgrade, err, at_commit=True) from err
            what = f"raised {type(err).__name__}: {one_line(str(err))}"
            if isinstance(err, SystemExit):
                what = exit_text(err)
            raise ProjectError(
                f"{relative(self.env_py, self.root)} {what}",
                detail=user_traceback(err, self.root),
            ) from None

    def environment(self, connection: Any) -> EnvInfo:
        """Run env.py without migrating anything and capture its target_metadata and options."""
        context = self.run_env(connection, lambda rev, ctx: [])
        opts = dict(context.opts) if context is not None else {}
        return EnvInfo(metadata=opts.get("target_metadata"), opts=opts)

    def metadata(self, connection: Any) -> Any:
        """target_metadata from env.py (a MetaData, a list of them, or None)."""
        return self.environment(connection).metadata

    def migrate(self, connection: Any, target: str, *, downgrade: bool = False) -> None:
        """``alembic upgrade/downgrade target`` on ``connection`` (env.py runs, nothing committed here)."""
        script = self.script

        def steps(rev: Any, _ctx: Any) -> list[Any]:
            if downgrade:
                return script._downgrade_revs(target, rev)
            return script._upgrade_revs(target, rev)

        self._run_steps(connection, steps)

    def step(self, connection: Any, revision: Any, *, downgrade: bool = False) -> None:
        """Apply (or revert) exactly one revision, whatever else is applied (branches)."""
        from alembic.runtime.migration import MigrationStep

        revision_map = self.script.revision_map

        def steps(_rev: Any, _ctx: Any) -> list[Any]:
            if downgrade:
                return [MigrationStep.downgrade_from_script(revision_map, revision)]
            return [MigrationStep.upgrade_from_script(revision_map, revision)]

        self._run_steps(connection, steps)

    def rolled_back(self, connection: Any) -> None:
        """The caller rolled back what the last steps on ``connection`` wrote (its commit failed)."""
        session = self._session
        if session is not None and session.connection is connection:
            session.forget_heads()

    def _run_steps(self, connection: Any, fn: Callable[[Any, Any], list[Any]]) -> None:
        ran: list[Any] = []

        def wrapped(rev: Any, ctx: Any) -> list[Any]:
            return [Guarded(step, ran) for step in fn(rev, ctx)]

        session = self._session
        if session is not None and session.connection is connection:
            self._run_again(session, wrapped, ran)
        else:
            self._session = None
            self._run_env(connection, wrapped, remember=True, ran=ran)


def _script_location(ini: Path) -> str:
    from schema_warden.project.history import read_ini

    parser = read_ini(ini)
    location = parser.get("alembic", "script_location", fallback="").strip()
    if not location:
        raise ProjectError(f"{ini}: no script_location in section [alembic]: add the migrations directory")
    return location


def import_alembic() -> None:
    """Import what running migrations needs from Alembic and SQLAlchemy (0.25-0.3 s).

    Alembic imports Mako (for its revision templates), and Mako imports Pygments when it is
    installed, only to colour the HTML page of a template error: 0.04 s that no command here
    uses. Pygments is hidden while Mako decides (Mako then takes its plain fallback) and is
    importable again afterwards. Import errors propagate.
    """
    hidden = "mako.exceptions" not in sys.modules and "pygments" not in sys.modules
    if hidden:
        sys.modules["pygments"] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import alembic.runtime.environment
        import alembic.script  # noqa: F401
        import sqlalchemy  # noqa: F401
    finally:
        if hidden and sys.modules.get("pygments", 0) is None:
            del sys.modules["pygments"]


def open_project(
    config: str | os.PathLike[str] | None = None,
    *,
    settings: Settings | None = None,
    cwd: Path | None = None,
    lazy: bool = False,
) -> Project:
    """Load alembic.ini and every revision file (inside :func:`isolated_imports` of its root).

    Raises ProjectError (exit 2) with a one-line message for a missing alembic.ini or
    script directory and for revision files that do not import.

    ``lazy``: the revision map is built from the files' literal ids (read with ``ast``) and
    each revision module is imported on first use (:meth:`Project.load_modules` imports the
    ones a run will execute up front, with the same errors); a project whose files are not
    all statically readable is loaded eagerly as Alembic does.
    """
    import configparser

    import_alembic()
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    settings = settings or find_config(config, cwd=cwd)
    ini = settings.alembic_config
    if not ini.is_file():
        raise ProjectError(f"no alembic.ini at {ini}: pass --config PATH")
    location = _script_location(ini)
    cfg = Config(str(ini))
    cfg.attributes["configure_logger"] = False
    try:
        script = ScriptDirectory.from_config(cfg)
    except CommandError as err:
        template = " (an unrendered template placeholder)" if "{" in location else ""
        raise ProjectError(
            f"{ini.name}: script_location {location!r}{template} does not exist ({one_line(str(err))}): "
            "fix script_location in alembic.ini"
        ) from None
    except configparser.Error as err:  # Alembic interpolates %(name)s, the reading above did not
        raise ProjectError(f"{ini}: not a valid ini file for Alembic: {one_line(str(err))}") from None
    if not Path(script.dir).is_dir():
        raise ProjectError(f"{ini.name}: script_location {script.dir} is not a directory: fix alembic.ini")
    if settings.version_locations:  # env.py picks its versions directory at run time
        listed = [str(p) for p in script._version_locations]
        wanted = list(dict.fromkeys([*listed, *(str(p) for p in settings.version_locations)]))
        cfg.set_main_option("path_separator", "os")
        cfg.set_main_option("version_locations", os.pathsep.join(wanted).replace("%", "%%"))
        script = ScriptDirectory.from_config(cfg)
    project = Project(settings, cfg, script)
    if lazy:
        project.lazy = lazy_revision_map(script, project.root, prepend_sys_paths(cfg))
    try:
        _load_revisions(project)
    except ProjectError as err:
        cause = err.__context__
        if not isinstance(cause, SyntaxError) or cause.filename:
            raise
        # compile() names no file for a NUL byte ("?:None"): name the revision file that has one
        pattern = "**/*.py" if script.recursive_version_locations else "*.py"
        for directory in script._version_locations:
            for path in sorted(Path(directory).glob(pattern)):
                with contextlib.suppress(OSError):
                    if b"\0" in path.read_bytes():
                        raise ProjectError(
                            f"{relative(path, project.root)}: syntax error in migration: {cause.msg}: "
                            "fix the file"
                        ) from None
        raise
    return project


def prepend_sys_paths(cfg: Any) -> list[str]:
    """The ``prepend_sys_path`` entries as Alembic splits them; none when the ini has none."""
    split = getattr(cfg, "get_prepend_sys_paths_list", None)
    if split is not None:  # Alembic >= 1.16 (path_separator, pyproject.toml)
        return list(split() or ())
    text = cfg.get_main_option("prepend_sys_path") or ""
    return [entry for entry in re.split(r", *|(?: +)|:", text) if entry]


def _load_revisions(project: Project) -> None:
    from alembic.util import CommandError

    try:
        project.revisions()
    except CommandError as err:
        raise ProjectError(f"broken migration history: {one_line(str(err))}") from None
    except Exception as err:
        raise import_failure(err, project.root) from None


@contextlib.contextmanager
def loaded_project(
    config: str | os.PathLike[str] | None = None, *, cwd: Path | None = None, lazy: bool = False
) -> Iterator[Project]:
    """``open_project`` inside ``isolated_imports``: the usual way to work on a project."""
    settings = find_config(config, cwd=cwd)
    root = settings.alembic_config.parent
    with project_cwd(settings.alembic_config), isolated_imports(root):
        yield open_project(settings=settings, lazy=lazy)


@contextlib.contextmanager
def project_cwd(ini: Path) -> Iterator[None]:
    """Run in the directory the project's relative paths mean.

    Alembic resolves a relative ``script_location`` and ``prepend_sys_path = .`` against the
    working directory, so a project whose alembic.ini sits in ``backend/`` is run from there
    (``cd backend && alembic upgrade head``). A pre-commit hook runs from the repository root:
    when the relative script_location exists beside the ini and not in the working directory,
    the block runs in the ini's directory, as its developers run Alembic.
    """
    try:
        location = _script_location(ini)
    except ProjectError:
        location = ""
    relative_location = location and "%(here)s" not in location and not os.path.isabs(location)
    here = ini.parent.resolve()
    moved = False
    saved = os.getcwd()
    elsewhere = bool(relative_location) and here != Path(saved).resolve()
    if elsewhere and not (Path(saved) / location).is_dir() and (here / location).is_dir():
        os.chdir(here)
        moved = True
    try:
        yield
    finally:
        if moved:
            os.chdir(saved)
