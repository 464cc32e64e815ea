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
- Triggers, policies, row-level security, grants and comments of a dropped table (or column,
  function, schema) go with it; a comment on an object that exists on both sides is a
  ``comment`` change of its own (tables' and columns' comments stay in their own lines, the
  only ones models can declare).
- Grants are compared per object and grantee against what the grantee holds by default, so a
  REVOKE of a default (EXECUTE from PUBLIC) is a change too.

Each kind of object is one small comparator below, listed in ``_COMPARATORS``.
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
    Domain,
    EnumType,
    Extension,
    Function,
    Grant,
    Index,
    Policy,
    Schema,
    Sequence,
    Snapshot,
    Table,
    Trigger,
    View,
    object_key,
    table_matches,
)

# what a change's ``before`` and ``after`` hold: the snapshot's object of the change's kind
SchemaObject = (
    Table
    | Column
    | Index
    | Constraint
    | EnumType
    | Sequence
    | View
    | Schema
    | Extension
    | Domain
    | Function
    | Trigger
    | Policy
    | Grant
)
_Renamed = TypeVar("_Renamed", Index, Constraint)
_Object = TypeVar("_Object", Schema, Extension, Domain, Function, Trigger, Policy)

FUNCTION_KINDS = ("function", "procedure", "aggregate", "window function")
KIND_ORDER = (
    "schema",
    "extension",
    "table",
    "column",
    "index",
    "constraint",
    "enum",
    "domain",
    "sequence",
    "view",
    *FUNCTION_KINDS,
    "trigger",
    "row security",
    "policy",
    "grant",
    "default privileges",
    "comment",
)
# kinds SQLAlchemy models cannot declare: never drift (proof/drift.py), always part of the diff
MODEL_BLIND_KINDS = frozenset(
    (
        *FUNCTION_KINDS,
        "extension",
        "trigger",
        "row security",
        "policy",
        "grant",
        "default privileges",
        "comment",
    )
)
ACTION_ORDER = ("removed", "changed", "added")
_SIGN = {"added": "+", "removed": "-", "changed": "~"}


@dataclass(frozen=True)
class Change:
    kind: str  # one of KIND_ORDER
    action: str  # "added" | "removed" | "changed"
    # table key / "table.column" / index key / "table.constraint" / enum, sequence, view key /
    # schema, extension name / function key / "table.trigger", "table.policy" / grant key
    # ("on table readings to reader") / "on <kind> <key>" for comments
    name: str
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
    for comparator in _COMPARATORS:
        changes += comparator(old, new)
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

    return dataclasses.replace(
        snap,
        tables={k: v for k, v in snap.tables.items() if k not in gone},
        indexes={k: v for k, v in snap.indexes.items() if v.table not in gone},
        constraints={k: v for k, v in snap.constraints.items() if v.table not in gone},
        sequences={k: v for k, v in snap.sequences.items() if not owner_gone(v)},
        triggers={k: v for k, v in snap.triggers.items() if v.table not in gone},
        policies={k: v for k, v in snap.policies.items() if v.table not in gone},
        grants={k: v for k, v in snap.grants.items() if v.table not in gone},
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
        elif a.partition_key != b.partition_key:
            parts.append(f"partition key {a.partition_key} -> {b.partition_key}")
        if a.partition_of != b.partition_of:
            if b.partition_of is None:
                parts.append(f"no longer a partition of {a.partition_of}")
            else:
                parts.append(f"now partition of {b.partition_of} {b.partition_bound}")
        elif a.partition_bound != b.partition_bound:
            parts.append(f"bound {a.partition_bound} -> {b.partition_bound}")
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
    if table.partition_key is not None:
        text += f", partitioned by {table.partition_key}"
    if table.partition_of is not None:
        text += f", partition of {table.partition_of} {table.partition_bound}"
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
            part
            for name in _SEQUENCE_FIELDS
            if name != "cycle"
            for part in _was(name.replace("_", " "), getattr(x, name), getattr(y, name))
        ]
        if x.cycle != y.cycle:
            parts.append("now cycles" if y.cycle else "no longer cycles")
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


# --- the kinds models cannot declare, and schemas, extensions, domains -----------------------
#
# Each comparator takes the two snapshots and returns its changes; ``_keyed`` does the
# bookkeeping (removed, added, changed) for a section, the comparator says how its objects read.


def _keyed(
    a: dict[str, _Object],
    b: dict[str, _Object],
    kind: Callable[[_Object], str],
    describe: Callable[[_Object], str],
    differences: Callable[[_Object, _Object], list[str]],
    *,
    table: Callable[[_Object], str | None] = lambda obj: None,
    kept: Callable[[_Object], bool] = lambda obj: True,
) -> list[Change]:
    """Changes of one section; ``kept``: False for a removed object that went with its owner."""
    changes = []
    for key in a.keys() - b.keys():
        obj = a[key]
        if kept(obj):
            changes.append(Change(kind(obj), "removed", key, table(obj), describe(obj), False, before=obj))
    for key in b.keys() - a.keys():
        obj = b[key]
        changes.append(Change(kind(obj), "added", key, table(obj), describe(obj), False, after=obj))
    for key in a.keys() & b.keys():
        x, y = a[key], b[key]
        parts = differences(x, y) if x != y else []
        if parts:
            changes.append(Change(kind(y), "changed", key, table(y), "; ".join(parts), False, x, y))
    return changes


