"""The trace: what each statement of a revision's upgrade did on the throwaway server.

While a revision runs, SQLAlchemy's ``before_cursor_execute`` / ``after_cursor_execute``
events (on every Engine, so env.py's own routed engines are seen too) record each
statement and, for each, read on the statement's own DBAPI connection, inside its
transaction and before the commit:

- the locks its backend holds on relations (``pg_locks`` where ``pid = pg_backend_pid()``,
  named through ``pg_class``), keeping those it did not hold before the statement;
- whether it rewrote a table (the table's ``relfilenode`` changed);
- its duration, its line in the revision file (the op.* call that sent it) and whether it
  ran inside a transaction block.

The facts are :class:`schema_warden.lint.rules.Facts`, so the lint rules read them instead
of guessing. The catalog reads use a second cursor of the same connection, which fires no
events and leaves the statement's own result alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from schema_warden.lint.rules import Facts, Lock

RELATIONS = """
SELECT c.oid, c.relfilenode, n.nspname, c.relname, c.relkind
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm', 'i')
  AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
"""
LOCKS = """
SELECT l.relation, l.mode FROM pg_catalog.pg_locks l
WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'relation' AND l.granted
  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
"""
NOT_NULL_CHECKS = """
SELECT n.nspname, c.relname, pg_catalog.pg_get_constraintdef(k.oid)
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE k.contype = 'c' AND k.convalidated
"""
_NOT_NULL = re.compile(r'^CHECK \(\(?"?([^"()\s]+)"? IS NOT NULL\)?\)$')


@dataclass(frozen=True)
class Relation:
    oid: int
    filenode: int
    name: str  # schema-qualified unless in public
    kind: str  # "table" or "index"


@dataclass(frozen=True)
class TracedStatement:
    sql: str  # as sent to the server (parameters bound, when the driver shows them)
    line: int | None  # line of the revision file whose code sent it
    facts: Facts


@dataclass
class Trace:
    """One revision's statements, in the order they ran."""

    revision_file: str
    statements: list[TracedStatement] = field(default_factory=list)
    not_null_checked: tuple[str, ...] = ()  # table.column with a validated IS NOT NULL check
    before: dict[int, Relation] = field(default_factory=dict)  # relations when it started


def _cursor_rows(dbapi: Any, sql: str) -> list[tuple[Any, ...]]:
    cursor = dbapi.cursor()
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _name(schema: str, name: str) -> str:
    return name if schema == "public" else f"{schema}.{name}"


def relations(dbapi: Any) -> dict[int, Relation]:
    kinds = {"r": "table", "p": "table", "m": "table", "i": "index"}
    return {
        int(oid): Relation(int(oid), int(node), _name(schema, name), kinds[str(kind)])
        for oid, node, schema, name, kind in _cursor_rows(dbapi, RELATIONS)
    }


def held_locks(dbapi: Any) -> set[tuple[int, str]]:
    return {(int(oid), str(mode)) for oid, mode in _cursor_rows(dbapi, LOCKS)}


def not_null_checks(dbapi: Any) -> tuple[str, ...]:
    found = []
    for schema, table, definition in _cursor_rows(dbapi, NOT_NULL_CHECKS):
        match = _NOT_NULL.match(str(definition))
        if match:
            found.append(f"{_name(schema, table)}.{match.group(1)}")
    return tuple(found)


def _dbapi(connection: Any) -> Any:
    """The DBAPI connection under a SQLAlchemy Connection."""
    return connection.connection.dbapi_connection


def _in_transaction(dbapi: Any) -> bool | None:
    autocommit = getattr(dbapi, "autocommit", None)
    return None if autocommit is None else not autocommit


def _sent(cursor: Any, statement: str) -> str:
    query = getattr(cursor, "query", None)  # psycopg2: the statement with its parameters bound
    if isinstance(query, bytes):
        return query.decode("utf-8", "replace")
    return query if isinstance(query, str) else statement


