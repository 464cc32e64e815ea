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

import ast
import contextlib
import functools
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schema_warden.errors import ProjectError
from schema_warden.project import routing

DEFAULT_EXCLUDE_TABLES = ("_prisma_migrations",)
_GUARD_PACKAGE = __name__.split(".")[0]


@dataclass(frozen=True)
class Settings:
    """``[tool.schema-warden]`` of pyproject.toml, with defaults; paths are absolute."""

    alembic_config: Path
    exclude_tables: frozenset[str] = frozenset(DEFAULT_EXCLUDE_TABLES)
    schemas: tuple[str, ...] = ("public",)
    postgres_version: int | None = None
    irreversible: frozenset[str] = frozenset()
    models: tuple[str, ...] = ()  # modules imported before env.py runs (their tables join its metadata)
    multiple_heads: bool = False  # several heads by design: every head is proven
    minimum_downgrade_revision: str | None = None  # downgrades are proven down to it only
    version_locations: tuple[Path, ...] = ()  # where the revision files are when env.py picks them
    baseline: str | None = None  # "pkg.module:Base" or an absolute path to a .sql file
    baseline_revision: str | None = None  # the baseline is stamped at this revision ("head": every head)
    accepted_findings: Path | None = None  # findings accepted as history (None: beside alembic.ini)
    lint: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class EnvInfo:
    """What env.py configured: the models' metadata and its context options."""

    metadata: Any  # MetaData, a sequence of them, or None
    opts: dict[str, Any]


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ProjectError(f"{path}: not valid TOML: {err}: fix the file") from None


def _string_list(table: dict[str, Any], key: str, default: Iterable[str], where: Path) -> tuple[str, ...]:
    value = table.get(key, list(default))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise ProjectError(f"{where}: [tool.schema-warden] {key} must be a list of strings")
    return tuple(str(v) for v in value)


# every key of [tool.schema-warden]: any other is a typo, and a typo must not silently do nothing
SETTINGS_KEYS = (
    "alembic-config",
    "exclude-tables",
    "schemas",
    "postgres-version",
    "irreversible",
    "lint",
    "models",
    "baseline",
    "baseline-revision",
    "multiple-heads",
    "minimum-downgrade-revision",
    "version-locations",
    "no-data",
    "accepted-findings",
    "timeout",
)