def _was(name: str, x: object, y: object) -> list[str]:
    """``["volatility stable -> immutable"]`` when the values differ."""
    if x == y:
        return []
    return [f"{name} {'none' if x is None else x} -> {'none' if y is None else y}"]


def _schemas(old: Snapshot, new: Snapshot) -> list[Change]:
    return _keyed(old.schemas, new.schemas, lambda s: "schema", lambda s: "", lambda x, y: [])


def _extensions(old: Snapshot, new: Snapshot) -> list[Change]:
    def describe(ext: Extension) -> str:
        return f"version {ext.version}, schema {ext.schema}"

    def differences(x: Extension, y: Extension) -> list[str]:
        return _was("version", x.version, y.version) + _was("schema", x.schema, y.schema)

    return _keyed(old.extensions, new.extensions, lambda e: "extension", describe, differences)


def _describe_domain(domain: Domain) -> str:
    parts = [domain.type]
    if not domain.nullable:
        parts.append("NOT NULL")
    if domain.default is not None:
        parts.append(f"default {domain.default}")
    parts += [f"constraint {check}" for check in domain.checks]
    return ", ".join(parts)


def _domain_differences(x: Domain, y: Domain) -> list[str]:
    parts = _was("type", x.type, y.type)
    if x.nullable != y.nullable:
        parts.append("now nullable" if y.nullable else "now NOT NULL")
    parts += _was("default", x.default, y.default)
    parts += [f"drops constraint {c}" for c in x.checks if c not in y.checks]
    parts += [f"adds constraint {c}" for c in y.checks if c not in x.checks]
    return parts


def _domains(old: Snapshot, new: Snapshot) -> list[Change]:
    return _keyed(old.domains, new.domains, lambda d: "domain", _describe_domain, _domain_differences)


def _describe_function(fn: Function) -> str:
    parts = [] if fn.returns is None else [f"returns {fn.returns}"]
    parts.append(f"language {fn.language}")
    if fn.kind != "procedure":
        parts.append(fn.volatility)
    if fn.security_definer:
        parts.append("security definer")
    parts += [f"set {setting}" for setting in fn.config]
    return ", ".join(parts)


def _function_differences(x: Function, y: Function) -> list[str]:
    parts = _was("kind", x.kind, y.kind) + _was("returns", x.returns, y.returns)
    parts += _was("language", x.language, y.language)
    if x.body != y.body:
        parts.append("body changed")
    parts += _was("volatility", x.volatility, y.volatility)
    if x.security_definer != y.security_definer:
        parts.append("now security definer" if y.security_definer else "no longer security definer")
    if x.config != y.config:
        parts.append(f"set {', '.join(x.config) or 'none'} -> {', '.join(y.config) or 'none'}")
    return parts


def _functions(old: Snapshot, new: Snapshot) -> list[Change]:
    return _keyed(old.functions, new.functions, lambda f: f.kind, _describe_function, _function_differences)


def _describe_trigger(trigger: Trigger) -> str:
    text = f"{trigger.timing} {' OR '.join(trigger.events)} for each {trigger.level}"
    text += f", executes {trigger.function}"
    return text if trigger.enabled == "enabled" else f"{text}, {trigger.enabled}"


def _trigger_differences(x: Trigger, y: Trigger) -> list[str]:
    parts = []
    if (x.timing, x.events) != (y.timing, y.events):
        parts.append(f"{x.timing} {' OR '.join(x.events)} -> {y.timing} {' OR '.join(y.events)}")
    parts += _was("for each", x.level, y.level) + _was("executes", x.function, y.function)
    if x.enabled != y.enabled:
        parts.append(f"{x.enabled} -> {y.enabled}")
    if not parts and x.definition != y.definition:  # WHEN, UPDATE OF, arguments
        parts.append(f"definition {x.definition} -> {y.definition}")
    return parts


def _triggers(old: Snapshot, new: Snapshot) -> list[Change]:
    return _keyed(
        old.triggers,
        new.triggers,
        lambda t: "trigger",
        _describe_trigger,
        _trigger_differences,
        table=lambda t: t.table,
        kept=lambda t: t.table in new.tables,
    )


def _row_security(table: Table) -> str:
    states = [("enabled", table.row_security), ("forced", table.force_row_security)]
    return ", ".join(name for name, on in states if on)


def _row_security_changes(old: Snapshot, new: Snapshot) -> list[Change]:
    """ENABLE / FORCE ROW LEVEL SECURITY of the tables on both sides, and of new tables."""
    changes = []
    for key, table in new.tables.items():
        before = old.tables.get(key)
        x, y = _row_security(before) if before is not None else "", _row_security(table)
        if x == y:
            continue
        if not x:
            changes.append(Change("row security", "added", key, key, y, False, before, table))
        elif not y:
            changes.append(Change("row security", "removed", key, key, x, False, before, table))
        else:
            changes.append(Change("row security", "changed", key, key, f"{x} -> {y}", False, before, table))
    return changes


