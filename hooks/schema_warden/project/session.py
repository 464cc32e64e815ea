"""env.py's configured MigrationContext kept per connection and driven again for later steps,
and what the guard adds around env.py's configure() (the version table schema, AnyIO threads)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schema_warden.errors import ProjectError


@dataclass(frozen=True)
class EnvSession:
    """env.py's configured MigrationContext on one connection, driven again for later steps."""

    env: Any  # the EnvironmentContext (entered again so migrations see alembic.context)
    context: Any  # the MigrationContext env.py configured
    connection: Any
    forget_heads: Callable[[], None]  # a step failed or was rolled back: read the version table again

    @classmethod
    def capture(
        cls, env: Any, context: Any, connection: Any, fn: Callable[..., Any], calls: dict[str, list[Any]]
    ) -> EnvSession | None:
        """A session only for the plain env.py: one configure() on the injected connection, one
        run_migrations() without arguments, online, with the guard's step function."""
        if context is None or len(calls["configure"]) != 1 or calls["run_migrations"] != [{}]:
            return None
        if context.as_sql or context.connection is not connection or context._migrations_fn is not fn:
            return None
        remember_version_table(context)
        return cls(env, context, connection, follow_heads(context, connection))


def follow_heads(context: Any, connection: Any) -> Callable[[], None]:
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


def remember_version_table(context: Any) -> None:
    """Once the version table exists it stays (online, Alembic never drops it): ask only until then."""
    ask = context._has_version_table
    known: list[bool] = []

    def has_version_table() -> bool:
        if not known and ask():
            known.append(True)
        return bool(known)

    context._has_version_table = has_version_table


def in_anyio_worker(run: Callable[[], None]) -> None:
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


def create_version_schema(env: Any, connection: Any) -> None:
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


def watch_env(env: Any) -> dict[str, list[Any]]:
    """Record env.py's calls of configure() and run_migrations() (with their keywords)."""
    calls: dict[str, list[Any]] = {"configure": [], "run_migrations": []}
    for name in calls:
        method = getattr(env, name)

        def watched(*args: Any, _method: Any = method, _seen: list[Any] = calls[name], **kw: Any) -> Any:
            _seen.append(kw)
            return _method(*args, **kw)

        setattr(env, name, watched)  # alembic.context proxies to the instance's attribute
    return calls
