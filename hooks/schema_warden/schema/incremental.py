"""Incremental snapshots: after a migration step, read only what the step changed.

Reading all of pg_catalog after every step makes step k of a history cost O(k) and the
whole stairway quadratic. :meth:`Tracker.take` asks the database what changed since the
tracker's last snapshot, reads only those relations (with their columns, indexes,
constraints, triggers, policies and grants) and puts them into the last snapshot in place of
their old state. What changed is read from the catalogs themselves, never from the migration:

* every catalog row a transaction writes carries its xid in ``xmin``: the rows of the relation
  catalogs (pg_class, pg_attribute, pg_attrdef, pg_constraint, pg_index, pg_trigger, pg_policy,
  pg_description, pg_sequence, pg_inherits, pg_rewrite, pg_depend) written since the last
  snapshot name the relations that changed;
* a removed row leaves no xmin behind: the set of relations and, per relation, the number of
  its rows in each of those catalogs are compared with the last ones;
* an object whose text names a changed relation or column (a foreign key naming a renamed
  column, a view, a default naming a sequence) is found through pg_depend, transitively;
* anything else -- a row written or removed in any other catalog (types, functions, schemas,
  roles, extensions, operators, databases, ...), a comment on anything but a relation or its
  columns, a setting that changes how Postgres prints expressions (search_path, DateStyle, ...),
  uncommitted writes of this session, an xid epoch change, or more than half the relations
  changed -- reads the whole snapshot again. So does a small schema, where a whole read costs
  less than telling what changed (:data:`SMALL`).

``SCHEMA_WARDEN_VERIFY_INCREMENTAL=1`` tracks every schema, small ones too, takes a whole
snapshot beside every incremental one and raises :class:`IncrementalMismatch` when they differ
(the test suite runs fixtures and generated histories so).
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from schema_warden import speed
from schema_warden.schema import snapshot as whole
from schema_warden.schema.snapshot import Owners, Snapshot

VERIFY_ENV = "SCHEMA_WARDEN_VERIFY_INCREMENTAL"
VERIFY_LOG_ENV = "SCHEMA_WARDEN_VERIFY_INCREMENTAL_LOG"  # where each difference is also written
# below this many relations (tables, views, sequences, indexes) each step reads the whole
# schema: telling what changed costs about as much as reading that many (bench/README.md)
SMALL = 60
_SECTIONS = tuple(f.name for f in fields(Snapshot))
_XID_SPAN = 1 << 32
# catalogs read row by row below, and catalogs whose writes never change a snapshot
_HANDLED = {
    "pg_class", "pg_attribute", "pg_attrdef", "pg_constraint", "pg_index", "pg_trigger", "pg_policy",
    "pg_description", "pg_sequence", "pg_inherits", "pg_rewrite", "pg_depend", "pg_type",
}  # fmt: skip
_IGNORED = {
    "pg_statistic",  # ANALYZE (autovacuum) writes it at any time
    "pg_statistic_ext_data",
    "pg_largeobject",  # data, not schema
    "pg_shdepend",  # mirrors owners and grants of objects read elsewhere
}
# settings that change how Postgres prints types and expressions
_SETTINGS = (
    "search_path", "DateStyle", "IntervalStyle", "TimeZone", "extra_float_digits",
    "quote_all_identifiers", "bytea_output", "standard_conforming_strings", "lc_monetary", "lc_numeric",
)  # fmt: skip


class IncrementalMismatch(AssertionError):
    """An incremental snapshot differs from the whole one (only raised under VERIFY_ENV)."""


def _fresh(alias: str) -> str:
    # written at or after the watermark $1: xid ages are 32-bit differences from now, cheaper
    # than casting every xmin (frozen and bootstrap rows are the oldest of all)
    return f"pg_catalog.age({alias}.xmin) <= (SELECT pg_catalog.age($1::text::xid))"


def _lookup(catalog: str, column: str, objid: str) -> str:
    return f"(SELECT {column} FROM pg_catalog.{catalog} WHERE oid = {objid})"


def _relation_of(classid: str, objid: str) -> str:
    """The relation an object of pg_depend belongs to (NULL for objects of no relation)."""
    cases = (
        ("pg_class", objid),
        ("pg_attrdef", _lookup("pg_attrdef", "adrelid", objid)),
        ("pg_constraint", _lookup("pg_constraint", "conrelid", objid)),
        ("pg_trigger", _lookup("pg_trigger", "tgrelid", objid)),
        ("pg_policy", _lookup("pg_policy", "polrelid", objid)),
        ("pg_rewrite", _lookup("pg_rewrite", "ev_class", objid)),
        ("pg_type", _lookup("pg_type", "typrelid", objid)),
    )
    whens = " ".join(f"WHEN 'pg_catalog.{name}'::regclass THEN {value}" for name, value in cases)
    return f"CASE {classid} {whens} END"


def _per_relation(relid: str, source: str, where: str = "true") -> str:
    """[{relation: rows}, [relations with a row written since the watermark]] of one catalog."""
    return (
        "(SELECT json_build_array(json_object_agg(relid, n), json_agg(relid) FILTER (WHERE written)) "
        f"FROM (SELECT {relid} AS relid, count(*) AS n, bool_or({_fresh('x')}) AS written "
        f"FROM {source} WHERE {where} GROUP BY 1) s)"
    )


def _pair(table: str, where: str = "true") -> str:
    """[rows, rows written since the watermark] of one catalog."""
    fresh = _fresh("x")
    counts = f"json_build_array(count(*), count(*) FILTER (WHERE {fresh}))"
    return f"(SELECT {counts} FROM pg_catalog.{table} x WHERE {where})"


# types that are not the row type of a relation, nor the array type of one (those come and go
# with their relations)
_PLAIN_TYPE = (
    "x.typrelid = 0 AND NOT EXISTS ("
    "SELECT 1 FROM pg_catalog.pg_type e WHERE e.oid = x.typelem AND e.typrelid <> 0)"
)


# Objects made after initdb have oids from FirstNormalObjectId on: rows of the schemas' objects
# are found through the catalogs' oid indexes without reading the thousands of built-in rows.
_USER = 16384
# (relation column, rows, which rows) of the relation catalogs: rows per relation (a removed
# row changes a count) and the relations with a row written; relation 0 holds rows of none
_PER_RELATION = (
    ("x.conrelid", "pg_catalog.pg_constraint x", f"x.oid >= {_USER}"),  # of domains: relation 0
    ("x.indrelid", "pg_catalog.pg_index x", f"x.indexrelid >= {_USER}"),
    ("x.tgrelid", "pg_catalog.pg_trigger x", f"x.oid >= {_USER}"),
    ("x.polrelid", "pg_catalog.pg_policy x", f"x.oid >= {_USER}"),
    ("u.relid", "pg_catalog.pg_inherits x, LATERAL unnest(ARRAY[x.inhrelid, x.inhparent]) AS u(relid)",
     f"x.inhrelid >= {_USER}"),
    ("x.adrelid", "pg_catalog.pg_attrdef x", f"x.oid >= {_USER}"),
    ("x.seqrelid", "pg_catalog.pg_sequence x", f"x.seqrelid >= {_USER}"),
    ("x.ev_class", "pg_catalog.pg_rewrite x", f"x.oid >= {_USER}"),
    # owned-by links of sequences (relation), extension membership (0)
    ("CASE WHEN x.refclassid = 'pg_catalog.pg_extension'::regclass THEN 0 ELSE x.objid END",
     "pg_catalog.pg_depend x",
     f"(x.classid = 'pg_catalog.pg_class'::regclass AND x.objid >= {_USER} AND x.deptype IN ('a', 'i'))"
     " OR x.refclassid = 'pg_catalog.pg_extension'::regclass"),
    # comments on relations and their columns (relation); on anything else (0)
    ("CASE WHEN x.classoid = 'pg_catalog.pg_class'::regclass THEN x.objoid ELSE 0 END",
     f"(SELECT d.classoid, d.objoid, d.xmin FROM pg_catalog.pg_description d WHERE d.objoid >= {_USER} "
     "UNION ALL SELECT d.classoid, d.objoid, d.xmin FROM pg_catalog.pg_description d "
     f"WHERE d.objoid IN (SELECT oid FROM ns) AND d.objoid < {_USER}) x"),
)  # fmt: skip
# catalogs read whole: few rows, and built-in ones a migration may change (schema public,
# the database, the bootstrap role); every other catalog is read from _USER on by its first
# oid column, or whole when it has none
_WHOLE = {"pg_namespace", "pg_authid", "pg_database", "pg_extension", "pg_tablespace", "pg_language"}
_FIRST_OID = {"pg_aggregate": "aggfnoid", "pg_init_privs": "objoid", "pg_ts_config_map": "mapcfg"}

_OTHER = f"""(c.classid = 'pg_catalog.pg_proc'::regclass
         OR (c.classid = 'pg_catalog.pg_type'::regclass AND EXISTS (
               SELECT 1 FROM pg_catalog.pg_type x WHERE x.oid = c.objid AND {_PLAIN_TYPE})))"""

# What names a column that changed (a foreign key, a view, an owned sequence, a policy, a
# SQL-standard function body): one step along pg_depend, from that very column.
_DETECT = f"""
WITH ns AS (
    SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = ANY(__SCHEMAS__)
), rels AS MATERIALIZED (
    SELECT c.oid, {_fresh("c")} AS fresh, c.relname, c.relnamespace
    FROM pg_catalog.pg_class c WHERE c.oid >= {_USER} AND c.relnamespace IN (SELECT oid FROM ns)
), attrs AS MATERIALIZED (
    SELECT x.attrelid AS oid, x.attnum FROM pg_catalog.pg_attribute x
    WHERE x.attrelid >= {_USER} AND {_fresh("x")}
), closure AS (
    SELECT d.classid, d.objid FROM attrs a CROSS JOIN LATERAL (  -- by the index (OFFSET 0 keeps it so)
      SELECT x.classid, x.objid FROM pg_catalog.pg_depend x
      WHERE x.refclassid = 'pg_catalog.pg_class'::regclass AND x.refobjid = a.oid
        AND x.refobjsubid = a.attnum OFFSET 0) d
)
SELECT json_build_object(
  'xmin', pg_catalog.txid_snapshot_xmin(pg_catalog.txid_current_snapshot()),
  'own_writes', pg_catalog.txid_current_if_assigned() IS NOT NULL,
  'settings', json_build_array(current_database(),
      (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()), __SETTINGS__),
  'relations', (SELECT json_agg(json_build_array(oid, fresh)) FROM rels),
  -- relations written, in any schema: one outside the schemas may be named by one inside
  'names', (SELECT json_agg(json_build_array(c.oid, n.nspname, c.relname, n.oid IN (SELECT oid FROM ns)))
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid >= {_USER} AND c.relkind NOT IN ('i', 'I', 't') AND {_fresh("c")}),
  'attributes', (SELECT json_agg(DISTINCT oid) FROM attrs),
  'reached', (SELECT json_agg(DISTINCT {_relation_of("c.classid", "c.objid")}) FROM closure c),
  'reached_other', EXISTS (  -- a function or a type (not a row type, nor its array) names one
      SELECT 1 FROM closure c WHERE {_OTHER}),
  'per_relation', json_build_array(__PER_RELATION__),
  'elsewhere', json_build_array(__ELSEWHERE__)
)
"""


# What names a relation renamed or moved to another schema: everything that depends on it,
# transitively (through its row type too: columns and functions of that type).
_RENAMED = f"""
WITH RECURSIVE closure(classid, objid) AS (
    SELECT 'pg_catalog.pg_class'::regclass, unnest($1::oid[])
    UNION
    SELECT d.classid, d.objid FROM closure c CROSS JOIN LATERAL (
      SELECT x.classid, x.objid FROM pg_catalog.pg_depend x
      WHERE x.refclassid = c.classid AND x.refobjid = c.objid OFFSET 0) d
)
SELECT json_build_array(
  (SELECT json_agg(DISTINCT {_relation_of("c.classid", "c.objid")}) FROM closure c),
  EXISTS (SELECT 1 FROM closure c WHERE {_OTHER}))
