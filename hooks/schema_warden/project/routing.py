"""Every database connection the project's code opens goes to the throwaway server, or nowhere.

An env.py may ignore the connection the guard hands it and build an engine of its own from
``POSTGRES_SERVER``/``POSTGRES_USER``/..., a settings object, or a hard-coded URL. While
the project's code runs inside :func:`routed`:

- ``Engine.connect()`` / ``Engine.begin()`` of any engine but the guard's own hand out the
  guard's connection (its ``close`` does nothing meanwhile), so migrations run in the
  guard's transaction whichever engine env.py built, sync or async (``AsyncEngine`` goes
  through ``Engine.connect`` of its sync engine);
- a new DBAPI connection that any SQLAlchemy engine opens (SQLAlchemy's ``do_connect``
  event, on every dialect) is rewritten to the guard's database: host, port, database and
  user replaced, password, service, TLS and DSN dropped (psycopg2, psycopg 3, asyncpg,
  pg8000); another driver or dialect is refused;
- a driver connection opened outside SQLAlchemy (``psycopg2.connect``, ``psycopg.connect``,
  ``asyncpg.connect``, ``pg8000.connect``) that does not name the throwaway server's socket
  is refused before it reaches the network.

Inside :func:`refused` (offline SQL rendering, imports) every connection that is not the
throwaway server's is refused. Refusals raise :class:`RefusedConnection`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from schema_warden.errors import ProjectError

# driver connect arguments that choose where and as whom to connect; all dropped
_WHERE = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "database",
        "user",
        "password",
        "passfile",
        "service",
        "servicefile",
        "dsn",
        "conninfo",
        "unix_sock",
        "ssl",
        "ssl_context",
        "direct_tls",
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslcrl",
        "sslpassword",
        "channel_binding",
        "gssencmode",
        "target_session_attrs",
        "load_balance_hosts",
        "krbsrvname",
        "requiressl",
        "require_auth",
    }
)
_LIBPQ_DRIVERS = frozenset({"psycopg2", "psycopg2cffi", "psycopg", "psycopg_async"})
_DRIVER_MODULES = ("psycopg2", "psycopg", "asyncpg", "pg8000")


class RefusedConnection(ProjectError):
    """The project's code tried to reach a database that is not the guard's throwaway server."""


@dataclass(frozen=True)
class Target:
    """Where routed connections go: the throwaway server's socket, port, database, user."""

    socket_dir: str
    port: int
    database: str
    user: str

    @classmethod
    def of(cls, connection: Any) -> Target:
        url = connection.engine.url
        host = str(url.query.get("host") or url.host or "")
        port = int(url.query.get("port") or url.port or 5432)
        return cls(host, port, str(url.database or "postgres"), str(url.username or "postgres"))

    def owns(self, host: Any, port: Any = None) -> bool:
        """True for a host (a socket directory, or a list of them) of this server."""
        if not host:
            return False
        hosts = [str(h) for h in host] if isinstance(host, (list, tuple)) else str(host).split(",")
        same_port = port in (None, "", self.port, str(self.port)) or (
            isinstance(port, (list, tuple)) and all(str(p) == str(self.port) for p in port)
        )
        return same_port and all(os.path.realpath(h) == os.path.realpath(self.socket_dir) for h in hosts)


@dataclass
class _State:
    """What is active in this process: the route (or None: refuse) and the server's socket."""

    target: Target | None  # the server whose connections are always allowed
    route: Any  # the guard's connection that env.py's engines get; None: refuse others
    why: str  # who is being fenced in, for the message ("migrations/env.py")


_state: list[_State] = []  # a stack: the innermost block wins
_lock = threading.RLock()
_bypass: contextvars.ContextVar[bool] = contextvars.ContextVar("schema_warden_routed_connect", default=False)
_saved: dict[tuple[Any, str], Any] = {}


def _current() -> _State | None:
    return _state[-1] if _state else None