def load_settings(config: str | os.PathLike[str] | None = None, *, cwd: Path | None = None) -> Settings:
    """Settings for the project at ``cwd``: ``--config`` > ``alembic-config`` > ``./alembic.ini``.

    pyproject.toml is read from the directory of an explicit ``--config``, else from ``cwd``.
    """
    cwd = (cwd or Path.cwd()).resolve()
    explicit = Path(config).expanduser() if config else None
    if explicit is not None and not explicit.is_absolute():
        explicit = cwd / explicit
    base = explicit.parent if explicit is not None else cwd
    pyproject = base / "pyproject.toml"
    if not pyproject.is_file() and explicit is not None:
        pyproject = cwd / "pyproject.toml"
    table: dict[str, Any] = {}
    if pyproject.is_file():
        table = dict(_read_toml(pyproject).get("tool", {}).get("schema-warden", {}))
    unknown = [key for key in table if key not in SETTINGS_KEYS]
    if unknown:
        import difflib

        named = []
        for key in unknown:
            close = difflib.get_close_matches(key.replace("_", "-").lower(), SETTINGS_KEYS, n=1)
            named.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ProjectError(
            f"{pyproject}: [tool.schema-warden] has no setting {', '.join(named)}: "
            f"the settings are {', '.join(SETTINGS_KEYS)}"
        )
    if explicit is not None:
        ini = explicit
    elif table.get("alembic-config"):
        ini = pyproject.parent / str(table["alembic-config"])
    else:
        ini = cwd / "alembic.ini"
    version = table.get("postgres-version")
    if version is not None and not isinstance(version, int):
        raise ProjectError(f"{pyproject}: [tool.schema-warden] postgres-version must be a number like 16")
    lint = table.get("lint", {})
    multiple_heads = table.get("multiple-heads", False)
    if not isinstance(multiple_heads, bool):
        raise ProjectError(f"{pyproject}: [tool.schema-warden] multiple-heads must be true or false")
    minimum = table.get("minimum-downgrade-revision")
    if minimum is not None and not isinstance(minimum, str):
        raise ProjectError(
            f'{pyproject}: [tool.schema-warden] minimum-downgrade-revision must be a revision id like "0003"'
        )
    baseline = table.get("baseline")
    if baseline is not None and (not isinstance(baseline, str) or not baseline.strip()):
        raise ProjectError(
            f"{pyproject}: [tool.schema-warden] baseline must be "
            '"package.module:Base" or a path to a .sql file'
        )
    if isinstance(baseline, str) and baseline.endswith(".sql"):
        baseline = str((pyproject.parent / baseline).resolve())
    baseline_revision = table.get("baseline-revision")
    if baseline_revision is not None and (not isinstance(baseline_revision, str) or baseline is None):
        raise ProjectError(
            f'{pyproject}: [tool.schema-warden] baseline-revision must be a revision id or "head", '
            "with baseline set"
        )
    accepted = table.get("accepted-findings")
    if accepted is not None and not isinstance(accepted, str):
        raise ProjectError(f"{pyproject}: [tool.schema-warden] accepted-findings must be a file path")
    listed = _string_list(table, "version-locations", (), pyproject)
    locations = tuple((pyproject.parent / entry).resolve() for entry in listed)
    return Settings(
        alembic_config=ini.resolve(),
        exclude_tables=frozenset(_string_list(table, "exclude-tables", DEFAULT_EXCLUDE_TABLES, pyproject)),
        schemas=_string_list(table, "schemas", ("public",), pyproject),
        postgres_version=version,
        irreversible=frozenset(_string_list(table, "irreversible", (), pyproject)),
        models=_string_list(table, "models", (), pyproject),
        multiple_heads=multiple_heads,
        minimum_downgrade_revision=minimum,
        version_locations=locations,
        baseline=baseline,
        baseline_revision=baseline_revision,
        accepted_findings=(pyproject.parent / accepted).resolve() if accepted else None,
        lint=dict(lint) if isinstance(lint, dict) else {},
        raw=table,
    )


# --- imports of the project's own modules ---------------------------------------------


def _top_level_names(directories: Iterable[Path]) -> set[str]:
    names: set[str] = set()
    for directory in directories:
        with contextlib.suppress(OSError):
            for entry in directory.iterdir():
                if entry.suffix == ".py" and entry.stem.isidentifier():
                    names.add(entry.stem)
                elif entry.is_dir() and entry.name.isidentifier():
                    names.add(entry.name)
    names.discard(_GUARD_PACKAGE)
    return names


def _prefixes(roots: Iterable[Path]) -> tuple[str, ...]:
    found: list[str] = []
    for root in roots:
        for text in (os.path.abspath(root), os.path.realpath(root)):
            found.append(text.rstrip(os.sep) + os.sep)
    return tuple(dict.fromkeys(found))


def _is_under(path: str | None, roots: Iterable[Path]) -> bool:
    """Path prefix test without touching the disk (called for every loaded module)."""
    if not path:
        return False
    return os.path.abspath(path).startswith(_prefixes(roots))


