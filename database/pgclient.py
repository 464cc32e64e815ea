"""The edge to libpq: find pg_dump/pg_restore/psql, connect without the password in argv,
run them with a progress line, and read what a backup has to match (tables, row counts,
Alembic revision).

The password never reaches a child's argv: children get the URL without it plus
``PGPASSWORD`` in their environment. Everything shown to a person uses the masked URL.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from schema_warden.api import Binaries, EnvironmentProblem, ProjectError

from database.config import Settings, mask_url
from database.errors import mask_secrets

CLIENT_PROGRAMS = ("pg_dump", "pg_restore", "psql")
CONNECT_TIMEOUT_S = 30
PROGRESS_AFTER_S = 1.0
PROGRESS_EVERY_S = 1.0
PROGRESS_EVERY_LOG_S = 10.0  # not a terminal (CI logs): fewer lines

CLIENT_HINT = (
    "install the PostgreSQL client of the server's major (Debian/Ubuntu: apt-get install "
    "postgresql-client-{major} from apt.postgresql.org) or point --pg-bin / SCHEMA_WARDEN_PG_BIN "
    "at its bin directory"
)


# ---------------------------------------------------------------- connection targets


def split_password(url: str) -> tuple[str, str | None]:
    """``postgresql://u:p@h/db?sslmode=require`` -> (``postgresql://u@h/db?sslmode=require``, ``p``).

    Handles a password in the user info (percent-encoded) and a ``password=`` query parameter.
    """
    scheme, sep, _rest = url.partition("://")
    if not sep:
        return url, None
    parts = urlsplit(url)
    password: str | None = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user, colon, raw_password = userinfo.partition(":")
        if colon:
            password = unquote(raw_password)
        netloc = f"{user}@{hostinfo}" if user else hostinfo
    kept = []
    for item in parts.query.split("&") if parts.query else []:
        key, _, value = item.partition("=")
        if unquote(key).lower() == "password":
            password = unquote(value.replace("+", " "))
        else:
            kept.append(item)
    stripped = f"{scheme}://{netloc}{parts.path}"
    if kept:
        stripped += "?" + "&".join(kept)
    return stripped, password


@dataclass(frozen=True)
class Target:
    """A database to read from or restore into. ``url`` holds the password: in-process only."""

    url: str  # libpq URL (postgresql://...), with the password
    masked: str
    source: str  # where the URL came from, for messages: "DATABASE_URL", "--target-url"

    @classmethod
    def from_settings(cls, settings: Settings, source: str = "DATABASE_URL") -> Target:
        return cls(url=settings.libpq_url, masked=settings.masked, source=source)

    @property
    def password(self) -> str | None:
        return split_password(self.url)[1]

    @property
    def dsn(self) -> str:
        """The URL for a child's argv: no password in it."""
        return split_password(self.url)[0]

    def child_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        # a PGPASSWORD of the user's shell is for another server: it would beat the passfile
        # the throwaway server's URL names
        env.pop("PGPASSWORD", None)
        password = self.password
        if password is not None:
            env["PGPASSWORD"] = password
        env.setdefault("PGCONNECT_TIMEOUT", str(CONNECT_TIMEOUT_S))
        return env

    def scrub(self, text: str) -> str:
        """Remove the password from any text a driver or a child wrote (decoded and as written)."""
        password = self.password
        if not password:
            return text
        forms = {password}
        userinfo, at, _host = urlsplit(self.url).netloc.rpartition("@")
        if at and ":" in userinfo:
            forms.add(userinfo.partition(":")[2])
        for item in urlsplit(self.url).query.split("&"):
            key, _, value = item.partition("=")
            if unquote(key).lower() == "password":
                forms.add(value)
        return mask_secrets(text, forms)


def single_line(text: str) -> str:
    """Every line of a driver's message joined into one (its DETAIL and HINT kept)."""
    return re.sub(r"\s+", " ", text).strip()


@contextlib.contextmanager
def connect(target: Target) -> Iterator[Any]:
    """A psycopg2 connection; cannot connect -> EnvironmentProblem (exit 3), masked URL."""
    import psycopg2

    kwargs: dict[str, Any] = {}
    if "connect_timeout" not in target.url:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
    try:
        conn = psycopg2.connect(target.url, **kwargs)
    except psycopg2.Error as err:
        reason = target.scrub(single_line(str(err))) or type(err).__name__
        raise EnvironmentProblem(
            f"cannot connect to {target.masked}: {reason} "
            f"(check host, password and sslmode in {target.source})"
        ) from None
    try:
        yield conn
    finally:
        conn.close()