class _Recorder:
    """The event handlers of one trace; state for the statement under way."""

    def __init__(self, trace: Trace, revision_path: str) -> None:
        self.trace = trace
        self.path = os.path.realpath(revision_path)
        self.pending: dict[int, tuple[float, dict[int, Relation], set[tuple[int, str]], int | None]] = {}
        self.transaction = -1  # which transaction of the revision the statement runs in

    def next_transaction(self, dbapi: Any) -> None:
        """Count a new transaction when this statement starts one (autocommit: each does)."""
        status = getattr(getattr(dbapi, "info", None), "transaction_status", None)
        if _in_transaction(dbapi) is False or status == 0 or self.transaction < 0:  # 0: idle
            self.transaction += 1

    def line(self) -> int | None:
        for frame in reversed(traceback.extract_stack()):
            if os.path.realpath(frame.filename) == self.path:
                return frame.lineno
        return None

    def before(self, conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        dbapi = _dbapi(conn)
        self.next_transaction(dbapi)
        try:
            rels, locks = relations(dbapi), held_locks(dbapi)
        except Exception:  # a driver that cannot open a second cursor here: time it only
            rels, locks = {}, set()
        self.pending[id(cursor)] = (time.perf_counter(), rels, locks, self.line())

    def after(self, conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        started, rels, locks, line = self.pending.pop(id(cursor), (time.perf_counter(), {}, set(), None))
        duration = time.perf_counter() - started
        dbapi = _dbapi(conn)
        try:
            now, held = relations(dbapi), held_locks(dbapi)
        except Exception:
            now, held = {}, set()
        self.record(_sent(cursor, statement), line, duration, _in_transaction(dbapi), rels, now, held - locks)

    def failed(self, context: Any) -> None:
        cursor = getattr(context, "cursor", None)
        started, _rels, _locks, line = self.pending.pop(id(cursor), (time.perf_counter(), {}, set(), None))
        error = context.original_exception
        message = str(getattr(error, "pgerror", None) or error).strip().splitlines()
        dbapi = _dbapi(context.connection) if context.connection is not None else None
        facts = Facts(
            duration_s=time.perf_counter() - started,
            in_transaction=_in_transaction(dbapi) if dbapi is not None else None,
            error=message[0] if message else type(error).__name__,
            transaction=self.transaction,
        )
        self.trace.statements.append(TracedStatement(str(context.statement or ""), line, facts))

    def record(
        self,
        sql: str,
        line: int | None,
        duration: float,
        in_transaction: bool | None,
        before: dict[int, Relation],
        after: dict[int, Relation],
        taken: set[tuple[int, str]],
    ) -> None:
        known = {**after, **before}  # a dropped relation is named by its state before
        existed = self.trace.before
        locks = tuple(
            sorted(
                (
                    Lock(known[oid].name, mode, known[oid].kind, oid in existed)
                    for oid, mode in taken
                    if oid in known
                ),
                key=lambda lock: (lock.relation, lock.mode),
            )
        )
        rewritten = tuple(
            sorted(
                rel.name
                for oid, rel in before.items()
                if rel.kind == "table"
                and oid in after
                and rel.filenode != 0
                and after[oid].filenode != rel.filenode
            )
        )
        facts = Facts(locks, rewritten, duration, in_transaction, None, self.transaction)
        self.trace.statements.append(TracedStatement(sql, line, facts))


@contextlib.contextmanager
def recording(connection: Any, revision_path: str) -> Iterator[Trace]:
    """Record every statement any Engine runs meanwhile (one revision's upgrade on
    ``connection``); the Trace fills in as they run."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    dbapi = _dbapi(connection)
    trace = Trace(revision_path)
    with contextlib.suppress(Exception):  # a driver whose cursors cannot be used here: timed only
        trace.before, trace.not_null_checked = relations(dbapi), not_null_checks(dbapi)
    if not connection.in_transaction() and _in_transaction(dbapi):
        dbapi.rollback()  # the catalog reads opened a transaction the migration must not inherit
    recorder = _Recorder(trace, revision_path)
    hooks = (
        ("before_cursor_execute", recorder.before),
        ("after_cursor_execute", recorder.after),
        ("handle_error", recorder.failed),
    )
    for name, handler in hooks:
        event.listen(Engine, name, handler)
    try:
        yield trace
    finally:
        for name, handler in hooks:
            event.remove(Engine, name, handler)