def _installed_prefixes() -> tuple[str, ...]:
    import sysconfig

    paths = sysconfig.get_paths()
    dirs = {paths.get(key, "") for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(os.path.join(os.path.abspath(d), "") for d in dirs if d)


def _installed(path: str, prefixes: tuple[str, ...]) -> bool:
    """Installed code (stdlib, site-packages, a virtualenv inside the project): never the project's."""
    return "site-packages" in path or "dist-packages" in path or path.startswith(prefixes)


def _project_modules(names: set[str], roots: list[Path]) -> list[str]:
    prefixes = _prefixes(roots)
    installed = _installed_prefixes()
    found = []
    for name, module in list(sys.modules.items()):
        top = name.split(".")[0]
        if top == _GUARD_PACKAGE:
            continue
        path = getattr(module, "__file__", None)
        if path is None:  # namespace packages (no __init__.py) of the project, by name
            if top in names and list(getattr(module, "__path__", [])):
                found.append(name)
            continue
        path = os.path.abspath(path)
        if _installed(path, installed):
            continue
        if top in names or path.startswith(prefixes):
            found.append(name)
    return found


@contextlib.contextmanager
def isolated_imports(root: Path, extra_paths: Iterable[Path] = ()) -> Iterator[None]:
    """Import the project's modules fresh inside the block and forget them after.

    Modules that the project could shadow (its top-level names, e.g. ``database`` or
    ``app``) are set aside for the block and put back after, and ``sys.path`` is restored,
    so two versions of one project, or many fixture projects, load in one process.

    No bytecode is written meanwhile: a .pyc is trusted by its source's mtime (whole
    seconds) and size, so a model edited within the second of an earlier load (same size:
    ``String(32)`` -> ``String(64)``) would be read stale; and the guard leaves no
    ``__pycache__`` in the user's tree.
    """
    roots = [Path(root).resolve(), *(Path(p).resolve() for p in extra_paths)]
    names = _top_level_names(roots)
    saved_path = list(sys.path)
    saved_modules = {name: sys.modules.pop(name) for name in _project_modules(names, roots)}
    saved_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        yield
    finally:
        sys.dont_write_bytecode = saved_bytecode
        for name in _project_modules(names, roots):
            sys.modules.pop(name, None)
        sys.modules.update(saved_modules)
        sys.path[:] = saved_path


# --- errors in the project's code, trimmed to the project's own frames --------------------


def _is_user_frame(filename: str, root: Path) -> bool:
    return _is_under(filename, [root]) and "site-packages" not in filename


def user_traceback(err: BaseException, root: Path) -> str:
    """The traceback of ``err`` with only the project's frames (paths relative to ``root``)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if _is_user_frame(f.filename, root)]
    lines = []
    for frame in frames:
        lines.append(f'  File "{relative(frame.filename, root)}", line {frame.lineno}, in {frame.name}')
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    lines.append(f"{type(err).__name__}: {one_line(str(err))}")
    return "\n".join(lines)


def relative(path: str | os.PathLike[str], root: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).resolve().relative_to(root))
    return str(path)


def one_line(text: str) -> str:
    stripped = text.strip()
    return " ".join(stripped.splitlines()[0].split()) if stripped else ""


def _syntax_error(err: SyntaxError, root: Path, what: str) -> ProjectError:
    where = relative(err.filename or "?", root)
    return ProjectError(
        f"{where}:{err.lineno}: syntax error in {what}: {err.msg}: fix the file",
        detail=(err.text or "").rstrip(),
    )


def user_frame_files(err: BaseException) -> list[str]:
    return [f.filename for f in traceback.extract_tb(err.__traceback__)]


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
        self._session: _EnvSession | None = None
        self.lazy = False  # revision modules imported on first use (open_project(lazy=True))
        self._below_minimum: set[str] | None = None
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
            calls = _watch_env(env) if remember else None
            _create_version_schema(env, connection)
            with env:
                self._exec_env(self.script.run_env, ran)
                try:
                    context = env.get_context()
                except Exception:  # env.py never called context.configure()
                    return None
        if calls is not None:
            self._session = _EnvSession.capture(env, context, connection, fn, calls)
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
        with self._on_path():
            try:
                found: Any = importlib.import_module(module_name)
                for part in (attr or "metadata").split("."):
                    found = getattr(found, part)
            except Exception as err:
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
                with self._on_path():
                    importlib.import_module(name)
            except Exception as err:
                raise ProjectError(
                    f"[tool.schema-warden] models: {name} failed to import: {type(err).__name__}: "
                    f"{one_line(str(err))}: fix the module name (a dotted module path, importable from "
                    "the project root or prepend_sys_path)",
                    detail=user_traceback(err, self.root),
                ) from None

    def _run_again(self, session: _EnvSession, fn: Callable[[Any, Any], list[Any]], ran: list[Any]) -> None:
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
                self._exec_env(migrate, ran)
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
            _in_anyio_worker(run)
            return
        try:
            run()
        except Exception as err:  # RuntimeError, or NoEventLoopError in newer AnyIO
            if "AnyIO worker thread" not in str(err) or ran:
                raise
            self._anyio_worker = True
            _in_anyio_worker(run)

    def _exec_env(self, run: Callable[[], None], ran: list[Any] | None = None) -> None:
        """Run env.py (or the steps it configured); ``ran``: the steps that returned so far."""
        try:
            self._call(run, ran)
        except (MigrationFailed, ProjectError):  # a revision file imported on first use failed
            raise
        except SyntaxError as err:
            what = "env.py" if Path(err.filename or "").name == "env.py" else "a module env.py imports"
            raise _syntax_error(err, self.root, what) from None
        except ImportError as err:
            raise ProjectError(
                f"{relative(self.env_py, self.root)} failed to import: {one_line(str(err))}: "
                "check the module names and prepend_sys_path in alembic.ini",
                detail=user_traceback(err, self.root),
            ) from None
        except (Exception, SystemExit) as err:  # sys.exit() in env.py too
            if _raised_in_migration(err, self):
                raise
            if ran and _is_database_error(err):  # the commit after the steps (deferred checks)
                raise MigrationFailed(ran[-1].revision, ran[-1].is_upgrade, err, at_commit=True) from err
            raise ProjectError(
                f"{relative(self.env_py, self.root)} raised {type(err).__name__}: {one_line(str(err))}",
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
            return [_Guarded(step, ran) for step in fn(rev, ctx)]

        session = self._session
        if session is not None and session.connection is connection:
            self._run_again(session, wrapped, ran)
        else:
            self._session = None
            self._run_env(connection, wrapped, remember=True, ran=ran)


@dataclass(frozen=True)
class _EnvSession:
    """env.py's configured MigrationContext on one connection, driven again for later steps."""

    env: Any  # the EnvironmentContext (entered again so migrations see alembic.context)
    context: Any  # the MigrationContext env.py configured
    connection: Any
    forget_heads: Callable[[], None]  # a step failed or was rolled back: read the version table again

    @classmethod
    def capture(
        cls, env: Any, context: Any, connection: Any, fn: Callable[..., Any], calls: dict[str, list[Any]]
    ) -> _EnvSession | None:
        """A session only for the plain env.py: one configure() on the injected connection, one
        run_migrations() without arguments, online, with the guard's step function."""
        if context is None or len(calls["configure"]) != 1 or calls["run_migrations"] != [{}]:
            return None
        if context.as_sql or context.connection is not connection or context._migrations_fn is not fn:
            return None
        _remember_version_table(context)
        return cls(env, context, connection, _follow_heads(context, connection))


def _follow_heads(context: Any, connection: Any) -> Callable[[], None]:
    """The version table's rows read once, then followed from step to step (Alembic's
    on_version_apply callback), as Alembic itself does within one ``upgrade``: one query less
    per step (0.3 ms). A rollback of a transaction in which steps ran reads the table again,
    and so does a call of the returned ``forget`` (a step failed: its commit may have too)."""
    from sqlalchemy import event

    ask = context.get_current_heads
    known: list[tuple[str, ...]] = []
    uncommitted = [False]  # steps changed the version table since the last commit

    def get_current_heads() -> tuple[str, ...]:
        if not known:
            known.append(tuple(ask()))
        return known[0]

    def applied(*, heads: Any, **_kw: Any) -> None:
        known[:] = [tuple(sorted(heads))]
        uncommitted[0] = True

    def committed(_connection: Any) -> None:
        uncommitted[0] = False

    def rolled_back(_connection: Any) -> None:
        if uncommitted[0]:
            forget()

    def forget() -> None:
        known.clear()
        uncommitted[0] = False

    context.get_current_heads = get_current_heads
    context.on_version_apply_callbacks = (*context.on_version_apply_callbacks, applied)
    event.listen(connection, "commit", committed)
    event.listen(connection, "rollback", rolled_back)
    return forget


def _remember_version_table(context: Any) -> None:
    """Once the version table exists it stays (online, Alembic never drops it): ask only until then."""
    ask = context._has_version_table
    known: list[bool] = []

    def has_version_table() -> bool:
        if not known and ask():
            known.append(True)
        return bool(known)

    context._has_version_table = has_version_table


def _in_anyio_worker(run: Callable[[], None]) -> None:
    """``run()`` in a worker thread of an AnyIO event loop; its exception is raised here."""
    try:
        import anyio
        import anyio.to_thread
    except ImportError:
        raise ProjectError(
            "env.py calls anyio.from_thread but AnyIO is not installed where the guard runs: "
            "add anyio to the guard's environment (pre-commit: additional_dependencies)"
        ) from None

    async def main() -> None:
        await anyio.to_thread.run_sync(run)

    anyio.run(main)


def _create_version_schema(env: Any, connection: Any) -> None:
    """``version_table_schema`` in env.py: Alembic creates the version table there but not the
    schema; a database made for the project would have it, so the throwaway one gets it too."""
    configure = env.configure

    def configured(*args: Any, **kw: Any) -> Any:
        schema = kw.get("version_table_schema")
        target = kw.get("connection") or connection
        if schema and not kw.get("url") and hasattr(target, "exec_driver_sql"):
            quoted = '"' + str(schema).replace('"', '""') + '"'
            target.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        return configure(*args, **kw)

    env.configure = configured


def _watch_env(env: Any) -> dict[str, list[Any]]:
    """Record env.py's calls of configure() and run_migrations() (with their keywords)."""
    calls: dict[str, list[Any]] = {"configure": [], "run_migrations": []}
    for name in calls:
        method = getattr(env, name)

        def watched(*args: Any, _method: Any = method, _seen: list[Any] = calls[name], **kw: Any) -> Any:
            _seen.append(kw)
            return _method(*args, **kw)

        setattr(env, name, watched)  # alembic.context proxies to the instance's attribute
    return calls


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


class _Guarded:
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
            except (Exception, SystemExit) as err:
                raise MigrationFailed(step.revision, step.is_upgrade, err) from err
            self._ran.append(step)
            return result

        return run


def _is_database_error(err: BaseException) -> bool:
    from sqlalchemy import exc

    return isinstance(err, exc.DBAPIError)


def _raised_in_migration(err: BaseException, project: Project) -> bool:
    paths = {str(Path(r.path).resolve()) for r in project.revisions()}
    return any(str(Path(f).resolve()) in paths for f in user_frame_files(err))


@contextlib.contextmanager
def quiet_logging() -> Iterator[None]:
    """While env.py runs: its ``fileConfig(alembic.ini)`` does nothing and INFO lines are dropped.

    Alembic's template env.py configures logging from alembic.ini on every run, which would
    print "Running upgrade ..." for every step of the stairway around the guard's report.
    Warnings still show.
    """
    import logging
    import logging.config

    saved = logging.config.fileConfig
    disabled = logging.root.manager.disable
    logging.config.fileConfig = lambda *args, **kwargs: None  # type: ignore[assignment]
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.config.fileConfig = saved
        logging.disable(disabled)


def _who(config: Any) -> str:
    """How messages name the code being fenced in: the env.py that Alembic runs."""
    location = config.get_main_option("script_location") or "."
    if ":" in location and not Path(location).exists():
        return f"env.py of {location}"  # package-resource form
    root = Path(config.config_file_name or ".").resolve().parent
    return relative(root / location / "env.py", root)


@contextlib.contextmanager
def throwaway_environment(connection: Any, config: Any) -> Iterator[None]:
    """DATABASE_URL, sqlalchemy.url and PG* point at the connection's database while env.py runs."""
    url = connection.engine.url
    sa_url = url.render_as_string(hide_password=False)
    libpq = sa_url.replace(f"{url.drivername}://", "postgresql://", 1)
    query = dict(url.query)
    pg_env = {
        "PGHOST": str(query.get("host", url.host or "")),
        "PGPORT": str(query.get("port", url.port or "")),
        "PGDATABASE": str(url.database or ""),
        "PGUSER": str(url.username or ""),
    }
    saved = {k: os.environ.get(k) for k in ("DATABASE_URL", *pg_env, "PGPASSWORD", "PGSERVICE")}
    saved_url = config.get_main_option("sqlalchemy.url")
    os.environ["DATABASE_URL"] = libpq
    os.environ.update({k: v for k, v in pg_env.items() if v})
    for k in ("PGPASSWORD", "PGSERVICE"):
        os.environ.pop(k, None)
    config.set_main_option("sqlalchemy.url", sa_url.replace("%", "%%"))
    try:
        with routing.routed(connection, _who(config)):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if saved_url is None:
            config.remove_main_option("sqlalchemy.url")
        else:
            config.set_main_option("sqlalchemy.url", saved_url.replace("%", "%%"))


# env.py files that read DATABASE_URL or sqlalchemy.url even in --sql mode get this harmless
# value while offline SQL is rendered: offline mode never connects, and the user's URL is
# never read.
OFFLINE_URL = "postgresql+psycopg2://schema-warden-offline.invalid/render"


@contextlib.contextmanager
def offline_environment(config: Any) -> Iterator[None]:
    """DATABASE_URL and sqlalchemy.url name no real server while env.py renders ``--sql``."""
    saved_env = os.environ.get("DATABASE_URL")
    saved_url = config.get_main_option("sqlalchemy.url")
    os.environ["DATABASE_URL"] = OFFLINE_URL
    config.set_main_option("sqlalchemy.url", OFFLINE_URL)
    try:
        with routing.refused(_who(config)):
            yield
    finally:
        if saved_env is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved_env
        if saved_url is None:
            config.remove_main_option("sqlalchemy.url")
        else:
            config.set_main_option("sqlalchemy.url", saved_url.replace("%", "%%"))


def find_config(config: str | os.PathLike[str] | None = None, *, cwd: Path | None = None) -> Settings:
    """Settings whose alembic.ini exists, or ProjectError naming where it looked and the fix."""
    settings = load_settings(config, cwd=cwd)
    if not settings.alembic_config.is_file():
        raise ProjectError(
            f"no alembic.ini at {settings.alembic_config}: run from the project root, pass "
            "--config PATH, or set alembic-config in [tool.schema-warden] of pyproject.toml"
        )
    return settings


def _script_location(ini: Path) -> str:
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        data = ini.read_bytes()
        parser.read_string(data.decode("utf-8"), source=str(ini))
    except OSError as err:
        raise ProjectError(f"{ini}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ProjectError(
            f"{ini}: not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}): save the file as UTF-8"
        ) from None
    except configparser.Error as err:
        raise ProjectError(f"{ini}: not a valid ini file: {one_line(str(err))}") from None
    if not parser.has_section("alembic"):
        raise ProjectError(
            f"{ini}: no [alembic] section: pass the project's alembic.ini (`alembic init` writes one)"
        )
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
        raise _import_failure(err, project.root) from None


def _import_failure(err: Exception, root: Path) -> ProjectError:
    """The ProjectError for a revision file that does not import (the file named first)."""
    if isinstance(err, SyntaxError):
        return _syntax_error(err, root, "migration")
    frames = [f for f in user_frame_files(err) if _is_user_frame(f, root)]
    where = relative(frames[0], root) if frames else "a migration file"
    return ProjectError(
        f"{where} failed to import: {type(err).__name__}: {one_line(str(err))}",
        detail=user_traceback(err, root),
    )


# --- revision files read statically, modules imported on first use ------------------------

_ID_NAMES = ("revision", "down_revision", "branch_labels", "depends_on")
# anything that could set a module attribute other than by a plain top-level assignment
# (or answer getattr for a missing one): such a file is loaded eagerly, as Alembic does.
# The words are looked for as substrings first (fast), then as whole words.
_DYNAMIC_HINTS = (
    "global",  # also globals
    "nonlocal",
    "locals",
    "vars",
    "setattr",
    "exec",
    "eval",
    "__import__",
    "__getattr__",
    "__dict__",
    "modules",  # sys.modules
    "import_module",
    "__builtins__",
)
_DYNAMIC = re.compile(r"\b(?:" + "|".join(_DYNAMIC_HINTS) + r"|globals)\b")
_parsed: dict[str, ast.Module] = {}
_PARSED_MAX = 4096


def parse_source(source: str, filename: str) -> ast.Module:
    """``ast.parse`` of a file's text, remembered by the text (parsed once per run).

    The trees are shared: read them, never change them. SyntaxError as ``ast.parse``.
    """
    tree = _parsed.get(source)
    if tree is None:
        tree = ast.parse(source, filename=filename)
        if len(_parsed) >= _PARSED_MAX:
            _parsed.clear()
        _parsed[source] = tree
    return tree


@dataclass(frozen=True)
class StaticRevision:
    """A revision file's ids and docstring, read without importing it."""

    path: str
    revision: str
    down_revision: Any  # None, a str, or a tuple / list of them, as written
    branch_labels: Any
    depends_on: Any
    docstring: str | None  # the first statement's string, as written


def _ids_value(node: ast.expr) -> tuple[bool, Any]:
    """(ok, value) of a literal that Alembic reads as revision ids: None, str, tuple/list of str."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None
    if value is None or isinstance(value, str):
        return True, value
    if isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value):
        return True, value
    return False, None


def _bound_names(node: ast.AST) -> Iterator[str]:
    """Names a statement could bind or delete in the module's namespace (over-approximated)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and not isinstance(sub.ctx, ast.Load):
            yield sub.id
        elif isinstance(sub, ast.alias):  # "*" for a star import: anything
            yield sub.asname or sub.name.split(".")[0]
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.ExceptHandler)):
            yield sub.name or ""
        elif isinstance(sub, (ast.MatchAs, ast.MatchStar)) and sub.name:
            yield sub.name
        elif isinstance(sub, ast.MatchMapping) and sub.rest:
            yield sub.rest


