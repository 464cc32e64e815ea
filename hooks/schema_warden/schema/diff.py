"""Compare two schema snapshots into a list of changes (pure: no I/O, no server).

What is compared, and the traps it avoids (each tested in tests/test_diff.py):

- Column position is ignored: migrations append columns, ``create_all`` orders them by the
  model.
- Defaults that mean the same are compared equal: ``now()``, ``CURRENT_TIMESTAMP`` and
  ``transaction_timestamp()`` (Postgres 15 keeps them apart as text); ``LOCALTIMESTAMP`` on a
  ``timestamp without time zone`` column; a string literal cast to another string type
  (``'C'::text`` on a varchar column stores the same as ``'C'::character varying``);
  ``ARRAY[]::t[]`` and ``'{}'::t[]``; numbers by value (``'0'::numeric``, ``0`` and ``0.00`` in a
  numeric(6,2) column). Inside expressions too: ``timezone('utc', CURRENT_TIMESTAMP)``.
- Index definitions are compared without the index name (the name is the key already), and
  indexes that implement a PRIMARY KEY / UNIQUE / EXCLUDE constraint are compared as that
  constraint only.
- An identity column's implicit sequence is never a change of its own: the column's identity
  is. Sequences owned by an added or removed table or column are folded into that change.
- What Postgres drops along with a dropped table or column (its indexes, constraints, owned
  sequences) is part of that one change, not a line of its own.
- A removed and an added constraint (or index) on the same table with the same definition is
  one change: a rename.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar, cast

from schema_warden.schema.snapshot import (
    Column,
    Constraint,
    EnumType,
    Index,
    Sequence,
    Snapshot,
    Table,
    View,
    object_key,
    table_matches,
)

# what a change's ``before`` and ``after`` hold: the snapshot's object of the change's kind
SchemaObject = Table | Column | Index | Constraint | EnumType | Sequence | View
_Renamed = TypeVar("_Renamed", Index, Constraint)

KIND_ORDER = ("table", "column", "index", "constraint", "enum", "sequence", "view")
ACTION_ORDER = ("removed", "changed", "added")
_SIGN = {"added": "+", "removed": "-", "changed": "~"}


@dataclass(frozen=True)
class Change:
    kind: str  # "table" | "column" | "index" | "constraint" | "enum" | "sequence" | "view"
    action: str  # "added" | "removed" | "changed"
    name: str  # table key / "table.column" / index key / "table.constraint" / enum, sequence, view key
    table: str | None  # table key for tables, columns, indexes, constraints, owned sequences
    detail: str
    destructive: bool
    before: SchemaObject | None = None
    after: SchemaObject | None = None

    def line(self) -> str:
        """One readable line: ``+ column readings.humidity (double precision, nullable)``."""
        text = f"{_SIGN[self.action]} {self.kind} {self.name}"
        if self.detail:
            text += f" ({self.detail})"
        if self.destructive:
            text += " [destructive]"
        return text


def compare(
    before: Snapshot, after: Snapshot, *, ignore_tables: Iterable[str] = ("alembic_version",)
) -> list[Change]:
    """Changes that turn ``before`` into ``after``: destructive first, then by kind, then name."""
    ignored = (ignore_tables,) if isinstance(ignore_tables, str) else tuple(ignore_tables)
    old = _without_tables(before, ignored)
    new = _without_tables(after, ignored)
    changes = _tables(old, new) + _columns(old, new)
    covered = _covered_columns(old, new, changes)
    # a removed column's change holds the column it removed
    dropped = {
        (c.table, cast(Column, c.before).name)
        for c in changes
        if c.kind == "column" and c.action == "removed"
    }
    folded: dict[str, list[str]] = {}
    changes += _indexes(old, new, dropped, folded)
    changes += _constraints(old, new, dropped, folded)
    changes += _enums(old, new)
    changes += _sequences(old, new, covered=covered)
    changes += _views(old, new)
    changes = [
        dataclasses.replace(c, detail=f"{c.detail}; drops {', '.join(sorted(folded[c.name]))}")
        if c.kind == "column" and c.name in folded
        else c
        for c in changes
    ]
    return sorted(changes, key=_order)


def _fold(
    obj: Index | Constraint, kind: str, dropped: set[tuple[str | None, str]], folded: dict[str, list[str]]
) -> bool:
    """True when ``obj`` went away with a dropped column of its table (Postgres drops it too)."""
    gone = [name for name in obj.columns if (obj.table, name) in dropped]
    if gone:
        folded.setdefault(f"{obj.table}.{gone[0]}", []).append(f"{kind} {obj.name}")
    return bool(gone)


def _order(change: Change) -> tuple[bool, int, str, int]:
    return (
        not change.destructive,
        KIND_ORDER.index(change.kind),
        change.name,
        ACTION_ORDER.index(change.action),
    )


def _without_tables(snap: Snapshot, patterns: tuple[str, ...]) -> Snapshot:
    if not patterns:
        return snap
    gone = {key for key in snap.tables if table_matches(key, patterns)}

    def owner_gone(seq: Sequence) -> bool:
        return seq.owned_by is not None and table_matches(seq.owned_by.rsplit(".", 1)[0], patterns)

    return Snapshot(
        tables={k: v for k, v in snap.tables.items() if k not in gone},
        indexes={k: v for k, v in snap.indexes.items() if v.table not in gone},
        constraints={k: v for k, v in snap.constraints.items() if v.table not in gone},
        enums=snap.enums,
        sequences={k: v for k, v in snap.sequences.items() if not owner_gone(v)},
        views=snap.views,
    )


# --- tables and columns -------------------------------------------------------------------


def _tables(old: Snapshot, new: Snapshot) -> list[Change]:
    changes = []
    for key in old.tables.keys() - new.tables.keys():
        table = old.tables[key]
        changes.append(Change("table", "removed", key, key, _table_summary(table, old), True, before=table))
    for key in new.tables.keys() - old.tables.keys():
        table = new.tables[key]
        changes.append(Change("table", "added", key, key, _table_summary(table, new), False, after=table))
    for key in old.tables.keys() & new.tables.keys():
        a, b = old.tables[key], new.tables[key]
        parts = []
        if a.partitioned != b.partitioned:
            parts.append("now partitioned" if b.partitioned else "no longer partitioned")
        if a.comment != b.comment:
            parts.append(_comment_change(a.comment, b.comment))
        if parts:
            changes.append(Change("table", "changed", key, key, "; ".join(parts), False, before=a, after=b))
    return changes


def _table_summary(table: Table, snap: Snapshot) -> str:
    count = len(table.columns)
    text = f"{count} column" + ("" if count == 1 else "s")
    pk = _primary_key(table, snap)
    if pk is not None:
        text += f", PK {', '.join(pk.columns)}"
    return text


def _primary_key(table: Table, snap: Snapshot) -> Constraint | None:
    key = object_key(table.schema, table.name)
    return next(
        (c for c in snap.constraints.values() if c.table == key and c.type == "primary key"),
        None,
    )


def _columns(old: Snapshot, new: Snapshot) -> list[Change]:
    changes = []
    for key in old.tables.keys() & new.tables.keys():
        a = {col.name: col for col in old.tables[key].columns}
        b = {col.name: col for col in new.tables[key].columns}
        for name in a.keys() - b.keys():
            col = a[name]
            changes.append(Change("column", "removed", f"{key}.{name}", key, describe_column(col), True, col))
        for name in b.keys() - a.keys():
            col = b[name]
            changes.append(
                Change("column", "added", f"{key}.{name}", key, describe_column(col), False, after=col)
            )
        for name in a.keys() & b.keys():
            change = _column_change(key, a[name], b[name])
            if change is not None:
                changes.append(change)
    return changes


def describe_column(col: Column) -> str:
    """``character varying(64), NOT NULL, default 'C'::character varying``."""
    parts = [col.type if col.collation is None else f'{col.type} collate "{col.collation}"']
    parts.append("nullable" if col.nullable else "NOT NULL")
    if col.default is not None:
        parts.append(f"default {col.default}")
    if col.identity is not None:
        parts.append(f"identity {col.identity}")
    if col.generated is not None:
        parts.append(f"generated as {col.generated}")
    return ", ".join(parts)


def _column_change(table: str, a: Column, b: Column) -> Change | None:
    if a == b:
        return None
    parts = []
    destructive = False
    if a.type != b.type:
        parts.append(f"{a.type} -> {b.type}")
        destructive = not is_widening(a.type, b.type)
    if a.collation != b.collation:
        parts.append(f"collation {a.collation or 'default'} -> {b.collation or 'default'}")
    if a.nullable != b.nullable:
        parts.append("now nullable" if b.nullable else "now NOT NULL")
    if a.default != b.default and normalise_default(a.default, a.type) != normalise_default(
        b.default, b.type
    ):
        parts.append(f"default {a.default or 'none'} -> {b.default or 'none'}")
    if a.identity != b.identity:
        parts.append(f"identity {a.identity or 'none'} -> {b.identity or 'none'}")
    if a.generated != b.generated:
        parts.append(f"generated {a.generated or 'none'} -> {b.generated or 'none'}")
        # stored values are replaced by computed ones when a plain column becomes generated
        destructive = destructive or (a.generated is None)
    if a.comment != b.comment:
        parts.append(_comment_change(a.comment, b.comment))
    if not parts:
        return None
    return Change("column", "changed", f"{table}.{a.name}", table, "; ".join(parts), destructive, a, b)


def _comment_change(a: str | None, b: str | None) -> str:
    if a is None:
        return "comment added"
    return "comment removed" if b is None else "comment changed"


_NOW_TOKEN = re.compile(r"\bCURRENT_TIMESTAMP\b(?!\s*\()|\btransaction_timestamp\(\)")
_QUOTED = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")")
_STRING_CAST = re.compile(r"'((?:[^']|'')*)'::(?:text|character varying|bpchar)")
_EMPTY_ARRAY = re.compile(r"ARRAY\[\]::(.+\[\])")
_STRING_TYPE = re.compile(r"(?:text|character varying(?:\(\d+\))?|character(?:\(\d+\))?)")
_NUMBER_TYPE = r"(?:smallint|integer|bigint|numeric(?:\(\d+(?:,\d+)?\))?|real|double precision)"
_NUMBER = re.compile(r"\(?'?(-?\d+(?:\.\d+)?)'?\)?(?:::" + _NUMBER_TYPE + r")?")
_NUMERIC_SCALE = re.compile(r"numeric\(\d+,(\d+)\)")


def normalise_default(default: str | None, column_type: str) -> str | None:
    """A column default in a form where texts that store the same value are equal."""
    if default is None:
        return None
    text = default.strip()
    if text == "LOCALTIMESTAMP" and column_type == "timestamp without time zone":
        return "now()"
    # CURRENT_TIMESTAMP and transaction_timestamp() are now(), also inside expressions
    # (timezone('utc'::text, CURRENT_TIMESTAMP)); literals and quoted names stay as they are
    text = "".join(
        part if i % 2 else _NOW_TOKEN.sub("now()", part) for i, part in enumerate(_QUOTED.split(text))
    )
    match = _STRING_CAST.fullmatch(text)
    # a bpchar literal loses trailing blanks when cast to varchar/text: only blank-free ones are equal
    if match and _STRING_TYPE.fullmatch(column_type) and not match.group(1).endswith(" "):
        return f"'{match.group(1)}'"
    match = _EMPTY_ARRAY.fullmatch(text)
    if match:
        return f"'{{}}'::{match.group(1)}"
    match = _NUMBER.fullmatch(text)
    if match and re.fullmatch(_NUMBER_TYPE, column_type):
        return _number(match.group(1), column_type)
    return text


def _number(literal: str, column_type: str) -> str:
    """``'0'::numeric``, ``0.00`` and ``0`` in a numeric(6,2) column all store 0.00."""
    value = Decimal(literal)
    if column_type in ("real", "double precision"):
        return repr(float(value))
    scale = _NUMERIC_SCALE.fullmatch(column_type)
    if scale:
        return str(value.quantize(Decimal(1).scaleb(-int(scale.group(1)))))
    if column_type.startswith("numeric"):
        return str(value)  # unconstrained numeric keeps the scale it is given: 1.50 is not 1.5
    return str(value.to_integral_value()) if value == value.to_integral_value() else literal


# --- type widening -------------------------------------------------------------------------

_TYPE = re.compile(
    r"(?P<base>[a-z][a-z ]*?)(?:\((?P<mod>[0-9, ]+)\))?(?P<rest>(?: [a-z]+)*)(?P<dims>(?:\[\])*)"
)
_INT_DIGITS = {"smallint": 5, "integer": 10, "bigint": 19}
_FLOAT_BITS = {"real": 24, "double precision": 53}
_INT_BITS = {"smallint": 16, "integer": 32, "bigint": 64}
_TIME_TYPES = {"timestamp", "time"}


def is_widening(before: str, after: str) -> bool:
    """True when every value of type ``before`` converts to ``after`` without loss."""
    if before == after:
        return True
    a, b = _TYPE.fullmatch(before), _TYPE.fullmatch(after)
    if a is None or b is None or a["dims"] != b["dims"]:
        return False
    a_name, b_name = a["base"] + a["rest"], b["base"] + b["rest"]
    a_mod = [int(x) for x in a["mod"].split(",")] if a["mod"] else None
    b_mod = [int(x) for x in b["mod"].split(",")] if b["mod"] else None

    if a_name in _INT_DIGITS:
        if b_name in _INT_DIGITS:
            return _INT_DIGITS[b_name] >= _INT_DIGITS[a_name]
        if b_name == "numeric":
            return b_mod is None or _numeric_integer_digits(b_mod) >= _INT_DIGITS[a_name]
        if b_name in _FLOAT_BITS:
            return _INT_BITS[a_name] < _FLOAT_BITS[b_name]
        return False
    if a_name in _FLOAT_BITS:
        return b_name in _FLOAT_BITS and _FLOAT_BITS[b_name] >= _FLOAT_BITS[a_name]
    if a_name == "numeric" and b_name == "numeric":
        if b_mod is None:
            return True
        if a_mod is None:
            return False
        return _numeric_scale(b_mod) >= _numeric_scale(a_mod) and _numeric_integer_digits(
            b_mod
        ) >= _numeric_integer_digits(a_mod)
    if a_name in ("character varying", "text", "character") and b_name in ("character varying", "text"):
        if a_mod is None:  # text, unbounded varchar
            return b_mod is None
        return b_mod is None or b_mod[0] >= a_mod[0]
    if a_name == "character" and b_name == "character":
        return a_mod is not None and b_mod is not None and b_mod[0] >= a_mod[0]
    if a_name == "bit varying" and b_name == "bit varying":
        return b_mod is None or (a_mod is not None and b_mod[0] >= a_mod[0])
    if a["base"] in _TIME_TYPES and a["base"] == b["base"] and a["rest"] == b["rest"]:
        return (b_mod[0] if b_mod else 6) >= (a_mod[0] if a_mod else 6)
    return False


def _numeric_scale(mod: list[int]) -> int:
    return mod[1] if len(mod) > 1 else 0


def _numeric_integer_digits(mod: list[int]) -> int:
    return mod[0] - _numeric_scale(mod)


# --- indexes and constraints ---------------------------------------------------------------

_INDEX_NAME = re.compile(r'^(CREATE (?:UNIQUE )?INDEX )(?:"(?:[^"]|"")*"|\S+)( ON )')


def index_shape(definition: str) -> str:
    """The index definition without its name: ``CREATE INDEX ON public.t USING btree (a)``."""
    return _INDEX_NAME.sub(r"\1\2", definition, count=1).replace("INDEX  ON", "INDEX ON")


def describe_index(index: Index) -> str:
    """``on readings: unique btree (lower(name)) WHERE (x > 0)``."""
    _, _, tail = index.definition.partition(" USING ")
    return f"on {index.table}: {'unique ' if index.unique else ''}{tail or index.definition}"


def _indexes(
    old: Snapshot, new: Snapshot, dropped: set[tuple[str | None, str]], folded: dict[str, list[str]]
) -> list[Change]:
    # a dropped table or materialized view takes its indexes along
    a = {
        k: v
        for k, v in old.indexes.items()
        if v.constraint is None and (v.table in new.tables or v.table in new.views)
    }
    b = {k: v for k, v in new.indexes.items() if v.constraint is None}
    removed = {k: a[k] for k in a.keys() - b.keys() if not _fold(a[k], "index", dropped, folded)}
    added = {k: b[k] for k in b.keys() - a.keys()}
    changes = _renames(
        "index",
        removed,
        added,
        lambda idx: (idx.table, index_shape(idx.definition)),
    )
    for key, idx in removed.items():
        changes.append(Change("index", "removed", key, idx.table, describe_index(idx), False, before=idx))
    for key, idx in added.items():
        changes.append(Change("index", "added", key, idx.table, describe_index(idx), False, after=idx))
    for key in a.keys() & b.keys():
        x, y = a[key], b[key]
        if x.table != y.table or (
            x.definition != y.definition and index_shape(x.definition) != index_shape(y.definition)
        ):
            detail = f"{describe_index(x)} -> {describe_index(y)}"
            changes.append(Change("index", "changed", key, y.table, detail, False, before=x, after=y))
    return changes


def _constraints(
    old: Snapshot, new: Snapshot, dropped: set[tuple[str | None, str]], folded: dict[str, list[str]]
) -> list[Change]:
    added_tables = new.tables.keys() - old.tables.keys()
    # dropping a table drops its constraints; a new table's primary key is in the table's line
    a = {k: v for k, v in old.constraints.items() if v.table in new.tables}
    b = {
        k: v for k, v in new.constraints.items() if not (v.table in added_tables and v.type == "primary key")
    }
    removed = {k: a[k] for k in a.keys() - b.keys() if not _fold(a[k], "constraint", dropped, folded)}
    added = {k: b[k] for k in b.keys() - a.keys()}
    changes = _renames(
        "constraint",
        removed,
        added,
        lambda con: (con.table, con.type, con.definition),
    )
    for key, con in removed.items():
        changes.append(Change("constraint", "removed", key, con.table, _describe(con), False, before=con))
    for key, con in added.items():
        changes.append(Change("constraint", "added", key, con.table, _describe(con), False, after=con))
    for key in a.keys() & b.keys():
        x, y = a[key], b[key]
        if (x.type, x.definition) != (y.type, y.definition):
            detail = f"{x.definition} -> {y.definition}"
            changes.append(Change("constraint", "changed", key, y.table, detail, False, before=x, after=y))
    return changes


def _describe(con: Constraint) -> str:
    return con.definition


def _renames(
    kind: str,
    removed: dict[str, _Renamed],
    added: dict[str, _Renamed],
    shape: Callable[[_Renamed], object],
) -> list[Change]:
    """Pair removed and added objects of identical shape as renames; consumes the pairs."""
    changes = []
    by_shape: dict[object, list[str]] = {}
    for key in sorted(removed):
        by_shape.setdefault(shape(removed[key]), []).append(key)
    for key in sorted(added):
        candidates = by_shape.get(shape(added[key]))
        if not candidates:
            continue
        old_key = candidates.pop(0)
        x, y = removed.pop(old_key), added.pop(key)
        changes.append(Change(kind, "changed", key, y.table, f"renamed from {x.name}", False, x, y))
    return changes


# --- enums, sequences, views ---------------------------------------------------------------


def _labels(labels: Iterable[str]) -> str:
    return ", ".join(f"'{label}'" for label in labels)


def _enums(old: Snapshot, new: Snapshot) -> list[Change]:
    changes = []
    for key in old.enums.keys() - new.enums.keys():
        enum = old.enums[key]
        # no data lives in a type: the columns that used it show as changed or removed
        changes.append(Change("enum", "removed", key, None, _labels(enum.labels), False, before=enum))
    for key in new.enums.keys() - old.enums.keys():
        enum = new.enums[key]
        changes.append(Change("enum", "added", key, None, _labels(enum.labels), False, after=enum))
    for key in old.enums.keys() & new.enums.keys():
        change = _enum_change(key, old.enums[key], new.enums[key])
        if change is not None:
            changes.append(change)
    return changes


def _enum_change(key: str, a: EnumType, b: EnumType) -> Change | None:
    if a.labels == b.labels:
        return None
    gone = [label for label in a.labels if label not in b.labels]
    new = [label for label in b.labels if label not in a.labels]
    parts = []
    if new:
        parts.append(f"added {_labels(new)}")
    if gone:
        parts.append(f"removed {_labels(gone)}")
    kept_a = [label for label in a.labels if label in b.labels]
    kept_b = [label for label in b.labels if label in a.labels]
    if kept_a != kept_b:
        parts.append(f"order {_labels(a.labels)} -> {_labels(b.labels)}")
    return Change("enum", "changed", key, None, "; ".join(parts), bool(gone), before=a, after=b)


def _covered_columns(old: Snapshot, new: Snapshot, changes: list[Change]) -> set[str]:
    """``table.column`` of every column that is added, removed or has its own change."""
    covered = {c.name for c in changes if c.kind == "column"}
    for c in changes:
        if c.kind == "table" and c.action != "changed":
            table = old.tables.get(c.name) or new.tables[c.name]
            covered.update(f"{c.name}.{col.name}" for col in table.columns)
    return covered


def _describe_sequence(seq: Sequence) -> str:
    text = seq.data_type
    if seq.owned_by:
        text += f", owned by {seq.owned_by}"
    return text


_SEQUENCE_FIELDS = ("data_type", "owned_by", "start", "increment", "min_value", "max_value", "cycle")


def _sequences(old: Snapshot, new: Snapshot, *, covered: set[str]) -> list[Change]:
    def visible(seq: Sequence) -> bool:
        return not seq.identity and seq.owned_by not in covered

    a = {k: v for k, v in old.sequences.items() if visible(v)}
    b = {k: v for k, v in new.sequences.items() if visible(v)}
    changes = []
    for key in a.keys() - b.keys():
        seq = a[key]
        if key in new.sequences:  # now an identity sequence: the column says so
            continue
        changes.append(
            Change("sequence", "removed", key, _owner_table(seq), _describe_sequence(seq), False, before=seq)
        )
    for key in b.keys() - a.keys():
        seq = b[key]
        if key in old.sequences:
            continue
        changes.append(
            Change("sequence", "added", key, _owner_table(seq), _describe_sequence(seq), False, after=seq)
        )
    for key in a.keys() & b.keys():
        x, y = a[key], b[key]
        parts = [
            f"{name.replace('_', ' ')} {getattr(x, name)} -> {getattr(y, name)}"
            for name in _SEQUENCE_FIELDS
            if getattr(x, name) != getattr(y, name)
        ]
        if parts:
            changes.append(
                Change(
                    "sequence", "changed", key, _owner_table(y), "; ".join(parts), False, before=x, after=y
                )
            )
    return changes


def _owner_table(seq: Sequence) -> str | None:
    return seq.owned_by.rsplit(".", 1)[0] if seq.owned_by else None


def _view_kind(view: View) -> str:
    return "materialized view" if view.materialized else "view"


def _views(old: Snapshot, new: Snapshot) -> list[Change]:
    changes = []
    for key in old.views.keys() - new.views.keys():
        view = old.views[key]
        changes.append(Change("view", "removed", key, None, _view_kind(view), False, before=view))
    for key in new.views.keys() - old.views.keys():
        view = new.views[key]
        changes.append(Change("view", "added", key, None, _view_kind(view), False, after=view))
    for key in old.views.keys() & new.views.keys():
        x, y = old.views[key], new.views[key]
        parts = []
        if x.materialized != y.materialized:
            parts.append(f"{_view_kind(x)} -> {_view_kind(y)}")
        if x.definition != y.definition:
            parts.append("definition changed")
        if parts:
            changes.append(Change("view", "changed", key, None, "; ".join(parts), False, before=x, after=y))
    return changes