def _refuse(where: str, state: _State) -> RefusedConnection:
    return RefusedConnection(
        f"{state.why} tried to connect to {where}, which is not the guard's throwaway server: refused "
        "(the guard never reaches a real database; use the connection in "
        'config.attributes["connection"], or an engine built from sqlalchemy.url)'
    )


# --- SQLAlchemy: new DBAPI connections of any engine ---------------------------------------


def _rewrite(driver: str, target: Target, cargs: list[Any], cparams: dict[str, Any]) -> None:
    cargs.clear()  # a positional DSN names a server
    for key in [k for k in cparams if k in _WHERE]:
        del cparams[key]
    if driver in _LIBPQ_DRIVERS:
        cparams.update(host=target.socket_dir, port=target.port, dbname=target.database, user=target.user)
    elif driver == "asyncpg":
        cparams.update(host=target.socket_dir, port=target.port, database=target.database, user=target.user)
    elif driver == "pg8000":
        cparams.update(
            unix_sock=os.path.join(target.socket_dir, f".s.PGSQL.{target.port}"),
            database=target.database,
            user=target.user,
        )


def _sqlalchemy_target(driver: str, cargs: list[Any], cparams: dict[str, Any]) -> tuple[Any, Any]:
    if driver == "pg8000":
        sock = cparams.get("unix_sock")
        return (os.path.dirname(sock) if sock else cparams.get("host")), None if sock else cparams.get("port")
    if cargs or "dsn" in cparams or "conninfo" in cparams:
        return None, None  # a DSN string: never trusted, rewritten
    return cparams.get("host"), cparams.get("port")