def _describe_policy(policy: Policy) -> str:
    text = "" if policy.permissive else "restrictive, "
    text += f"for {policy.command} to {', '.join(policy.roles)}"
    if policy.using is not None:
        text += f", USING {policy.using}"
    if policy.check is not None:
        text += f", WITH CHECK {policy.check}"
    return text


def _policy_differences(x: Policy, y: Policy) -> list[str]:
    parts = []
    if x.permissive != y.permissive:
        parts.append("now permissive" if y.permissive else "now restrictive")
    parts += _was("for", x.command, y.command)
    parts += _was("to", ", ".join(x.roles), ", ".join(y.roles))
    parts += _was("USING", x.using, y.using) + _was("WITH CHECK", x.check, y.check)
    return parts


def _policies(old: Snapshot, new: Snapshot) -> list[Change]:
    return _keyed(
        old.policies,
        new.policies,
        lambda p: "policy",
        _describe_policy,
        _policy_differences,
        table=lambda p: p.table,
        kept=lambda p: p.table in new.tables,
    )


def _grant_exists(snap: Snapshot, grant: Grant) -> bool:
    """Whether the object a grant is on exists in ``snap`` (a dropped object takes its grants)."""
    if grant.on == "column":
        table, _, column = grant.object.rpartition(".")
        found = snap.tables.get(table)
        return found is not None and found.column(column) is not None
    sections: dict[str, dict[str, object]] = {
        "table": dict(snap.tables),
        "view": dict(snap.views),
        "materialized view": dict(snap.views),
        "sequence": dict(snap.sequences),
        "schema": dict(snap.schemas),
        "function": dict(snap.functions),
    }
    section = sections.get(grant.on)
    return section is None or grant.object in section


def _privileges(privileges: tuple[str, ...]) -> str:
    return ", ".join(privileges) or "none"


def _grants(old: Snapshot, new: Snapshot) -> list[Change]:
    """Per object and grantee: what it holds. A grantee missing on one side holds its default."""
    changes = []
    for key in old.grants.keys() | new.grants.keys():
        x, y = old.grants.get(key), new.grants.get(key)
        grant = y or x
        assert grant is not None
        if x is not None and y is None and not _grant_exists(new, x):
            continue  # dropped with its object
        held = x.privileges if x is not None else grant.default
        holds = y.privileges if y is not None else grant.default
        if held == holds:
            continue
        kind = "default privileges" if grant.on == "default privileges" else "grant"
        if not grant.default and not held:
            changes.append(Change(kind, "added", key, grant.table, _privileges(holds), False, x, y))
        elif not grant.default and not holds:
            changes.append(Change(kind, "removed", key, grant.table, _privileges(held), False, x, y))
        else:
            detail = f"{_privileges(held)} -> {_privileges(holds)}"
            changes.append(Change(kind, "changed", key, grant.table, detail, False, x, y))
    return changes


def _comment_kind(obj: object) -> str:
    if isinstance(obj, View):
        return _view_kind(obj)
    if isinstance(obj, EnumType):
        return "type"
    if isinstance(obj, Function):
        return obj.kind
    return type(obj).__name__.lower()


def _quoted(text: str | None, limit: int = 60) -> str:
    if text is None:
        return "none"
    text = " ".join(text.split())
    return "'" + (text if len(text) <= limit else text[: limit - 1] + "…") + "'"


def _comments(old: Snapshot, new: Snapshot) -> list[Change]:
    """COMMENT ON the objects both sides have (tables' and columns' are in their own lines)."""
    changes = []
    for section in (
        "indexes",
        "constraints",
        "enums",
        "domains",
        "sequences",
        "views",
        "schemas",
        "extensions",
        "functions",
        "triggers",
        "policies",
    ):
        a: dict[str, object] = getattr(old, section)
        b: dict[str, object] = getattr(new, section)
        for key in a.keys() & b.keys():
            x, y = a[key], b[key]
            before, after = getattr(x, "comment", None), getattr(y, "comment", None)
            if before == after:
                continue
            name = f"on {_comment_kind(y)} {key}"
            table = getattr(y, "table", None)  # indexes, constraints, triggers, policies
            if before is None:
                changes.append(Change("comment", "added", name, table, _quoted(after), False))
            elif after is None:
                changes.append(Change("comment", "removed", name, table, _quoted(before), False))
            else:
                detail = f"{_quoted(before)} -> {_quoted(after)}"
                changes.append(Change("comment", "changed", name, table, detail, False))
    return changes


_COMPARATORS: tuple[Callable[[Snapshot, Snapshot], list[Change]], ...] = (
    _schemas,
    _extensions,
    _domains,
    _functions,
    _triggers,
    _row_security_changes,
    _policies,
    _grants,
    _comments,
)