def _plain_assignment(stmt: ast.stmt) -> tuple[str | None, ast.expr | None]:
    """(name, value) of ``name = value`` / ``name: T = value``; (None, None) for other statements."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id, stmt.value
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
        return stmt.target.id, stmt.value
    return None, None


def static_revision(path: str | os.PathLike[str]) -> StaticRevision | None:
    """The ids a revision file assigns, when provably what importing it would give; else None.

    Provable: the file parses, each of revision / down_revision / branch_labels /
    depends_on bound at most once and only by a plain top-level assignment of a literal
    (revision a str, the others None, a str or a tuple / list of str; revision and
    down_revision present), and nothing that sets module attributes another way. What a file
    gives is remembered by its content while a :mod:`schema_warden.cache.static` is active.
    """
    from schema_warden.cache import static as static_cache

    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    known = static_cache.lookup("lazy", raw)  # read before, in an earlier run
    if known is not None:
        if not known:  # not provably static
            return None
        ids = [static_cache.decode_ids(v) for v in known[1:4]]
        return StaticRevision(os.fspath(path), known[0], ids[0], ids[1], ids[2], known[4])
    found = _read_static(path, raw)
    if found is None:
        static_cache.remember("lazy", raw, [])
    else:
        written = (found.down_revision, found.branch_labels, found.depends_on)
        ids = [static_cache.encode_ids(v) for v in written]
        static_cache.remember("lazy", raw, [found.revision, *ids, found.docstring])
    return found


def _read_static(path: str | os.PathLike[str], raw: bytes) -> StaticRevision | None:
    import importlib.util

    try:
        source = importlib.util.decode_source(raw)  # the text Python's import compiles
    except (SyntaxError, UnicodeDecodeError, LookupError):
        return None
    if ":=" in source or (any(hint in source for hint in _DYNAMIC_HINTS) and _DYNAMIC.search(source)):
        return None
    try:
        tree = parse_source(source, os.fspath(path))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    values: dict[str, Any] = {}
    for stmt in tree.body:
        name, value = _plain_assignment(stmt)
        if name == "__doc__":
            return None
        if name in _ID_NAMES and value is not None:
            ok, literal = _ids_value(value)
            if not ok or name in values:
                return None
            values[name] = literal
            continue
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [stmt.name]  # the body is its own scope
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names = [alias.asname or alias.name.split(".")[0] for alias in stmt.names]
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # the docstring
        else:
            names = list(_bound_names(stmt if value is None else value))
        if any(bound in _ID_NAMES or bound in ("__doc__", "*") for bound in names):
            return None
    revision = values.get("revision")
    if not isinstance(revision, str) or "down_revision" not in values:
        return None
    doc = None
    first = tree.body[0].value if tree.body and isinstance(tree.body[0], ast.Expr) else None
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        doc = first.value
    return StaticRevision(
        os.fspath(path),
        revision,
        values["down_revision"],
        values.get("branch_labels"),
        values.get("depends_on"),
        doc,
    )


def _compiled_docstring(doc: str | None, path: str) -> str | None:
    """``module.__doc__`` for a file whose first statement is ``doc``, as Python compiles it."""
    if doc is None or sys.flags.optimize >= 2:
        return None
    if sys.version_info < (3, 13):
        return doc
    # Python 3.13+ removes the docstring's common indentation at compile time
    module = ast.Module(body=[ast.Expr(value=ast.Constant(value=doc))], type_ignores=[])
    namespace: dict[str, Any] = {}
    exec(compile(ast.fix_missing_locations(module), path, "exec"), namespace)
    return namespace.get("__doc__")


def lazy_revision_map(script: Any, root: Path, prepend_sys_path: Iterable[str] = ()) -> bool:
    """Give ``script`` (a ScriptDirectory) a revision map of lazily imported revisions.

    True when done; False (the map untouched: Alembic imports every file) when a file is not
    statically readable, for ``sourceless`` projects, or when Alembic's file rules changed.
    """
    try:
        from alembic.script import Script
        from alembic.script import base as script_base
        from alembic.script.revision import RevisionMap

        source_rule = script_base._only_source_rev_file
        list_dir = Script._list_py_dir
        locations = script._version_locations
    except (ImportError, AttributeError):
        return False
    if script.sourceless:
        return False
    found: list[StaticRevision | Path] = []  # a revision, or a file listed twice (warned about)
    seen: set[Path] = set()
    for location in (loc for loc in locations if loc.exists()):
        for file_path in list_dir(script, location):
            real = file_path.resolve()
            if real in seen:
                found.append(real)
                continue
            seen.add(real)
            if not source_rule.match(real.name):
                continue
            static = static_revision(real)
            if static is None:
                return False
            found.append(static)
    prepend = list(prepend_sys_path)

    def load() -> Iterator[Any]:
        from alembic import util

        for item in found:  # in Alembic's order, its warnings in between
            if isinstance(item, StaticRevision):
                yield _lazy_script_class()(item, root, prepend)
            else:
                util.warn(f"File {item} loaded twice! ignoring. Please ensure version_locations is unique.")

    script.revision_map = RevisionMap(load)
    return True


@functools.cache
def _lazy_script_class() -> type:
    """alembic's Script with the module imported on first use (alembic imported only when needed)."""
    from alembic import util
    from alembic.script import Script
    from alembic.script.revision import Revision

    class LazyScript(Script):
        def __init__(self, static: StaticRevision, root: Path, prepend: list[str]) -> None:
            self._static = static
            self._root = root
            self._prepend = prepend
            self._module: Any = None
            self.path = static.path
            Revision.__init__(
                self,
                static.revision,
                static.down_revision,
                branch_labels=util.to_tuple(static.branch_labels, default=()),
                dependencies=util.to_tuple(static.depends_on, default=()),
            )

        @property  # type: ignore[override]
        def module(self) -> Any:
            if self._module is None:
                self._module = _import_revision(self._static, self._root, self._prepend)
            return self._module

        @module.setter
        def module(self, value: Any) -> None:
            self._module = value

        @property
        def module_loaded(self) -> bool:
            return self._module is not None

        @property
        def longdoc(self) -> str:
            if self._module is not None:
                return str(super().longdoc)
            doc = _compiled_docstring(self._static.docstring, self.path)
            return doc.strip() if doc else ""

    return LazyScript