"""


@dataclass
class _State:
    """What the last snapshot was taken from: enough to tell what changed since."""

    snapshot: Snapshot
    owners: Owners
    index_owner: dict[int, int]  # index -> the table (or materialized view) it belongs to
    xmin: int  # txid_snapshot_xmin when it was read: every later write has an xid at least this
    settings: list[Any]
    relations: set[int]  # every relation of the schemas, indexes too
    counts: list[dict[int, int]]  # per _PER_RELATION catalog: rows per relation (0: of none)
    elsewhere: list[int]  # rows of every other catalog


@dataclass
class Tracker:
    """Incremental snapshots of one database through one connection (one per stairway)."""

    schemas: tuple[str, ...]
    exclude_tables: tuple[str, ...]
    state: _State | None = None
    small: int | None = 0  # relations at the last whole read while below SMALL; None once tracking
    catalogs: tuple[str, ...] | None = None  # the other catalogs, read from pg_catalog once
    stats: dict[str, int] = field(default_factory=lambda: {"whole": 0, "incremental": 0, "unchanged": 0})

    def take(self, connection: Any) -> Snapshot:
        verifying = os.environ.get(VERIFY_ENV) == "1"
        if self.small is not None and self.small < SMALL and not verifying:
            snap, owners, index_owner = self._read(connection, None)
            size = len(index_owner) + len(snap.tables) + len(snap.sequences) + len(snap.views)
            if size < SMALL:
                self.small = size
                return snap
            # big enough to track: from this very read (nothing of this session writes in between)
            detected = self._detect(connection)
            if not detected["own_writes"]:
                self._remember(detected, snap, owners, index_owner)
            return snap
        detected = self._detect(connection)
        plan = None if self.state is None else _plan(self.state, detected)
        if detected["own_writes"]:  # what is read now may be rolled back: nothing to build on
            snap, _, _ = self._read(connection, None)
            self.state = None
        elif plan is None:
            snap, owners, index_owner = self._read(connection, None)
            self._remember(detected, snap, owners, index_owner)
        elif not plan:
            assert self.state is not None
            self.stats["unchanged"] += 1
            snap = self.state.snapshot
            self._remember(detected, snap, self.state.owners, self.state.index_owner)
        else:
            assert self.state is not None
            part, part_owners, part_index_owner = self._read(connection, plan)
            snap, owners = merge(self.state.snapshot, self.state.owners, part, part_owners, plan)
            index_owner = {i: t for i, t in self.state.index_owner.items() if t not in plan and i not in plan}
            self._remember(detected, snap, owners, {**index_owner, **part_index_owner})
        if verifying:
            _verify(connection, self, snap)
        return snap

    def _read(self, connection: Any, dirty: set[int] | None) -> tuple[Snapshot, Owners, dict[int, int]]:
        """The whole snapshot (``dirty`` None), or the part of the ``dirty`` relations."""
        if dirty is None:
            self.stats["whole"] += 1
            raw = whole._fetch(connection, list(self.schemas), True)
        else:
            self.stats["incremental"] += 1
            relations = (
                "(c.oid = ANY($1) OR (c.relkind IN ('i', 'I') AND EXISTS ("
                "SELECT 1 FROM pg_catalog.pg_index x WHERE x.indexrelid = c.oid AND x.indrelid = ANY($1))))"
            )
            text = (
                whole.TEMPLATE.replace("%s::text[]", _schemas_literal(self.schemas))
                .replace("__RELATIONS__", relations)
                .replace("__GLOBALS__", "false")
            )
            array = "{" + ",".join(str(oid) for oid in sorted(dirty)) + "}"
            raw = whole._decode(whole.prepared_value(connection, text, "oid[]", array))
        owners: Owners = {}
        snap = whole.parse(raw, exclude_tables=self.exclude_tables, owners=owners)
        index_owner = {int(row[8]): int(row[0]) for row in raw["indexes"]}
        return snap, owners, index_owner

    def _detect(self, connection: Any) -> dict[str, Any]:
        if self.catalogs is None:
            rows = connection.exec_driver_sql(
                "SELECT c.relname, EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a "
                "WHERE a.attrelid = c.oid AND a.attname = 'oid') FROM pg_catalog.pg_class c "
                "WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r' ORDER BY 1"
            ).all()
            self.catalogs = tuple(
                _pair(name, "true" if name in _WHOLE else f"x.{_FIRST_OID.get(name, 'oid')} >= {_USER}")
                if has_oid or name in _FIRST_OID
                else _pair(name)
                for name, has_oid in rows
                if name not in _HANDLED | _IGNORED
            )
        text = (
            _DETECT.replace("__SCHEMAS__", _schemas_literal(self.schemas))
            .replace("__SETTINGS__", ", ".join(f"current_setting({whole._quote(n)})" for n in _SETTINGS))
            .replace("__PER_RELATION__", ", ".join(_per_relation(*entry) for entry in _PER_RELATION))
            .replace(
                "__ELSEWHERE__",
                ", ".join([_pair("pg_type", f"x.oid >= {_USER} AND {_PLAIN_TYPE}"), *self.catalogs]),
            )
        )
        # before a first snapshot nothing needs to look fresh: it is read whole
        watermark = _XID_SPAN - 1 if self.state is None else self.state.xmin % _XID_SPAN
        value = whole.prepared_value(connection, text, "bigint", str(watermark))
        detected: dict[str, Any] = whole._decode(value)
        # oids come as JSON strings; rows of relations outside the schemas are left out
        rows = detected["relations"] or ()
        relations = {int(oid) for oid, _ in rows}
        written = {int(oid) for oid, fresh in rows if fresh}
        written |= {int(oid) for oid in detected["attributes"] or ()}
        written |= {int(oid) for oid in detected["reached"] or () if oid is not None}
        # a relation renamed, or gone from the schemas (dropped, or moved to another schema),
        # changes the text of what names it
        renamed = self._renamed(detected["names"] or ())
        if self.state is not None:
            renamed |= self.state.relations - relations
        if renamed:
            reached, other = whole.prepared_value(
                connection, _RENAMED, "oid[]", "{" + ",".join(map(str, sorted(renamed))) + "}"
            )
            written |= {int(oid) for oid in reached or () if oid is not None}
            detected["reached_other"] = detected["reached_other"] or other
        counts = []
        for per_relation, fresh in detected["per_relation"]:
            found = {int(oid): n for oid, n in (per_relation or {}).items()}
            counts.append({oid: n for oid, n in found.items() if oid in relations or oid == 0})
            written |= {int(oid) for oid in fresh or () if oid is not None}
        detected["relations"] = relations
        detected["counts"] = counts
        detected["written"] = written
        detected["elsewhere_written"] = any(pair[1] for pair in detected["elsewhere"])
        detected["elsewhere"] = [pair[0] for pair in detected["elsewhere"]]
        return detected

    def _renamed(self, names: Iterable[list[Any]]) -> set[int]:
        """The relations written since the last snapshot whose name or schema may be another
        now (one the last snapshot left out, an excluded table say, counts as renamed)."""
        if self.state is None:
            return set()
        keys: dict[int, str] = {}
        for oid, items in self.state.owners.items():
            for section, key in items:
                if section in ("tables", "views", "sequences"):
                    keys[oid] = key
        renamed = set()
        for oid, schema, name, inside in names:
            oid = int(oid)
            if not inside:  # what it was called is not known here
                renamed.add(oid)
            elif oid in self.state.relations and keys.get(oid) != whole.object_key(schema, name):
                renamed.add(oid)  # (a new one is named by nothing yet)
        return renamed

    def _remember(
        self, detected: dict[str, Any], snap: Snapshot, owners: Owners, index_owner: dict[int, int]
    ) -> None:
        self.small = None
        self.state = _State(
            snapshot=snap,
            owners=owners,
            index_owner=index_owner,
            xmin=int(detected["xmin"]),
            settings=detected["settings"],
            relations=detected["relations"],
            counts=detected["counts"],
            elsewhere=detected["elsewhere"],
        )


def _plan(state: _State, detected: dict[str, Any]) -> set[int] | None:
    """The relations to read again (tables, views, sequences), or None: read it all."""
    now = int(detected["xmin"])
    if now // _XID_SPAN != state.xmin // _XID_SPAN or detected["settings"] != state.settings:
        return None
    if detected["elsewhere_written"] or detected["elsewhere"] != state.elsewhere or detected["reached_other"]:
        return None
    relations: set[int] = detected["relations"]
    changed = detected["written"] & (relations | state.relations)
    # a relation created is written anyway; one removed goes, with all it owned
    changed |= relations ^ state.relations
    for counts, before in zip(detected["counts"], state.counts, strict=True):
        if counts.get(0) != before.get(0):  # rows of no relation: a type, a function, an extension
            return None
        changed |= {oid for oid in counts.keys() | before.keys() if counts.get(oid) != before.get(oid)}
    if 0 in changed:
        return None
    dirty = {state.index_owner.get(oid, oid) for oid in changed}
    if len(dirty) > max(8, (len(relations) - len(state.index_owner)) // 2):
        return None
    return dirty


def merge(
    before: Snapshot, owners: Owners, part: Snapshot, part_owners: Owners, dirty: set[int]
) -> tuple[Snapshot, Owners]:
    """``before`` with the objects of the ``dirty`` relations replaced by those of ``part``,
    which was read for exactly those relations."""
    sections = {name: dict(getattr(before, name)) for name in _SECTIONS}
    merged: Owners = dict(owners)
    for oid in dirty:
        for section, key in merged.pop(oid, ()):
            sections[section].pop(key, None)
    for oid, items in part_owners.items():
        if oid == 0:  # the part was read without the objects of no relation
            continue
        merged[oid] = items
        for section, key in items:
            sections[section][key] = getattr(part, section)[key]
    return Snapshot(**{name: dict(sorted(objects.items())) for name, objects in sections.items()}), merged


def _schemas_literal(schemas: Iterable[str]) -> str:
    return "ARRAY[" + ", ".join(whole._quote(name) for name in schemas) + "]::text[]"


def _verify(connection: Any, tracker: Tracker, snap: Snapshot) -> None:
    full = whole.take(connection, schemas=tracker.schemas, exclude_tables=tracker.exclude_tables)
    if full == snap:
        return
    lines = []
    for name in _SECTIONS:
        mine, theirs = getattr(snap, name), getattr(full, name)
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) != theirs.get(key):
                lines.append(f"{name} {key}: incremental {mine.get(key)!r}, whole {theirs.get(key)!r}")
    message = "incremental snapshot differs from the whole one: " + json.dumps(lines[:20])
    log = os.environ.get(VERIFY_LOG_ENV)
    if log:  # the test suite's record: a check may turn the exception into a verdict
        with open(log, "a", encoding="utf-8") as out:
            out.write(message + "\n")
    raise IncrementalMismatch(message)


_TRACKERS: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Tracker]] = weakref.WeakKeyDictionary()


def take(connection: Any, *, schemas: Iterable[str], exclude_tables: Iterable[str] = ()) -> Snapshot:
    """The snapshot of the database behind ``connection`` (a SQLAlchemy Connection), read
    incrementally from the last one taken through the same DBAPI connection."""
    schemas_t, exclude_t = tuple(schemas), tuple(exclude_tables)
    if not speed.enabled("incremental-snapshot"):
        return whole.take(connection, schemas=schemas_t, exclude_tables=exclude_t)
    from sqlalchemy import exc

    dbapi = whole._dbapi_connection(connection)
    trackers = _TRACKERS.setdefault(dbapi, {})
    tracker = trackers.setdefault((schemas_t, exclude_t), Tracker(schemas_t, exclude_t))
    try:
        return tracker.take(connection)
    except exc.DBAPIError:
        # a server that cannot run the detection (or a broken transaction): read it whole,
        # which reports a broken connection the way every snapshot does
        trackers.pop((schemas_t, exclude_t), None)
        connection.rollback()
        return whole.take(connection, schemas=schemas_t, exclude_tables=exclude_t)


def tracker_of(
    connection: Any, *, schemas: Iterable[str], exclude_tables: Iterable[str] = ()
) -> Tracker | None:
    """The tracker ``take`` uses for this connection (tests read its counts)."""
    trackers = _TRACKERS.get(whole._dbapi_connection(connection), {})
    return trackers.get((tuple(schemas), tuple(exclude_tables)))