def _on_do_connect(dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
    state = _current()
    if state is None:
        return None
    driver = str(getattr(dialect, "driver", ""))
    known = dialect.name == "postgresql" and (driver in _LIBPQ_DRIVERS or driver in ("asyncpg", "pg8000"))
    host, port = _sqlalchemy_target(driver, cargs, cparams) if known else (None, None)
    if state.target is not None and state.target.owns(host, port):
        token = _bypass.set(True)
        try:
            return dialect.connect(*cargs, **cparams)
        finally:
            _bypass.reset(token)
    if state.route is None or state.target is None or not known:
        raise _refuse(f"a {dialect.name}+{driver} database", state)
    _rewrite(driver, state.target, cargs, cparams)
    token = _bypass.set(True)
    try:
        return dialect.connect(*cargs, **cparams)
    finally:
        _bypass.reset(token)


# --- SQLAlchemy: Engine.connect / Engine.begin lend the guard's connection ------------------


class _Joined:
    """What ``begin()`` gives inside the guard's transaction: the guard commits or rolls back."""

    is_active = True

    def __enter__(self) -> _Joined:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def commit(self) -> None:
        return None

    def rollback(self) -> None:
        return None

    def close(self) -> None:
        return None


def _lend(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def connect(engine: Any, *args: Any, **kwargs: Any) -> Any:
        state = _current()
        route = state.route if state is not None else None
        if route is None or engine is route.engine:
            return original(engine, *args, **kwargs)
        return route

    return connect


@contextlib.contextmanager
def _engine_begin(engine: Any) -> Iterator[Any]:
    state = _current()
    route = state.route if state is not None else None
    if route is None or engine is route.engine:
        with _saved[(_engine_class(), "begin")](engine) as conn:
            yield conn
        return
    yield route


def _engine_class() -> Any:
    from sqlalchemy.engine import Engine

    return Engine


@contextlib.contextmanager
def _lent(connection: Any) -> Iterator[None]:
    """The guard's connection as env.py's engines see it: closing it does nothing,
    ``begin()`` inside an open transaction joins that transaction, and ``connect()`` gives
    itself (env.py written for pytest-alembic expects an Engine in
    ``config.attributes["connection"]`` and calls ``connectable.connect()``)."""
    real_begin = connection.begin

    def begin() -> Any:
        if connection.in_transaction():
            return _Joined()
        return real_begin()

    added = [name for name in ("close", "begin", "connect") if name not in vars(connection)]
    connection.close = lambda: None
    connection.begin = begin
    connection.connect = lambda: connection
    try:
        yield
    finally:
        for name in added:
            vars(connection).pop(name, None)


# --- drivers called directly ---------------------------------------------------------------


def _driver_target(module: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """(host, port) a direct driver call would reach; (None, None) when it cannot be told."""
    if module in ("psycopg2", "psycopg"):
        dsn = args[0] if args else kwargs.get("dsn", kwargs.get("conninfo", ""))
        params = {
            k: v for k, v in kwargs.items() if k not in ("dsn", "conninfo") and isinstance(v, (str, int))
        }
        try:
            if module == "psycopg2":
                from psycopg2.extensions import make_dsn, parse_dsn

                found = parse_dsn(make_dsn(dsn or "", **params))
            else:
                from psycopg.conninfo import conninfo_to_dict, make_conninfo

                found = conninfo_to_dict(make_conninfo(dsn or "", **params))
        except Exception:
            return None, None
        return found.get("host") or os.environ.get("PGHOST"), found.get("port") or os.environ.get("PGPORT")
    if module == "asyncpg":
        if args or kwargs.get("dsn"):
            return None, None
        return kwargs.get("host"), kwargs.get("port")
    sock = kwargs.get("unix_sock")
    return (os.path.dirname(sock), None) if sock else (None, None)


def _guard_driver(module: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def connect(*args: Any, **kwargs: Any) -> Any:
        state = _current()
        if state is None or _bypass.get():
            return original(*args, **kwargs)
        host, port = _driver_target(module, args, kwargs)
        if state.target is not None and state.target.owns(host, port):
            return original(*args, **kwargs)
        raise _refuse(f"a database through {module}.connect() directly", state)

    return connect


def _patch(owner: Any, name: str, replacement: Callable[[Callable[..., Any]], Any]) -> None:
    key = (owner, name)
    if key not in _saved:
        _saved[key] = getattr(owner, name)
        setattr(owner, name, replacement(_saved[key]))


def _install() -> None:
    """Patch once per block stack: engines, the do_connect event, every driver imported."""
    from sqlalchemy import event
    from sqlalchemy.engine import Dialect, Engine

    _patch(Engine, "connect", _lend)
    _patch(Engine, "begin", lambda _orig: _engine_begin)
    if not event.contains(Dialect, "do_connect", _on_do_connect):
        event.listen(Dialect, "do_connect", _on_do_connect)
    for module in _DRIVER_MODULES:
        loaded = sys.modules.get(module)
        if loaded is None:
            with contextlib.suppress(Exception):
                loaded = importlib.import_module(module)
        if loaded is not None and callable(getattr(loaded, "connect", None)):
            _patch(loaded, "connect", functools.partial(_guard_driver, module))


def _uninstall() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Dialect

    for (owner, name), original in _saved.items():
        setattr(owner, name, original)
    _saved.clear()
    if event.contains(Dialect, "do_connect", _on_do_connect):
        event.remove(Dialect, "do_connect", _on_do_connect)


@contextlib.contextmanager
def _active(state: _State) -> Iterator[None]:
    with _lock:
        if not _state:
            _install()
        _state.append(state)
    try:
        yield
    finally:
        with _lock:
            _state.remove(state)
            if not _state:
                _uninstall()


@contextlib.contextmanager
def routed(connection: Any, why: str) -> Iterator[None]:
    """Inside: every engine the project builds uses ``connection`` (the guard's, on the
    throwaway database); connections elsewhere are rewritten to it or refused."""
    state = _State(Target.of(connection), connection, why)
    with _active(state), _lent(connection):
        yield


@contextlib.contextmanager
def refused(why: str, server: Target | None = None) -> Iterator[None]:
    """Inside: no connection is opened except to ``server`` (none at all without one)."""
    with _active(_State(server, None, why)):
        yield