def _import_revision(static: StaticRevision, root: Path, prepend: list[str]) -> Any:
    """Import a revision file as Alembic does (its module naming, prepend_sys_path), no bytecode."""
    from alembic.util import load_python_file

    path = Path(static.path)
    missing = [entry for entry in prepend if entry not in sys.path]
    sys.path[:0] = missing
    saved_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        module = load_python_file(path.parent, path.name)
    except Exception as err:
        raise _import_failure(err, root) from None
    finally:
        sys.dont_write_bytecode = saved_bytecode
        for entry in missing:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)
    imported = (
        getattr(module, "revision", None),
        getattr(module, "down_revision", None),
        getattr(module, "branch_labels", None),
        getattr(module, "depends_on", None),
    )
    if imported != (static.revision, static.down_revision, static.branch_labels, static.depends_on):
        raise ProjectError(
            f"{relative(path, root)}: its revision ids changed when it was imported: assign revision, "
            "down_revision, branch_labels and depends_on once, as plain literals"
        )
    return module


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


def downgrade_is_empty(path: str | os.PathLike[str]) -> bool | None:
    """True when ``downgrade()`` does nothing (only ``pass``, ``...`` and docstrings); None if absent."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "downgrade":
            return all(
                isinstance(stmt, ast.Pass)
                or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
                for stmt in node.body
            )
    return None