# ---------------------------------------------------------------- client programs


# pg_dump, pg_restore and psql from one bin directory, and their version: the same record
# the throwaway server keeps of its binaries.
ClientTools = Binaries


def parse_version(text: str) -> tuple[str, int]:
    """``pg_dump (PostgreSQL) 17.2 (Ubuntu 17.2-1)`` -> ("17.2", 17)."""
    match = re.search(r"\)\s*((\d+)(?:\.\d+)*)", text) or re.search(r"((\d+)(?:\.\d+)+)", text)
    if not match:
        raise EnvironmentProblem(f"cannot tell the PostgreSQL version from {text.strip()!r}")
    return match.group(1), int(match.group(2))


def _missing(bindir: Path) -> list[str]:
    return [p for p in CLIENT_PROGRAMS if not os.access(bindir / p, os.X_OK)]


def _version_of_client(bindir: Path) -> tuple[str, int]:
    try:
        result = subprocess.run(
            [str(bindir / "pg_dump"), "--version"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise EnvironmentProblem(f"cannot run {bindir / 'pg_dump'}: {err}") from None
    return parse_version(result.stdout or result.stderr)


def _major_of_dir(path: str) -> float:
    try:
        return float(Path(path).parent.name)
    except ValueError:
        return -1.0


def find_client_tools(
    pg_bin: str | os.PathLike[str] | None = None, *, server_major: int | None = None
) -> ClientTools:
    """--pg-bin > SCHEMA_WARDEN_PG_BIN > /usr/lib/postgresql/*/bin > PATH.

    Given the server's major, the installed client closest to it from above wins: pg_dump
    17+ writes ``SET transaction_timeout`` into every dump, which servers before 17 reject,
    so a matching client keeps a 16 database's dumps restorable into 16.
    """
    explicit = pg_bin or os.environ.get("SCHEMA_WARDEN_PG_BIN")
    if explicit:
        bindir = Path(explicit).expanduser()
        missing = _missing(bindir)
        if missing:
            raise EnvironmentProblem(
                f"no {', '.join(missing)} in {bindir} (from --pg-bin or SCHEMA_WARDEN_PG_BIN): "
                + CLIENT_HINT.format(major=server_major or "NN")
            )
        return ClientTools(bindir, *_version_of_client(bindir))
    candidates = [
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major_of_dir, reverse=True)
    ]
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append(Path(on_path).parent)
    usable = [bindir for bindir in candidates if not _missing(bindir)]
    if not usable:
        raise EnvironmentProblem(
            "pg_dump, pg_restore and psql not found: " + CLIENT_HINT.format(major=server_major or "NN")
        )
    if server_major is None:
        return ClientTools(usable[0], *_version_of_client(usable[0]))
    found = [ClientTools(bindir, *_version_of_client(bindir)) for bindir in usable]
    new_enough = [t for t in found if t.major >= server_major]
    if new_enough:
        return min(new_enough, key=lambda t: t.major)
    return max(found, key=lambda t: t.major)


def require_client_for(tools: ClientTools, server_major: int, server_version: str, masked: str) -> None:
    """pg_dump refuses servers newer than itself: say which client to install."""
    if tools.major < server_major:
        raise EnvironmentProblem(
            f"pg_dump {tools.version} ({tools.bindir}) is older than the server {masked} "
            f"(PostgreSQL {server_version}): pg_dump {server_major} or newer is needed; "
            + CLIENT_HINT.format(major=server_major)
        )


# ---------------------------------------------------------------- what a backup must match


@dataclass(frozen=True)
class Inventory:
    """What a database holds, as far as a backup is concerned."""

    server_version: str
    server_major: int
    alembic_revisions: tuple[str, ...]
    tables: Mapping[str, int] = field(default_factory=dict)  # "schema.table" -> exact row count

    @property
    def total_rows(self) -> int:
        return sum(self.tables.values())


_USER_SCHEMA = """
    n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
"""

_TABLES_SQL = f"""
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't' AND {_USER_SCHEMA}
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype = 'e')
ORDER BY 1, 2
"""


def read_inventory(cur: Any) -> Inventory:
    """Server version, Alembic revision(s) and exact row counts of every table a dump holds."""
    from psycopg2 import sql

    from database.pooler import SET_SEARCH_PATH

    # for this transaction only: the server connection's own search_path may be anything
    # (a pooler's connection keeps what its last client set: '' after a restore by psql)
    cur.execute(SET_SEARCH_PATH)
    cur.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int")
    version, num = cur.fetchone()
    cur.execute(_TABLES_SQL)
    names = cur.fetchall()
    tables: dict[str, int] = {}
    for schema, table in names:
        cur.execute(
            sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        )
        tables[f"{schema}.{table}"] = int(cur.fetchone()[0])
    revisions: tuple[str, ...] = ()
    cur.execute("SELECT pg_catalog.to_regclass('alembic_version')::text")
    regclass = cur.fetchone()[0]
    if regclass:
        cur.execute(f"SELECT version_num FROM {regclass} ORDER BY 1")  # regclass text is quoted
        revisions = tuple(str(r[0]) for r in cur.fetchall())
    return Inventory(
        server_version=str(version).split()[0],
        server_major=num // 10000,
        alembic_revisions=revisions,
        tables=tables,
    )


def compare_inventory(
    expected_tables: Mapping[str, int], expected_revisions: Sequence[str], actual: Inventory
) -> list[str]:
    """Differences between a manifest and a restored database, one line each (empty: equal)."""
    problems = []
    for table, rows in expected_tables.items():
        if table not in actual.tables:
            problems.append(f"table {table}: {rows} rows in the backup's manifest, missing after restore")
        elif actual.tables[table] != rows:
            problems.append(
                f"table {table}: {rows} rows in the manifest, {actual.tables[table]} after restore"
            )
    for table in sorted(set(actual.tables) - set(expected_tables)):
        problems.append(f"table {table}: present after restore but not in the backup's manifest")
    if tuple(sorted(expected_revisions)) != tuple(sorted(actual.alembic_revisions)):
        problems.append(
            f"alembic revision: {', '.join(expected_revisions) or 'none'} in the manifest, "
            f"{', '.join(actual.alembic_revisions) or 'none'} after restore"
        )
    return problems


def user_relations(cur: Any) -> list[str]:
    """Tables, views, sequences and schemas a restore would collide with (extensions' excluded)."""
    cur.execute(
        f"""
        SELECT format('%s.%s', n.nspname, c.relname)
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {_USER_SCHEMA}
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                          WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                            AND d.deptype = 'e')
        UNION ALL
        SELECT format('schema %s', n.nspname) FROM pg_catalog.pg_namespace n
        WHERE n.nspname <> 'public' AND {_USER_SCHEMA}
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                          WHERE d.classid = 'pg_catalog.pg_namespace'::regclass AND d.objid = n.oid
                            AND d.deptype = 'e')
        ORDER BY 1
        """
    )
    return [r[0] for r in cur.fetchall()]


def clean_statements(cur: Any) -> list[str]:
    """SQL that empties a database for --clean: every user schema dropped, ``public`` re-created
    with its owner and grants. Runs in the restore's transaction, so a failed restore undoes it."""
    cur.execute(
        f"""
        SELECT n.nspname, pg_catalog.pg_get_userbyid(n.nspowner),
               ARRAY(SELECT format('GRANT %s ON SCHEMA %I TO %s', a.privilege_type, n.nspname,
                                   CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                        ELSE quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END)
                     FROM aclexplode(n.nspacl) a WHERE a.grantee <> n.nspowner ORDER BY 1)
        FROM pg_catalog.pg_namespace n
        WHERE {_USER_SCHEMA}
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                          WHERE d.classid = 'pg_catalog.pg_namespace'::regclass AND d.objid = n.oid
                            AND d.deptype = 'e')
        ORDER BY 1
        """
    )
    statements = []
    has_public = False
    for schema, owner, grants in cur.fetchall():
        statements.append(f"DROP SCHEMA {_ident(schema)} CASCADE;")
        if schema == "public":
            has_public = True
            statements.append("CREATE SCHEMA public;")
            statements.append(f"ALTER SCHEMA public OWNER TO {_ident(owner)};")
            statements.extend(f"{g};" for g in grants)
    if not has_public:
        statements.append("CREATE SCHEMA IF NOT EXISTS public;")
    return statements


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------- running children


class ProgressMeter:
    """Decides when to print a progress line: only after ``after`` seconds, then every ``every``."""

    def __init__(
        self, label: str, start: float, *, after: float = PROGRESS_AFTER_S, every: float = PROGRESS_EVERY_S
    ):
        self.label = label
        self.start = start
        self.after = after
        self.every = every
        self.last: float | None = None

    def line(self, now: float, written: int | None) -> str | None:
        elapsed = now - self.start
        if elapsed < self.after or (self.last is not None and now - self.last < self.every):
            return None
        self.last = now
        text = f"{self.label}: {elapsed:.0f} s"
        if written is not None:
            text += f", {human_size(written)} written"
        return text


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover


class _ProgressPrinter:
    def __init__(self, label: str, stream: IO[str] | None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.meter = ProgressMeter(
            label, time.monotonic(), every=PROGRESS_EVERY_S if self.tty else PROGRESS_EVERY_LOG_S
        )
        self.shown = False

    def tick(self, written: int | None) -> None:
        text = self.meter.line(time.monotonic(), written)
        if text is None:
            return
        if self.tty:
            self.stream.write(f"\r{text}   ")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()


@dataclass(frozen=True)
class ChildResult:
    returncode: int
    stderr: str
    seconds: float

    @property
    def signal_name(self) -> str | None:
        if self.returncode < 0:
            with contextlib.suppress(ValueError):
                return signal.Signals(-self.returncode).name
            return f"signal {-self.returncode}"
        return None


def _stop_child(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def run_with_progress(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    label: str,
    watch: Path | None = None,
    stream: IO[str] | None = None,
) -> ChildResult:
    """Run one program; on Ctrl-C/SIGTERM (KeyboardInterrupt) stop it before re-raising."""
    start = time.monotonic()
    printer = _ProgressPrinter(label, stream)

    def size() -> int | None:
        if watch is None:
            return None
        try:
            return watch.stat().st_size
        except OSError:
            return 0

    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=dict(env)
        )
        try:
            while True:
                try:
                    proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    printer.tick(size())
        finally:
            _stop_child(proc)
            printer.done()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return ChildResult(proc.returncode, stderr, time.monotonic() - start)


def feed_psql(
    psql_argv: Sequence[str],
    chunks: Iterator[bytes],
    *,
    env: Mapping[str, str],
    label: str,
    stream: IO[str] | None = None,
) -> ChildResult:
    """Pipe SQL into psql ourselves, so that psql sees end-of-input only when the whole script
    arrived: if the producer fails or we are interrupted, psql is killed first and its
    single transaction never commits."""
    start = time.monotonic()
    printer = _ProgressPrinter(label, stream)
    sent = 0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            list(psql_argv), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, env=dict(env)
        )
        assert proc.stdin is not None
        complete = False
        try:
            try:
                for chunk in chunks:
                    proc.stdin.write(chunk)
                    sent += len(chunk)
                    printer.tick(sent)
                complete = True
            except BrokenPipeError:
                complete = True  # psql stopped reading: it failed; its stderr says why
            if complete:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
                while True:
                    try:
                        proc.wait(timeout=0.2)
                        break
                    except subprocess.TimeoutExpired:
                        printer.tick(sent)
        finally:
            if not complete:
                # SIGKILL, not SIGTERM: psql must not get the chance to finish reading and COMMIT
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
            with contextlib.suppress(BrokenPipeError, OSError):
                proc.stdin.close()
            _stop_child(proc)
            printer.done()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return ChildResult(proc.returncode, stderr, time.monotonic() - start)


def first_error(stderr: str) -> str:
    """The line of a child's stderr worth showing: the first error, else the last line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in lines:
        if re.search(r"\b(ERROR|FATAL|PANIC|error|fatal)\b:?", line):
            return single_line(line)
    return single_line(lines[-1]) if lines else "no error message"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (CI cancelling a job) unwinds like Ctrl-C, so temp files are removed."""

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_url(url: str, source: str) -> Target:
    """A URL given on the command line (--target-url) -> Target; malformed -> exit 2."""
    from database.config import ConfigError, normalize_url

    try:
        normalized = normalize_url(url)
    except ConfigError as err:
        raise ProjectError(str(err).replace("DATABASE_URL", source)) from None
    settings = Settings(url=normalized, masked=mask_url(url), pooled=False)
    return Target.from_settings(settings, source=source)
