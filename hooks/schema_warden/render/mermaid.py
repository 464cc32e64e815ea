"""Draw a schema snapshot as a Mermaid ``erDiagram`` (pure: plain data in, text out).

GitHub renders Mermaid in comments, step summaries and Markdown files, so the picture
costs the reader nothing. Two drawings:

- :func:`draw`: a whole snapshot (``schema-warden erd``), optionally filtered by table
  patterns and cut at a table limit, with a note saying what was left out.
- :func:`diff_diagram`: the tables a change list touches plus their direct neighbours,
  with added, removed and changed columns marked (the PR comment).

Mermaid's grammar is narrower than SQL's, hence some rewriting:

- Types: an attribute type is one word, so ``format_type`` text is shortened to
  Postgres's own short names and parentheses, commas and spaces become underscores:
  ``character varying(64)`` -> ``varchar_64``, ``numeric(6,2)`` -> ``numeric_6_2``,
  ``timestamp with time zone`` -> ``timestamptz``, ``timestamp(3) without time zone`` ->
  ``timestamp_3``, ``time with time zone`` -> ``timetz``, ``double precision`` -> ``float8``,
  ``bit varying(8)`` -> ``varbit_8``, ``character(1)`` -> ``char_1``, ``integer[]`` ->
  ``integer[]`` (brackets are allowed), ``interval day to second`` -> ``interval_day_to_second``,
  ``other.mood`` -> ``other_mood``; any other character becomes ``_``.
- Column names: characters Mermaid does not accept become ``_``; a name that starts with a
  digit gets a leading ``_``; ``pk``, ``fk`` and ``uk`` (Mermaid's key words) get a trailing ``_``.
- Table names: written bare when they are plain identifiers and not Mermaid key words
  (``class``, ``end``, ``one``, ``many``, ``to``, ``style``...), else in double quotes
  (``"other.devices"``, ``"end"``).

Marks: ``PK``, ``FK`` and ``UK`` (a column that alone is unique, by constraint or by a full
unique index) in the key field; ``nullable`` (and in a diff ``added`` / ``removed`` /
``changed: ...``) in the comment field. Relationships come from foreign keys: the
referenced table's end is ``||`` (exactly one) when every foreign-key column is NOT NULL,
``|o`` (zero or one) when one is nullable; the referencing end is ``o{`` (zero or more), or
``o|`` (zero or one: one-to-one) when the foreign-key columns are unique. The label names
the foreign-key columns, so composite keys, self references and link tables of
many-to-many relationships read as they are declared.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from schema_warden.schema.diff import Change, normalise_default
from schema_warden.schema.snapshot import Column, Constraint, Snapshot, Table, table_matches

DEFAULT_MAX_TABLES = 40  # beyond that a Mermaid ER diagram stops being readable
MERMAID_MAX_TEXT = 50_000  # Mermaid's default maxTextSize: larger diagrams are not rendered
GITHUB_COMMENT_LIMIT = 65_536  # characters in a GitHub issue or pull request comment
DIFF_SUMMARY = "ER diagram of the touched tables"
# What a PR comment says in place of a diagram it had no room for (one Markdown line).
DIFF_LEFT_OUT_NOTE = (
    f"_{DIFF_SUMMARY} left out: it would take this comment past GitHub's "
    f"{GITHUB_COMMENT_LIMIT:,}-character limit._\n"
)
# The table bookkeeping of Alembic is no part of anybody's schema picture.
ALWAYS_LEFT_OUT = ("alembic_version",)

_TYPE_ALIASES = {
    "character varying": "varchar",
    "character": "char",
    "bit varying": "varbit",
    "double precision": "float8",
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "time with time zone": "timetz",
    "time without time zone": "time",
}
# "timestamp(3) with time zone": the precision sits inside the words
_TIME_WITH_PRECISION = re.compile(r"^(timestamp|time)\((\d+)\) (with|without) time zone$")
_PLAIN_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Words Mermaid's erDiagram lexer reads as syntax where a table name is expected.
_ENTITY_KEYWORDS = frozenset(
    {"erdiagram", "style", "classdef", "class", "subgraph", "end", "one", "many", "only", "to"}
    | {"optionally", "zero", "u", "o", "direction", "acctitle", "accdescr", "pk", "fk", "uk"}
)
_ATTRIBUTE_KEYWORDS = frozenset({"pk", "fk", "uk"})
_INDEX_COLUMNS = re.compile(r" USING \w+ \((?P<cols>[^()]*)\)(?P<rest>.*)$")


@dataclass(frozen=True)
class Diagram:
    """A drawn ``erDiagram`` and what it shows."""

    mermaid: str  # the erDiagram source, without Markdown fences
    tables: tuple[str, ...]  # table keys drawn
    left_out: tuple[str, ...] = ()  # table keys that matched but were cut by the table limit
    max_tables: int | None = None

    def note(self) -> str | None:
        """One line saying what the drawing leaves out or cannot show, or None."""
        notes = []
        left_out = _left_out_note(self.tables, self.left_out, self.max_tables)
        if left_out:
            notes.append(left_out)
        if len(self.mermaid) > MERMAID_MAX_TEXT:
            notes.append(
                f"the diagram has {len(self.mermaid):,} characters, more than Mermaid renders by default "
                f"({MERMAID_MAX_TEXT:,}); draw fewer tables with --tables PATTERN"
            )
        return "; ".join(notes) or None


def _left_out_note(tables: Sequence[str], left_out: Sequence[str], max_tables: int | None) -> str | None:
    if not left_out:
        return None
    total = len(tables) + len(left_out)
    shown = ", ".join(left_out[:20]) + (", ..." if len(left_out) > 20 else "")
    return (
        f"{len(left_out)} of {total} tables left out (limit {max_tables} tables): {shown}; "
        "draw them with --tables PATTERN or --max-tables N"
    )


def type_label(pg_type: str) -> str:
    """A Postgres ``format_type`` text as one Mermaid attribute-type word (see module doc)."""
    text = pg_type.strip()
    array = ""
    while text.endswith("[]"):
        text, array = text[:-2], array + "[]"
    text = text.replace('"', "")
    match = _TIME_WITH_PRECISION.match(text)
    if match:
        base, precision, zone = match.groups()
        text = f"{base}{'tz' if zone == 'with' else ''}({precision})"
    base, paren, args = text.partition("(")
    base = _TYPE_ALIASES.get(base.strip(), base.strip())
    if paren:
        base += "_" + "_".join(part.strip() for part in args.rstrip(")").split(","))
    word = re.sub(r"[^A-Za-z0-9_]+", "_", base).strip("_") or "unknown"
    if not re.match(r"[A-Za-z_]", word) or word.lower() in _ATTRIBUTE_KEYWORDS:
        word = f"t_{word}"
    return word + array


def entity_name(table_key: str) -> str:
    """A table key as a Mermaid entity name: bare when safe, else in double quotes."""
    if _PLAIN_IDENTIFIER.match(table_key) and table_key.lower() not in _ENTITY_KEYWORDS:
        return table_key
    return '"' + re.sub(r'["%\\\r\n]', "_", table_key) + '"'


def attribute_name(column: str) -> str:
    """A column name as a Mermaid attribute name (see module doc)."""
    name = re.sub(r"[^A-Za-z0-9_\u00C0-\uFFFF]", "_", column) or "_"
    if name[0].isdigit():
        name = "_" + name
    if name.lower() in _ATTRIBUTE_KEYWORDS:
        name += "_"
    return name


def draw(
    snapshot: Snapshot,
    *,
    tables: Sequence[str] = (),
    max_tables: int | None = DEFAULT_MAX_TABLES,
    exclude: Iterable[str] = ALWAYS_LEFT_OUT,
) -> Diagram:
    """The snapshot's tables (those matching a pattern of ``tables``, all when empty).

    Patterns are shell wildcards matched against the table key and the bare name. Past
    ``max_tables`` the first tables by name are drawn and the rest listed in ``left_out``.
    """
    excluded = tuple(exclude)
    keys = [
        key
        for key in sorted(snapshot.tables)
        if not table_matches(key, excluded) and (not tables or table_matches(key, tables))
    ]
    left_out: list[str] = []
    if max_tables is not None and len(keys) > max_tables:
        keys, left_out = keys[:max_tables], keys[max_tables:]
    entities = [_entity(snapshot, key, snapshot.tables[key]) for key in keys]
    drawn = set(keys)
    relations = [
        _relation(snapshot, con)
        for con in _foreign_keys(snapshot)
        if con.table in drawn and con.ref_table in drawn
    ]
    return Diagram(
        mermaid=_render(entities, relations, _left_out_note(keys, left_out, max_tables)),
        tables=tuple(keys),
        left_out=tuple(left_out),
        max_tables=max_tables,
    )


def markdown(diagram: Diagram, title: str | None = None, intro: str | None = None) -> str:
    """The diagram in a fenced ``mermaid`` block (what GitHub renders), a title and its note."""
    parts = [f"# {title}\n"] if title else []
    if intro:
        parts.append(f"{intro}\n")
    parts.append(f"```mermaid\n{diagram.mermaid}```\n")
    note = diagram.note()
    if note:
        parts.append(f"_Note: {note}._\n")
    return "\n".join(parts)


def diff_diagram(
    before: Snapshot,
    after: Snapshot,
    changes: Sequence[Change],
    max_chars: int | None = None,
) -> str | None:
    """Markdown of the touched tables and their direct neighbours, changed columns marked.

    Returns a collapsed ``<details>`` block with a ``mermaid`` fence, or None when no
    change touches a table. When the block is longer than ``max_chars`` (the room left in
    a PR comment), a one-line note replaces it (None when even the note does not fit).
    Touched tables are drawn with all their columns (removed ones too, from ``before``);
    neighbours, the tables one foreign key away, with their key columns only.
    """
    touched = _touched_tables(before, after, changes)
    if not touched:
        return None
    marks = _column_marks(before, after, changes)
    links = _foreign_key_states(before, after)
    neighbours = set()
    for con, _state in links:
        if con.table in touched and con.ref_table:
            neighbours.add(con.ref_table)
        if con.ref_table in touched:
            neighbours.add(con.table)
    # a foreign key may point at a table the snapshots leave out (exclude-tables)
    neighbours = {key for key in neighbours if key in after.tables or key in before.tables} - touched
    order = sorted(touched) + sorted(neighbours)
    left_out: list[str] = []
    if len(order) > DEFAULT_MAX_TABLES:
        order, left_out = order[:DEFAULT_MAX_TABLES], order[DEFAULT_MAX_TABLES:]
    drawn = set(order)
    entities = []
    for key in sorted(drawn):
        if key in after.tables:
            entity = _entity(
                after,
                key,
                after.tables[key],
                marks=marks.get(key, {}),
                removed=_removed_columns(before, after, key),
                keys_only=key not in touched,
            )
        else:  # a dropped table, drawn as it was
            old = before.tables[key]
            entity = _entity(before, key, old, marks={col.name: "removed" for col in old.columns})
        entities.append(entity)
    relations = [
        _relation(after if state != "removed" else before, con, state)
        for con, state in links
        if con.table in drawn and con.ref_table in drawn
    ]
    header = (
        f"%% {len(touched)} touched table(s) in full, {len(drawn) - len(touched & drawn)} neighbour(s) "
        "with their key columns"
    )
    text = _render(entities, relations, _left_out_note(order, left_out, DEFAULT_MAX_TABLES), header=header)
    block = f"<details><summary>{DIFF_SUMMARY}</summary>\n\n```mermaid\n{text}```\n\n</details>\n"
    if len(text) > MERMAID_MAX_TEXT:
        return _fitting(
            f"_{DIFF_SUMMARY} left out: {len(text):,} characters of Mermaid, more than GitHub "
            f"renders ({MERMAID_MAX_TEXT:,})._\n",
            max_chars,
        )
    if max_chars is not None and len(block) > max_chars:
        return _fitting(DIFF_LEFT_OUT_NOTE, max_chars)
    return block


# --- building blocks -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Attribute:
    type: str
    name: str
    keys: tuple[str, ...]
    comment: str


@dataclass(frozen=True)
class _Entity:
    name: str
    attributes: tuple[_Attribute, ...]


@dataclass(frozen=True)
class _Relation:
    parent: str
    child: str
    parent_card: str
    child_card: str
    label: str


@dataclass(frozen=True)
class _Keys:
    primary: tuple[str, ...] = ()
    foreign: frozenset[str] = frozenset()
    unique: frozenset[str] = frozenset()  # columns unique on their own
    unique_sets: tuple[frozenset[str], ...] = field(default=())


def _foreign_keys(snapshot: Snapshot) -> list[Constraint]:
    return sorted(
        (con for con in snapshot.constraints.values() if con.type == "foreign key" and con.ref_table),
        key=lambda con: (con.table, con.name),
    )


def _index_columns(definition: str, table: Table) -> tuple[str, ...] | None:
    """Plain columns of a unique index, None for partial or expression indexes."""
    match = _INDEX_COLUMNS.search(definition)
    if not match or " WHERE " in match.group("rest"):
        return None
    names = []
    for part in match.group("cols").split(","):
        part = part.strip()
        name = part[1 : part.index('"', 1)] if part.startswith('"') else part.split(" ")[0]
        if table.column(name) is None:
            return None
        names.append(name)
    return tuple(names)


def _keys(snapshot: Snapshot, key: str) -> _Keys:
    table = snapshot.tables[key]
    primary: tuple[str, ...] = ()
    foreign: set[str] = set()
    sets: list[frozenset[str]] = []
    for con in snapshot.constraints.values():
        if con.table != key:
            continue
        if con.type == "primary key":
            primary = con.columns
            sets.append(frozenset(con.columns))
        elif con.type == "unique":
            sets.append(frozenset(con.columns))
        elif con.type == "foreign key":
            foreign.update(con.columns)
    for index in snapshot.indexes.values():
        if index.table == key and index.unique and not index.primary:
            columns = _index_columns(index.definition, table)
            if columns:
                sets.append(frozenset(columns))
    unique = frozenset(next(iter(s)) for s in sets if len(s) == 1) - set(primary)
    return _Keys(primary=primary, foreign=frozenset(foreign), unique=unique, unique_sets=tuple(sets))


def _attribute(column: Column, keys: _Keys, mark: str | None) -> _Attribute:
    marks = []
    if column.name in keys.primary:
        marks.append("PK")
    if column.name in keys.foreign:
        marks.append("FK")
    if column.name in keys.unique:
        marks.append("UK")
    comment = [mark] if mark else []
    if column.nullable and column.name not in keys.primary:
        comment.append("nullable")
    return _Attribute(
        type=type_label(column.type),
        name=attribute_name(column.name),
        keys=tuple(marks),
        comment=", ".join(comment),
    )


def _entity(
    snapshot: Snapshot,
    key: str,
    table: Table,
    *,
    marks: Mapping[str, str] | None = None,
    removed: Sequence[tuple[Column, _Keys]] = (),
    keys_only: bool = False,
) -> _Entity:
    keys = _keys(snapshot, key)
    marks = marks or {}
    attributes = [
        _attribute(col, keys, marks.get(col.name))
        for col in table.columns
        if not keys_only or col.name in keys.primary or col.name in keys.foreign or col.name in keys.unique
    ]
    attributes += [_attribute(col, old_keys, "removed") for col, old_keys in removed]
    return _Entity(name=entity_name(key), attributes=tuple(attributes))


def _relation(snapshot: Snapshot, con: Constraint, state: str | None = None) -> _Relation:
    child = snapshot.tables[con.table]
    nullable = any((col := child.column(name)) is None or col.nullable for name in con.columns)
    one_to_one = frozenset(con.columns) in _keys(snapshot, con.table).unique_sets
    label = ", ".join(con.columns)
    if state in ("added", "removed"):
        label += f" ({state})"
    return _Relation(
        # only foreign keys are drawn, and only when the table they reference is drawn too
        parent=entity_name(cast(str, con.ref_table)),
        child=entity_name(con.table),
        parent_card="|o" if nullable else "||",
        child_card="o|" if one_to_one else "o{",
        label=label,
    )


def _quoted(text: str) -> str:
    return '"' + text.replace('"', "'").replace("\n", " ") + '"'


def _render(
    entities: Sequence[_Entity], relations: Iterable[_Relation], note: str | None, header: str = ""
) -> str:
    lines = ["erDiagram"]
    if header:
        lines.append(header)
    if note:
        lines.append(f"%% {note}")
    for entity in entities:
        lines.append(f"  {entity.name} {{")
        for attr in entity.attributes:
            line = f"    {attr.type} {attr.name}"
            if attr.keys:
                line += " " + ", ".join(attr.keys)
            if attr.comment:
                line += " " + _quoted(attr.comment)
            lines.append(line)
        lines.append("  }")
    seen = set()
    for rel in sorted(relations, key=lambda r: (r.parent, r.child, r.label)):
        line = f"  {rel.parent} {rel.parent_card}--{rel.child_card} {rel.child} : {_quoted(rel.label)}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return "\n".join(lines) + "\n"


def _fitting(note: str, max_chars: int | None) -> str | None:
    return note if max_chars is None or len(note) <= max_chars else None


# --- what a change list touches --------------------------------------------------------------


def _touched_tables(before: Snapshot, after: Snapshot, changes: Sequence[Change]) -> set[str]:
    touched: set[str] = set()
    for change in changes:
        if change.kind == "table":
            touched.add(change.name)
        elif change.kind in ("column", "index", "constraint") and change.table:
            touched.add(change.table)
        elif change.kind == "enum":
            # the tables whose columns use the enum type
            bare = change.name.rsplit(".", 1)[-1]
            for snap in (before, after):
                for key, table in snap.tables.items():
                    if any(col.type.rstrip("[]") in (change.name, bare) for col in table.columns):
                        touched.add(key)
    return {key for key in touched if key in after.tables or key in before.tables} - set(ALWAYS_LEFT_OUT)


def _column_of(change: Change) -> str:
    if change.table and change.name.startswith(change.table + "."):
        return change.name[len(change.table) + 1 :]
    return change.name.rsplit(".", 1)[-1]


def _changed_mark(old: object, new: object) -> str:
    if not isinstance(old, Column) or not isinstance(new, Column):
        return "changed"
    parts = []
    if old.type != new.type:
        parts.append(f"{type_label(old.type)} to {type_label(new.type)}")
    if old.nullable != new.nullable:
        parts.append("now nullable" if new.nullable else "now NOT NULL")
    if normalise_default(old.default, old.type) != normalise_default(new.default, new.type):
        parts.append("default changed")
    if (old.identity, old.generated) != (new.identity, new.generated):
        parts.append("identity/generated changed")
    return "changed: " + ", ".join(parts) if parts else "changed"


def _column_marks(before: Snapshot, after: Snapshot, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
    marks: dict[str, dict[str, str]] = {}
    for change in changes:
        if change.kind == "column" and change.table:
            column = _column_of(change)
            changed = change.action == "changed"
            mark = _changed_mark(change.before, change.after) if changed else change.action
            marks.setdefault(change.table, {})[column] = mark
        elif change.kind == "table" and change.action == "added" and change.name in after.tables:
            marks[change.name] = {col.name: "added" for col in after.tables[change.name].columns}
    return marks


def _removed_columns(before: Snapshot, after: Snapshot, key: str) -> list[tuple[Column, _Keys]]:
    """Columns of table ``key`` that ``before`` has and ``after`` lost, with their old keys."""
    old, new = before.tables.get(key), after.tables.get(key)
    if old is None or new is None:
        return []
    keys = _keys(before, key)
    return [(col, keys) for col in old.columns if new.column(col.name) is None]


def _foreign_key_states(before: Snapshot, after: Snapshot) -> list[tuple[Constraint, str | None]]:
    """Every foreign key of either snapshot: None (in both), "added" or "removed"."""
    old = {con.table + "." + con.name: con for con in _foreign_keys(before)}
    new = {con.table + "." + con.name: con for con in _foreign_keys(after)}
    states: list[tuple[Constraint, str | None]] = [
        (con, None if name in old else "added") for name, con in new.items()
    ]
    states += [(con, "removed") for name, con in old.items() if name not in new]
    return states
