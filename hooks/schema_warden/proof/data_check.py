"""Data preservation: before each upgrade, put rows in every table; after it, they are still there.

A migration can be consistent (up, down, up give the same schema) and still lose data: a
table recreated under the same name, a column type change through a copy, a TRUNCATE. So
the stairway fills every existing table with a few generated rows before it upgrades a
revision, and afterwards every table that still exists must hold at least as many rows.

Values come from the column types (text input cast by Postgres, so every type Postgres can
parse from text works), respect NOT NULL and defaults, take foreign keys from the parent's
rows (parents are filled first), keep unique columns distinct and use the literals of CHECK
constraints (``unit IN ('C', 'F', 'K')``) for the columns they constrain. A table that cannot
be filled is named with the reason, never skipped silently.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from schema_warden.errors import one_line
from schema_warden.schema.snapshot import Column, Snapshot, Table

ROWS_PER_TABLE = 3
ALLOW_NAMES = ("data-loss", "ban-truncate", "delete-without-where")
_LITERAL = re.compile(r"'((?:[^']|'')*)'")
_LENGTH = re.compile(r"\((\d+)(?:,\s*(\d+))?\)")
_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Loss:
    table: str
    before: int
    after: int

    def message(self) -> str:
        return f"upgrade loses rows of table {self.table}: {self.before} before, {self.after} after"


@dataclass
class Filler:
    """Fills tables between steps; remembers a counter (distinct values) and unfillable tables."""

    rows: int = ROWS_PER_TABLE
    counter: int = 0
    unfilled: dict[str, str] = field(default_factory=dict)  # table -> first reason
    shapes: dict[str, Table] = field(default_factory=dict)  # table -> its shape when last filled/tried

    def next(self) -> int:
        self.counter += 1
        return self.counter

    def fill(
        self, connection: Any, snap: Snapshot, skip: Iterable[str] = ("alembic_version",)
    ) -> dict[str, int]:
        """Make every table of ``snap`` hold rows; commit; return the row count of each table.

        Rows stay from step to step, so a table gets new rows only when it has fewer than
        ``rows`` or its columns changed since it was last filled (then the new columns get
        values too); a table that could not be filled is tried again only once its shape
        changes. That keeps long histories fast.
        """
        skipped = set(skip)
        tables = [key for key in fill_order(snap) if key not in skipped and key.split(".")[-1] not in skipped]
        counts = count_rows(connection, snap, tables)
        todo = [
            key
            for key in tables
            if self.shapes.get(key) != snap.tables[key]
            or (counts[key] < self.rows and key not in self.unfilled)
        ]
        for key in todo:
            self.shapes[key] = snap.tables[key]
            reason = self._fill_table(connection, snap, key)
            if reason is not None:
                self.unfilled.setdefault(key, reason)
        if not todo:
            return counts
        connection.commit()
        return count_rows(connection, snap, tables)

    def _fill_table(self, connection: Any, snap: Snapshot, key: str) -> str | None:
        from sqlalchemy import exc

        table = snap.tables[key]
        try:
            rows, columns = self._rows(connection, snap, table)
        except Unfillable as err:
            return str(err)
        # one round trip: the savepoint, the rows and its release (a failing INSERT leaves the
        # transaction aborted until the rollback to the savepoint below)
        statements = insert_statements(table, columns, rows)
        sql = "; ".join(
            [
                "SAVEPOINT schema_warden_fill",
                *(s for s, _ in statements),
                "RELEASE SAVEPOINT schema_warden_fill",
            ]
        )
        params = tuple(v for _, values in statements for v in values)
        try:
            connection.exec_driver_sql(sql, params)
        except exc.DBAPIError as err:
            connection.exec_driver_sql("ROLLBACK TO SAVEPOINT schema_warden_fill")
            connection.exec_driver_sql("RELEASE SAVEPOINT schema_warden_fill")
            return one_line(str(err.orig) if err.orig is not None else str(err))
        return None

    def _rows(
        self, connection: Any, snap: Snapshot, table: Table
    ) -> tuple[list[list[str | None]], list[Column]]:
        key = _key(table)
        unique = unique_columns(snap, key)
        checks = check_literals(snap, key)
        fks = [c for c in snap.constraints.values() if c.table == key and c.type == "foreign key"]
        fk_columns = {col for fk in fks for col in fk.columns}
        chosen = [c for c in table.columns if _needs_value(c, unique, fk_columns)]
        parent_rows = {fk.name: _parent_values(connection, snap, fk.ref_table, fk.ref_columns) for fk in fks}
        rows: list[list[str | None]] = []
        for i in range(self.rows):
            n = self.next()
            row: list[str | None] = []
            for column in chosen:
                fk = next((f for f in fks if column.name in f.columns), None)
                if fk is not None:
                    values = parent_rows[fk.name]
                    if not values:
                        if column.nullable:
                            row.append(None)
                            continue
                        raise Unfillable(
                            f"its foreign key {fk.name} needs rows in {fk.ref_table}, which has none"
                        )
                    pick = values[i % len(values)]
                    row.append(pick[fk.columns.index(column.name)])
                    continue
                value = value_for(column.type, n, snap, checks.get(column.name, ()))
                if value is None and not column.nullable:
                    raise Unfillable(f"no value can be generated for column {column.name} ({column.type})")
                row.append(value)
            rows.append(row)
        return rows, chosen


class Unfillable(Exception):
    """The table cannot be filled with generated rows (the reason is the message)."""


def _key(table: Table) -> str:
    return table.name if table.schema == "public" else f"{table.schema}.{table.name}"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(table: Table) -> str:
    return f"{_quote(table.schema)}.{_quote(table.name)}"


def _needs_value(column: Column, unique: set[str], fk_columns: set[str]) -> bool:
    if column.identity or column.generated:
        return False
    if column.default is not None and "nextval(" in column.default:
        return False
    if column.name in fk_columns:
        return True
    return column.default is None or column.name in unique


def unique_columns(snap: Snapshot, key: str) -> set[str]:
    """Columns that must be distinct: in a primary key, unique constraint or unique index."""
    cols: set[str] = set()
    for con in snap.constraints.values():
        if con.table == key and con.type in ("primary key", "unique"):
            cols.update(con.columns)
    for index in snap.indexes.values():
        if index.table == key and index.unique:
            cols.update(index.columns)
    return cols


def check_literals(snap: Snapshot, key: str) -> dict[str, tuple[str, ...]]:
    """String literals of the CHECK constraints, per constrained column (candidate values)."""
    found: dict[str, list[str]] = {}
    for con in snap.constraints.values():
        if con.table == key and con.type == "check" and len(con.columns) == 1:
            literals = [m.replace("''", "'") for m in _LITERAL.findall(con.definition)]
            if literals:
                found.setdefault(con.columns[0], []).extend(literals)
    return {col: tuple(dict.fromkeys(values)) for col, values in found.items()}


def fill_order(snap: Snapshot) -> list[str]:
    """Tables with the tables they reference first (self-references and cycles tolerated)."""
    deps = {key: set() for key in snap.tables}
    for con in snap.constraints.values():
        if (
            con.type == "foreign key"
            and con.ref_table in deps
            and con.ref_table != con.table
            and con.table in deps
        ):
            deps[con.table].add(con.ref_table)
    order: list[str] = []
    done: set[str] = set()
    while len(done) < len(deps):
        ready = sorted(k for k in deps if k not in done and deps[k] <= done)
        if not ready:  # a cycle: take the rest in name order
            ready = sorted(k for k in deps if k not in done)
        for key in ready:
            order.append(key)
            done.add(key)
    return order


def _base36(n: int, width: int) -> str:
    text = ""
    while n:
        n, digit = divmod(n, 36)
        text = _DIGITS[digit] + text
    return (text or "0")[-width:]


def value_for(type_: str, n: int, snap: Snapshot, candidates: tuple[str, ...] = ()) -> str | None:
    """Text input for a value of ``type_`` (format_type), distinct for distinct ``n``; None if unknown."""
    base = type_.split("(")[0].strip()
    if type_.endswith("[]"):
        return "{}"
    if candidates:
        return candidates[n % len(candidates)]
    enum = snap.enums.get(type_.strip('"')) or next(
        (e for e in snap.enums.values() if f"{e.schema}.{e.name}" == type_ or e.name == type_.strip('"')),
        None,
    )
    if enum is not None:
        return enum.labels[n % len(enum.labels)] if enum.labels else None
    length = _LENGTH.search(type_)
    if base in ("smallint", "integer", "bigint", "oid"):
        return str(n)
    if base == "numeric":
        if length:
            precision, scale = int(length.group(1)), int(length.group(2) or 0)
            digits = precision - scale
            return str(n % (10**digits)) if digits > 0 else "0"
        return str(n)
    if base in ("real", "double precision", "money"):
        return f"{n}.5"
    if base in ("character varying", "character", "text", "citext", "name", "bpchar"):
        width = int(length.group(1)) if length else 32
        text = f"r{n}"
        return text if len(text) <= width else _base36(n, width)
    if base == "boolean":
        return "true" if n % 2 else "false"
    moment = _EPOCH + dt.timedelta(days=n, minutes=n)
    if base.startswith("timestamp"):
        return moment.isoformat()
    if base == "date":
        return moment.date().isoformat()
    if base.startswith("time"):
        return moment.time().isoformat()
    if base == "interval":
        return f"{n} minutes"
    if base == "uuid":
        return f"00000000-0000-4000-8000-{n:012d}"
    if base in ("json", "jsonb"):
        return f'{{"n": {n}}}'
    if base == "bytea":
        digits = f"{n:x}"
        return "\\x" + ("0" * (len(digits) % 2)) + digits
    if base in ("inet", "cidr"):
        return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}/32"
    if base == "macaddr":
        return f"08:00:2b:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}"
    return None


def insert_statements(
    table: Table, columns: list[Column], rows: list[list[str | None]]
) -> list[tuple[str, tuple[Any, ...]]]:
    """INSERT statements (psycopg2 parameters) for the generated rows; values cast by Postgres."""
    target = qualified(table).replace("%", "%%")
    if not columns:
        return [(f"INSERT INTO {target} DEFAULT VALUES", ())] * len(rows)
    names = ", ".join(_quote(c.name).replace("%", "%%") for c in columns)
    casts = ", ".join(f"%s::{c.type.replace('%', '%%')}" for c in columns)
    values = ", ".join(f"({casts})" for _ in rows)
    params = tuple(v for row in rows for v in row)
    return [(f"INSERT INTO {target} ({names}) VALUES {values}", params)]


def _parent_values(
    connection: Any, snap: Snapshot, ref_table: str | None, ref_columns: tuple[str, ...]
) -> list[tuple]:
    parent = snap.tables.get(ref_table or "")
    if parent is None or not ref_columns:
        return []
    cols = ", ".join(f"{_quote(c)}::text" for c in ref_columns)
    not_null = " AND ".join(f"{_quote(c)} IS NOT NULL" for c in ref_columns)
    sql = f"SELECT {cols} FROM {qualified(parent)} WHERE {not_null} LIMIT {ROWS_PER_TABLE}"
    return [tuple(row) for row in connection.exec_driver_sql(sql.replace("%", "%%")).fetchall()]


def count_rows(connection: Any, snap: Snapshot, tables: Iterable[str]) -> dict[str, int]:
    """Row count of each table, in one query; the read transaction is ended."""
    keys = [k for k in tables if k in snap.tables]
    if not keys:
        return {}
    from schema_warden.schema.snapshot import prepared_value

    parts = ", ".join(f"(SELECT count(*) FROM {qualified(snap.tables[k])})" for k in keys)
    # prepared: the same tables are counted step after step, and planning a count of each
    # costs four times as much as running it
    values = prepared_value(connection, f"SELECT ARRAY[{parts}]::bigint[]")  # no argument limit
    connection.rollback()
    return dict(zip(keys, (int(v) for v in values), strict=True))


def losses(before: dict[str, int], after: dict[str, int]) -> list[Loss]:
    """Tables that still exist and hold fewer rows than before (pure)."""
    return [Loss(t, n, after[t]) for t, n in sorted(before.items()) if t in after and after[t] < n]


def allowed_reason(path: str) -> str | None:
    """The reason of a ``# schema-warden: allow data-loss -- reason`` comment in the revision file."""
    from pathlib import Path

    from schema_warden.lint.rules import parse_allows

    try:
        allows, _problems = parse_allows(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    for allow in allows:
        if any(name in ALLOW_NAMES or f"ban-{name}" in ALLOW_NAMES for name in allow.rules):
            return allow.reason
    return None
