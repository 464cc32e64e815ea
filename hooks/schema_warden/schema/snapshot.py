"""Read a live PostgreSQL schema from pg_catalog into plain frozen dataclasses.

``take(connection)`` runs one catalog query (a single JSON document, so one round trip;
prepared once per session, so it is planned once) and returns a :class:`Snapshot`. Texts are
Postgres's own normalised forms (``format_type``, ``pg_get_expr``, ``pg_get_indexdef``,
``pg_get_constraintdef``, ``pg_get_viewdef``): two databases built from the same schema by
different routes (migrations or ``metadata.create_all``) give the same texts, which is what
makes the snapshots comparable (see schema/diff.py for what is still normalised there).

Keys: ``name`` for objects in schema ``public``, ``schema.name`` otherwise; constraints,
triggers and policies are keyed ``table.name`` (table key as above); functions ``name(argument
types)``; grants by what they read as (``on table readings to reader``). Objects that belong to
an extension (for example ``spatial_ref_sys`` of PostGIS, or the functions and types of pg_trgm)
are left out (pg_depend deptype 'e'): the extension itself is listed, with its version. So are
the excluded tables and everything that belongs to them (their indexes, constraints, triggers,
policies, grants and owned sequences).

Each section of the query is one small subquery over its own catalog; a section with nothing
in it (no functions, no grants) costs one index probe.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, TypeVar

from schema_warden.errors import EnvironmentProblem

DEFAULT_SCHEMA = "public"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type text: "character varying(64)", "numeric(6,2)", enum types by name
    nullable: bool
    default: str | None  # pg_get_expr text; None for generated columns (see ``generated``)
    identity: str | None = None  # "always" | "by default" | None
    generated: str | None = None  # generation expression; "<expr> VIRTUAL" for virtual ones (PG 18)
    collation: str | None = None  # only when not the type's default collation
    comment: str | None = None


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: tuple[Column, ...]  # attnum order; diffs ignore the order
    partitioned: bool = False
    comment: str | None = None
    row_security: bool = False  # ALTER TABLE ... ENABLE ROW LEVEL SECURITY
    force_row_security: bool = False
    partition_key: str | None = None  # pg_get_partkeydef of a partitioned table: "RANGE (at)"
    partition_of: str | None = None  # table key of the parent of a partition
    partition_bound: str | None = None  # "FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')"

    def column(self, name: str) -> Column | None:
        return next((col for col in self.columns if col.name == name), None)


@dataclass(frozen=True)
class Index:
    schema: str
    table: str  # table key (or materialized view key)
    name: str
    definition: str  # pg_get_indexdef
    unique: bool
    primary: bool
    constraint: str | None = None  # name of the PK/UNIQUE/EXCLUDE constraint this index implements
    columns: tuple[str, ...] = ()  # table columns it uses: keys in order, then those in expressions
    comment: str | None = None


@dataclass(frozen=True)
class Constraint:
    schema: str
    table: str  # table key
    name: str
    type: str  # "primary key" | "unique" | "foreign key" | "check" | "exclude"
    definition: str  # pg_get_constraintdef
    columns: tuple[str, ...]
    ref_table: str | None = None  # table key of the referenced table (foreign keys)
    ref_columns: tuple[str, ...] = ()
    comment: str | None = None


@dataclass(frozen=True)
class EnumType:
    schema: str
    name: str
    labels: tuple[str, ...]
    comment: str | None = None


@dataclass(frozen=True)
class Sequence:
    schema: str
    name: str
    data_type: str
    owned_by: str | None  # "table.column" (table key), for serial and identity sequences
    identity: bool = False  # the implicit sequence of an identity column
    start: int = 1
    increment: int = 1
    min_value: int | None = None
    max_value: int | None = None
    cycle: bool = False
    comment: str | None = None


@dataclass(frozen=True)
class View:
    schema: str
    name: str
    definition: str  # pg_get_viewdef
    materialized: bool
    comment: str | None = None


@dataclass(frozen=True)
class Schema:
    name: str
    comment: str | None = None


@dataclass(frozen=True)
class Extension:
    name: str
    version: str
    schema: str  # where its objects live
    comment: str | None = None


@dataclass(frozen=True)
class Domain:
    schema: str
    name: str
    type: str  # format_type of the base type
    nullable: bool
    default: str | None
    checks: tuple[str, ...] = ()  # "name CHECK (...)", by name
    comment: str | None = None


@dataclass(frozen=True)
class Function:
    schema: str
    name: str
    arguments: str  # pg_get_function_identity_arguments: "a integer, b text"
    kind: str  # "function" | "procedure" | "aggregate" | "window function"
    returns: str | None  # pg_get_function_result; None for procedures
    language: str
    body: str  # prosrc; the whole definition for a SQL-standard body (BEGIN ATOMIC)
    volatility: str  # "immutable" | "stable" | "volatile"
    security_definer: bool = False
    config: tuple[str, ...] = ()  # proconfig: "search_path=public, pg_temp"
    comment: str | None = None


@dataclass(frozen=True)
class Trigger:
    schema: str
    table: str  # table key
    name: str
    timing: str  # "BEFORE" | "AFTER" | "INSTEAD OF"
    events: tuple[str, ...]  # "INSERT", "DELETE", "UPDATE", "TRUNCATE" (pg_get_triggerdef's order)
    level: str  # "row" | "statement"
    function: str  # function key without arguments: "touch_updated_at()"
    enabled: str  # "enabled" | "disabled" | "enabled for replica" | "enabled always"
    definition: str  # pg_get_triggerdef: also WHEN, UPDATE OF columns, arguments
    comment: str | None = None


@dataclass(frozen=True)
class Policy:
    schema: str
    table: str  # table key
    name: str
    command: str  # "ALL" | "SELECT" | "INSERT" | "UPDATE" | "DELETE"
    permissive: bool
    roles: tuple[str, ...]  # role names, "PUBLIC"
    using: str | None  # pg_get_expr of USING
    check: str | None  # pg_get_expr of WITH CHECK
    comment: str | None = None


@dataclass(frozen=True)
class Grant:
    """What one grantee holds on one object, when it differs from what it holds by default
    (a GRANT, or a REVOKE of a default such as EXECUTE from PUBLIC on a function)."""

    on: str  # "table" | "view" | "materialized view" | "sequence" | "column" | "schema" | "function"
    #          | "default privileges"
    object: str  # its key (table key, "table.column", schema name, function key); default
    #              privileges: "tables created by postgres in schema public"
    grantee: str  # role name or "PUBLIC"
    privileges: tuple[str, ...]  # what it holds: "SELECT", "INSERT WITH GRANT OPTION", sorted
    default: tuple[str, ...] = ()  # what it would hold without any GRANT or REVOKE
    table: str | None = None  # table key for grants on tables, views, columns (excluded tables)


@dataclass(frozen=True)
class Snapshot:
    tables: dict[str, Table] = field(default_factory=dict)
    indexes: dict[str, Index] = field(default_factory=dict)
    constraints: dict[str, Constraint] = field(default_factory=dict)
    enums: dict[str, EnumType] = field(default_factory=dict)
    sequences: dict[str, Sequence] = field(default_factory=dict)
    views: dict[str, View] = field(default_factory=dict)
    schemas: dict[str, Schema] = field(default_factory=dict)
    extensions: dict[str, Extension] = field(default_factory=dict)
    domains: dict[str, Domain] = field(default_factory=dict)
    functions: dict[str, Function] = field(default_factory=dict)
    triggers: dict[str, Trigger] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (lists for tuples); ``from_dict`` reads it back."""
        return {name: {key: _plain(obj) for key, obj in getattr(self, name).items()} for name in _SECTIONS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        return cls(
            **{
                name: {key: _build(kind, value) for key, value in data.get(name, {}).items()}
                for name, kind in _SECTIONS.items()
            }
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        return cls.from_dict(json.loads(text))


_SECTIONS: dict[str, type] = {
    "tables": Table,
    "indexes": Index,
    "constraints": Constraint,
    "enums": EnumType,
    "sequences": Sequence,
    "views": View,
    "schemas": Schema,
    "extensions": Extension,
    "domains": Domain,
    "functions": Function,
    "triggers": Trigger,
    "policies": Policy,
    "grants": Grant,
}


_FIELDS = {kind: {f.name for f in fields(kind)} for kind in (Column, *_SECTIONS.values())}


def _plain(obj: Any) -> dict[str, Any]:
    # dataclasses.asdict deep-copies every value: five times slower on a 50-table schema
    data = dict(vars(obj))
    for name, value in data.items():
        if isinstance(value, tuple):
            data[name] = [_plain(item) if is_dataclass(item) else item for item in value]
    return data


def _build(kind: type, value: dict[str, Any]) -> Any:
    # unknown keys (a cache written by a newer version) are dropped, missing ones take defaults
    value = {k: v for k, v in value.items() if k in _FIELDS[kind]}
    for name, item in value.items():
        if isinstance(item, list):
            value[name] = tuple(item)
    if kind is Table:
        value["columns"] = tuple(_build(Column, col) for col in value["columns"])
    return kind(**value)


def object_key(schema: str, name: str) -> str:
    """Snapshot key of an object: bare name in ``public``, ``schema.name`` elsewhere."""
    return name if schema == DEFAULT_SCHEMA else f"{schema}.{name}"


def _names(names: Iterable[str]) -> tuple[str, ...]:
    # a lone string is one name, not a sequence of one-letter names
    return (names,) if isinstance(names, str) else tuple(names)


def table_matches(table_key: str, patterns: Iterable[str]) -> bool:
    """True when a table key matches one of the patterns (key or bare name, shell wildcards)."""
    return _matches(table_key, _names(patterns))


@functools.lru_cache(maxsize=4096)
def _matches(table_key: str, patterns: tuple[str, ...]) -> bool:
    bare = table_key.rsplit(".", 1)[-1]
    return any(fnmatch.fnmatchcase(table_key, pat) or fnmatch.fnmatchcase(bare, pat) for pat in patterns)


# One round trip: every section is a JSON array of rows (arrays, not objects, to stay small).
# No "%" anywhere in the text: drivers treat it as a parameter marker. __RELATIONS__ and
# __GLOBALS__ are "true" in the whole query; schema/incremental.py narrows them to the
# relations a step changed, and reads the objects of no relation only when they changed.
TEMPLATE = """
WITH ns AS (
    SELECT oid, nspname, nspacl, nspowner FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s::text[])
), rel AS (
    SELECT c.oid, c.relname, c.relkind, n.nspname, c.relacl, c.relowner, c.relrowsecurity,
           c.relforcerowsecurity, c.relispartition, c.relpartbound
    FROM pg_catalog.pg_class c JOIN ns n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'i', 'I')
      AND c.oid NOT IN (  -- members of extensions; the index on the referenced side finds them
        SELECT d.objid FROM pg_catalog.pg_depend d
        WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass
          AND d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'e')
      AND __RELATIONS__
), fn AS (
    SELECT p.oid, p.proname, p.prokind, p.proacl, p.proowner, n.nspname
    FROM pg_catalog.pg_proc p JOIN ns n ON n.oid = p.pronamespace
    WHERE __GLOBALS__ AND p.oid NOT IN (
        SELECT d.objid FROM pg_catalog.pg_depend d
        WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass
          AND d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e')
), acl AS (  -- every ACL that is not the default, with the default it replaces
    SELECT CASE r.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                ELSE 'table' END AS kind,
           r.oid AS relid, r.nspname AS nsp, r.relname AS name, NULL::text AS sub, r.relacl AS acl,
           pg_catalog.acldefault(CASE WHEN r.relkind = 'S' THEN 's' ELSE 'r' END::"char", r.relowner) AS dflt
    FROM rel r WHERE r.relacl IS NOT NULL AND r.relkind IN ('r', 'p', 'v', 'm', 'S')
    UNION ALL
    SELECT 'column', r.oid, r.nspname, r.relname, a.attname, a.attacl, NULL
    FROM rel r CROSS JOIN LATERAL (  -- by the index, per relation (OFFSET 0 keeps it so)
      SELECT a.attname, a.attacl FROM pg_catalog.pg_attribute a
      WHERE a.attrelid = r.oid AND a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped OFFSET 0) a
    UNION ALL
    SELECT 'schema', NULL, n.nspname, n.nspname, NULL, n.nspacl, pg_catalog.acldefault('n', n.nspowner)
    FROM ns n WHERE n.nspacl IS NOT NULL AND __GLOBALS__
    UNION ALL
    SELECT 'function', NULL, f.nspname, f.proname, pg_catalog.pg_get_function_identity_arguments(f.oid),
           f.proacl, pg_catalog.acldefault('f', f.proowner)
    FROM fn f WHERE f.proacl IS NOT NULL
    UNION ALL  -- per schema they add to the defaults; without a schema they replace them
    SELECT 'default privileges', NULL, n.nspname, pg_catalog.pg_get_userbyid(d.defaclrole),
           d.defaclobjtype::text, d.defaclacl,
           CASE WHEN d.defaclnamespace = 0 THEN pg_catalog.acldefault(
             CASE WHEN d.defaclobjtype = 'S' THEN 's' ELSE d.defaclobjtype END::"char", d.defaclrole) END
    FROM pg_catalog.pg_default_acl d LEFT JOIN ns n ON n.oid = d.defaclnamespace
    WHERE __GLOBALS__ AND (d.defaclnamespace = 0 OR n.oid IS NOT NULL)
)
SELECT json_build_object(
  'tables', (
    SELECT coalesce(json_agg(json_build_array(r.oid, r.nspname, r.relname, r.relkind = 'p', ds.description,
        r.relrowsecurity, r.relforcerowsecurity,
        CASE WHEN r.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(r.oid) END,
        CASE WHEN r.relispartition THEN
          (SELECT json_build_array(pn.nspname, pc.relname) FROM pg_catalog.pg_inherits i
           JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent
           JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace WHERE i.inhrelid = r.oid) END,
        CASE WHEN r.relispartition THEN pg_catalog.pg_get_expr(r.relpartbound, r.oid) END)),
                    '[]')
    FROM rel r
    LEFT JOIN pg_catalog.pg_description ds
      ON ds.objoid = r.oid AND ds.classoid = 'pg_catalog.pg_class'::regclass AND ds.objsubid = 0
    WHERE r.relkind IN ('r', 'p')),
  'columns', (
    SELECT coalesce(json_agg(json_build_array(
        a.attrelid, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
        CASE WHEN a.attgenerated = '' AND a.atthasdef THEN
          (SELECT pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) FROM pg_catalog.pg_attrdef ad
           WHERE ad.adrelid = a.attrelid AND ad.adnum = a.attnum) END,
        a.attidentity,
        CASE WHEN a.attgenerated <> '' THEN
          (SELECT pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) FROM pg_catalog.pg_attrdef ad
           WHERE ad.adrelid = a.attrelid AND ad.adnum = a.attnum)
          || CASE WHEN a.attgenerated = 'v' THEN ' VIRTUAL' ELSE '' END END,
        CASE WHEN a.attcollation <> t.typcollation THEN
          (SELECT CASE WHEN cn.nspname = 'pg_catalog' THEN co.collname
                       ELSE cn.nspname || '.' || co.collname END
           FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
           WHERE co.oid = a.attcollation)
        END,
        ds.description, a.attnum)), '[]')
    FROM pg_catalog.pg_attribute a
    JOIN rel r ON r.oid = a.attrelid AND r.relkind IN ('r', 'p')
    JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_catalog.pg_description ds
      ON ds.objoid = a.attrelid AND ds.classoid = 'pg_catalog.pg_class'::regclass AND ds.objsubid = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped),
  'indexes', (
    SELECT coalesce(json_agg(json_build_array(
        i.indrelid, r.nspname, r.relname, pg_catalog.pg_get_indexdef(i.indexrelid),
        i.indisunique, i.indisprimary, con.conname, i.indkey::int2[], i.indexrelid, ds.description)), '[]')
    FROM pg_catalog.pg_index i
    JOIN rel r ON r.oid = i.indexrelid
    LEFT JOIN pg_catalog.pg_constraint con
      ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x')
    LEFT JOIN pg_catalog.pg_description ds
      ON ds.objoid = i.indexrelid AND ds.classoid = 'pg_catalog.pg_class'::regclass AND ds.objsubid = 0),
  'index_columns', (
    SELECT coalesce(json_agg(json_build_array(d.objid, d.refobjsubid)), '[]')
    FROM pg_catalog.pg_depend d
    JOIN pg_catalog.pg_index i ON i.indexrelid = d.objid AND i.indrelid = d.refobjid
    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
      AND d.refobjsubid > 0 AND i.indexrelid IN (SELECT oid FROM rel)),
  'constraints', (
    SELECT coalesce(json_agg(json_build_array(
        con.conrelid, con.conname, con.contype, pg_catalog.pg_get_constraintdef(con.oid),
        con.conkey, fn.nspname, fc.relname, con.confkey, con.confrelid, ds.description)), '[]')
    FROM pg_catalog.pg_constraint con
    JOIN rel r ON r.oid = con.conrelid
    LEFT JOIN pg_catalog.pg_class fc ON fc.oid = con.confrelid
    LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace
    LEFT JOIN pg_catalog.pg_description ds
      ON ds.objoid = con.oid AND ds.classoid = 'pg_catalog.pg_constraint'::regclass
    WHERE con.contype IN ('p', 'u', 'f', 'c', 'x')),
  'attributes', (
    SELECT coalesce(json_agg(json_build_array(a.attrelid, a.attnum, a.attname)), '[]')
    FROM pg_catalog.pg_attribute a
    WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attrelid IN (
      SELECT r.oid FROM rel r WHERE r.relkind = 'm'
      UNION
      SELECT con.confrelid FROM pg_catalog.pg_constraint con JOIN rel r ON r.oid = con.conrelid
      WHERE con.contype = 'f' AND con.confrelid NOT IN (SELECT oid FROM rel WHERE relkind IN ('r', 'p')))),
  'enums', (
    SELECT coalesce(json_agg(json_build_array(n.nspname, t.typname,
        (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder)
           FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid), ds.description)), '[]')
    FROM pg_catalog.pg_type t JOIN ns n ON n.oid = t.typnamespace
    LEFT JOIN pg_catalog.pg_description ds
      ON ds.objoid = t.oid AND ds.classoid = 'pg_catalog.pg_type'::regclass
    WHERE __GLOBALS__ AND t.typtype = 'e' AND NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_depend d
        WHERE d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')),
  'domains', (
    SELECT coalesce(json_agg(json_build_array(n.nspname, t.typname,
        pg_catalog.format_type(t.typbasetype, t.typtypmod), NOT t.typnotnull,
        coalesce(pg_catalog.pg_get_expr(t.typdefaultbin, 0), t.typdefault),
        (SELECT json_agg(c.conname || ' ' || pg_catalog.pg_get_constraintdef(c.oid) ORDER BY c.conname)
           FROM pg_catalog.pg_constraint c WHERE c.contypid = t.oid AND c.contype = 'c'),
        ds.description)), '[]')
    FROM pg_catalog.pg_type t JOIN ns n ON n.oid = t.typnamespace
    LEFT JOIN pg_catalog.pg_description ds
      ON ds.objoid = t.oid AND ds.classoid = 'pg_catalog.pg_type'::regclass
    WHERE __GLOBALS__ AND t.typtype = 'd' AND NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_depend d
        WHERE d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')),
  'sequences', (
    SELECT coalesce(json_agg(json_build_array(
        r.nspname, r.relname, pg_catalog.format_type(s.seqtypid, NULL),
        d.refobjid, tn.nspname, tc.relname, ta.attname, d.deptype = 'i',
        s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcycle, ds.description, s.seqrelid)), '[]')
    FROM pg_catalog.pg_sequence s
    JOIN rel r ON r.oid = s.seqrelid
    LEFT JOIN pg_catalog.pg_depend d
      ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = s.seqrelid
     AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
    LEFT JOIN pg_catalog.pg_class tc ON tc.oid = d.refobjid
    LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
    LEFT JOIN pg_catalog.pg_attribute ta ON ta.attrelid = d.refobjid AND ta.attnum = d.refobjsubid
    LEFT JOIN pg_catalog.pg_description ds
      ON ds.objoid = s.seqrelid AND ds.classoid = 'pg_catalog.pg_class'::regclass AND ds.objsubid = 0),
  'views', (
    SELECT coalesce(json_agg(json_build_array(
        r.nspname, r.relname, pg_catalog.pg_get_viewdef(r.oid), r.relkind = 'm', r.oid, ds.description)),
        '[]')
    FROM rel r
    LEFT JOIN pg_catalog.pg_description ds
      ON ds.objoid = r.oid AND ds.classoid = 'pg_catalog.pg_class'::regclass AND ds.objsubid = 0
    WHERE r.relkind IN ('v', 'm')),
  'schemas', (
    SELECT coalesce(json_agg(json_build_array(n.nspname, ds.description)), '[]')
    FROM ns n
    LEFT JOIN pg_catalog.pg_description ds
      ON ds.objoid = n.oid AND ds.classoid = 'pg_catalog.pg_namespace'::regclass
    WHERE __GLOBALS__),
  'extensions', (  -- database-wide, whatever schema their objects are in
    SELECT coalesce(json_agg(json_build_array(e.extname, e.extversion, n.nspname, ds.description)), '[]')
    FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
    LEFT JOIN pg_catalog.pg_description ds
      ON ds.objoid = e.oid AND ds.classoid = 'pg_catalog.pg_extension'::regclass
    WHERE __GLOBALS__ AND e.extname <> 'plpgsql'),
  'functions', (
    SELECT coalesce(json_agg(json_build_array(
        f.nspname, f.proname, pg_catalog.pg_get_function_identity_arguments(f.oid), f.prokind,
        CASE WHEN f.prokind <> 'p' THEN pg_catalog.pg_get_function_result(f.oid) END, l.lanname,
        CASE WHEN p.prosrc = '' AND f.prokind IN ('f', 'p') THEN pg_catalog.pg_get_functiondef(f.oid)
             ELSE p.prosrc END,
        p.provolatile, p.prosecdef, p.proconfig, ds.description)), '[]')
    FROM fn f JOIN pg_catalog.pg_proc p ON p.oid = f.oid
    JOIN pg_catalog.pg_language l ON l.oid = p.prolang
    LEFT JOIN pg_catalog.pg_description ds
      ON ds.objoid = f.oid AND ds.classoid = 'pg_catalog.pg_proc'::regclass),
  'triggers', (
    SELECT coalesce(json_agg(json_build_array(
        t.tgrelid, t.tgname, t.tgtype, t.tgenabled, pn.nspname, pp.proname,
        pg_catalog.pg_get_triggerdef(t.oid), ds.description)), '[]')
    FROM pg_catalog.pg_trigger t
    JOIN rel r ON r.oid = t.tgrelid
    JOIN pg_catalog.pg_proc pp ON pp.oid = t.tgfoid
    JOIN pg_catalog.pg_namespace pn ON pn.oid = pp.pronamespace
    LEFT JOIN pg_catalog.pg_description ds
      ON ds.objoid = t.oid AND ds.classoid = 'pg_catalog.pg_trigger'::regclass
    WHERE NOT t.tgisinternal AND NOT EXISTS (  -- a partition's clone of its parent's trigger
        SELECT 1 FROM pg_catalog.pg_depend d
        WHERE d.classid = 'pg_catalog.pg_trigger'::regclass AND d.objid = t.oid
          AND d.refclassid = 'pg_catalog.pg_trigger'::regclass)),
  'policies', (
    SELECT coalesce(json_agg(json_build_array(
        p.polrelid, p.polname, p.polcmd, p.polpermissive,
        (SELECT json_agg(CASE WHEN ro.rid = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(ro.rid) END
                         ORDER BY 1)
           FROM unnest(p.polroles) AS ro(rid)),
        pg_catalog.pg_get_expr(p.polqual, p.polrelid), pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid),
        ds.description)), '[]')
    FROM pg_catalog.pg_policy p
    JOIN rel r ON r.oid = p.polrelid
    LEFT JOIN pg_catalog.pg_description ds
      ON ds.objoid = p.oid AND ds.classoid = 'pg_catalog.pg_policy'::regclass),
  'grants', (
    SELECT coalesce(json_agg(json_build_array(a.kind, a.relid, a.nsp, a.name, a.sub, g.grantee,
        g.privileges, g.defaults)), '[]')
    FROM acl a, LATERAL (
      SELECT CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(e.grantee) END AS grantee,
             json_agg(e.priv ORDER BY e.priv) FILTER (WHERE e.src = 'acl') AS privileges,
             json_agg(e.priv ORDER BY e.priv) FILTER (WHERE e.src = 'default') AS defaults
      FROM (
        SELECT 'acl' AS src, x.grantee,
               x.privilege_type || CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END AS priv
        FROM pg_catalog.aclexplode(a.acl) x
        UNION ALL
        SELECT 'default', x.grantee,
               x.privilege_type || CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END
        FROM pg_catalog.aclexplode(a.dflt) x  -- strict: nothing for no default
      ) e GROUP BY e.grantee) g
    WHERE g.privileges::text IS DISTINCT FROM g.defaults::text)
)
"""

_QUERY = TEMPLATE.replace("__RELATIONS__", "true").replace("__GLOBALS__", "true")

_CONSTRAINT_TYPES = {
    "p": "primary key",
    "u": "unique",
    "f": "foreign key",
    "c": "check",
    "x": "exclude",
}
_IDENTITY = {"a": "always", "d": "by default"}


def take(
    connection: Any,
    *,
    schemas: Iterable[str] = (DEFAULT_SCHEMA,),
    exclude_tables: Iterable[str] = (),
    reuse_plan: bool = True,
) -> Snapshot:
    """Snapshot the schemas of the database behind ``connection``.

    ``connection``: a SQLAlchemy Connection (or Engine) or a DBAPI connection (psycopg2,
    psycopg 3). Runs one read-only catalog query inside the connection's current transaction
    and neither commits nor rolls back. ``exclude_tables``: table keys or bare names, shell
    wildcards allowed (``_prisma_*``).

    ``reuse_plan``: the query is PREPAREd once per session and EXECUTEd after, which skips
    its planning (about two thirds of a take on a small schema). Pass False for a connection
    through PgBouncer in transaction mode, where a session's prepared statements do not follow.
    """
    try:
        raw = _fetch(connection, list(_names(schemas)), reuse_plan)
    except Exception as err:
        if not type(err).__module__.startswith(("psycopg", "sqlalchemy")):
            raise
        first = (str(getattr(err, "orig", None) or err).strip().splitlines() or [type(err).__name__])[0]
        raise EnvironmentProblem(
            f"could not read the schema from pg_catalog: {first}",
            detail="the connection must reach PostgreSQL 12 or newer, outside a failed transaction",
        ) from err
    return parse(raw, exclude_tables=exclude_tables)


# The statements PREPAREd in each DBAPI connection's session, least recently used first.
_PREPARED: weakref.WeakKeyDictionary[Any, OrderedDict[str, None]] = weakref.WeakKeyDictionary()
_PREPARED_KEPT = 32  # beyond that the least recently used one is DEALLOCATEd
_NO_SUCH_STATEMENT = "26000"  # the session's statements were deallocated (DISCARD ALL in a migration)


def prepared_value(
    connection: Any, body: str, param_type: str | None = None, param: str | None = None
) -> Any:
    """The first value of the only row of ``body``, run as a statement PREPAREd once per session
    (planned once: generic plan; ``$1`` of ``param_type`` is ``param`` when given). A session
    whose statements a migration deallocated (``DISCARD ALL``, ``DEALLOCATE ALL``) prepares
    them again: its failed transaction is rolled back, as the caller's reads end in one anyway."""
    name = "schema_warden_" + hashlib.sha256(body.encode()).hexdigest()[:20]
    prepared = _PREPARED.setdefault(_dbapi_connection(connection), OrderedDict())
    call = f"EXECUTE {name}" if param_type is None else f"EXECUTE {name}({_quote(param or '')}::{param_type})"
    for attempt in (1, 2):
        if name not in prepared:
            signature = "" if param_type is None else f"({param_type})"
            _first_value(connection, f"PREPARE {name}{signature} AS {body}", None, fetch=False)
            prepared[name] = None
            while len(prepared) > _PREPARED_KEPT:
                old, _ = prepared.popitem(last=False)
                _first_value(connection, f"DEALLOCATE {old}", None, fetch=False)
        prepared.move_to_end(name)
        try:
            if param_type is not None:  # a generic plan at once (a custom plan costs a planning each)
                _first_value(connection, "SET LOCAL plan_cache_mode = force_generic_plan", None, fetch=False)
            return _first_value(connection, call, None)
        except Exception as err:
            code = getattr(getattr(err, "orig", err), "pgcode", None) or getattr(
                getattr(err, "orig", err), "sqlstate", None
            )
            if attempt == 2 or code != _NO_SUCH_STATEMENT:
                raise
            connection.rollback()
            prepared.clear()
    raise AssertionError("unreachable")


def _fetch(connection: Any, schemas: list[str], reuse_plan: bool) -> dict[str, Any]:
    if hasattr(connection, "dialect") and hasattr(connection, "connect"):  # SQLAlchemy Engine
        with connection.connect() as conn:
            return _fetch(conn, schemas, reuse_plan)
    if not reuse_plan:
        return _decode(_first_value(connection, _QUERY, (schemas,)))
    # The schemas are written into the statement, not passed: a statement without parameters
    # gets Postgres's generic plan at once, planned on the first EXECUTE and never again.
    literal = "ARRAY[" + ", ".join(_quote(name) for name in schemas) + "]::text[]"
    return _decode(prepared_value(connection, _QUERY.replace("%s::text[]", literal)))


def _quote(text: str) -> str:
    # E'' reads backslashes the same whatever standard_conforming_strings says
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _dbapi_connection(connection: Any) -> Any:
    if hasattr(connection, "exec_driver_sql"):  # SQLAlchemy Connection -> pool proxy -> DBAPI
        return connection.connection.dbapi_connection
    return connection


def _first_value(connection: Any, sql: str, params: tuple[Any, ...] | None, *, fetch: bool = True) -> Any:
    """Run one statement; return the first column of its only row (None when ``fetch`` is off)."""
    if hasattr(connection, "exec_driver_sql"):  # SQLAlchemy Connection
        # it hands the driver an empty parameter set, so a "%" of the text (a table named
        # "load%") would read as a parameter marker
        result = (
            connection.exec_driver_sql(sql, params)
            if params
            else connection.exec_driver_sql(sql.replace("%", "%%"))
        )
        return result.one()[0] if fetch else None
    cursor = connection.cursor()
    try:
        if params:
            cursor.execute(sql, params)
        else:
            cursor.execute(sql)
        return cursor.fetchone()[0] if fetch else None
    finally:
        cursor.close()


def _decode(data: Any) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(data) if isinstance(data, (str, bytes)) else data
    return decoded


# System columns a CHECK constraint may name (attnums below 1 are the same in every table).
_SYSTEM_COLUMNS = {-1: "ctid", -2: "xmin", -3: "cmin", -4: "xmax", -5: "cmax", -6: "tableoid"}


# Equal objects of the same kind are shared between snapshots: most of a schema does not
# change from one step of the stairway to the next, and building a frozen dataclass costs
# more than looking up its field values. The objects are immutable, so sharing is safe.
_SHARED: dict[tuple[Any, ...], Any] = {}
_SHARED_LIMIT = 100_000


def _shared(kind: type, values: tuple[Any, ...], key: tuple[Any, ...] | None = None) -> Any:
    """``kind(*values)``, or the equal object made before (``key``: hashable stand-in for values)."""
    memo_key = (kind, *(values if key is None else key))
    found = _SHARED.get(memo_key)
    if found is None:
        if len(_SHARED) >= _SHARED_LIMIT:
            _SHARED.clear()
        found = _SHARED[memo_key] = kind(*values)
    return found


def _key_names(
    # relid is None for a constraint that references no table (its attnums are None too)
    attnames: dict[tuple[int | None, int], str],
    relid: int | None,
    attnums: list[int] | None,
) -> tuple[str, ...]:
    """Column names of a constraint's key, in key order (expression elements, attnum 0, left out)."""
    names = []
    for attnum in attnums or ():
        name = attnames.get((relid, attnum)) if attnum > 0 else _SYSTEM_COLUMNS.get(attnum)
        if name is not None:
            names.append(name)
    return tuple(names)


def _index_columns(
    attnames: dict[tuple[int, int], str], relid: int, indkey: list[int], used: Iterable[int]
) -> tuple[str, ...]:
    """The table columns an index uses: its key columns in key order, then those its
    expressions and predicate use (pg_depend), in column order; each once."""
    keys = list(dict.fromkeys(attnum for attnum in indkey if attnum > 0))
    others = sorted(set(used) - set(keys))
    return tuple(attnames[relid, attnum] for attnum in (*keys, *others) if (relid, attnum) in attnames)


# the objects of no relation (enums, functions, schema grants, ...) are owned by 0
Owners = dict[int, list[tuple[str, str]]]  # relation oid -> (section, key) of each object it owns


def parse(
    raw: dict[str, Any], *, exclude_tables: Iterable[str] = (), owners: Owners | None = None
) -> Snapshot:
    """Build a Snapshot from the catalog query's JSON document (pure).

    ``owners``, when given, receives the relation each object belongs to (its table for
    columns, indexes, constraints, triggers, policies and grants; the sequence or view
    itself), so that schema/incremental.py can replace the objects of one relation."""
    patterns = _names(exclude_tables)
    own: Owners = {} if owners is None else owners

    def owned(oid: int | None, section: str, key: str) -> None:
        own.setdefault(int(oid) if oid else 0, []).append((section, key))  # oids come as JSON strings

    table_keys: dict[int, str] = {}
    table_rows: dict[int, tuple[Any, ...]] = {}
    for oid, schema, name, partitioned, comment, rls, forced, partkey, parent, bound in raw["tables"]:
        key = object_key(schema, name)
        if not _matches(key, patterns):
            table_keys[oid] = key
            parent_key = object_key(parent[0], parent[1]) if parent else None
            table_rows[oid] = (schema, name, partitioned, comment, rls, forced, partkey, parent_key, bound)

    columns: dict[int, list[Column]] = {oid: [] for oid in table_keys}
    column_rows: dict[int, list[tuple[Any, ...]]] = {oid: [] for oid in table_keys}
    # column names by (relation, attnum) for the keys of indexes and constraints
    attnames = {(relid, attnum): name for relid, attnum, name in raw["attributes"]}
    values: tuple[object, ...]  # the field values of each object below, whatever its kind
    for row in raw["columns"]:
        relid, name, type_, nullable, default, identity, generated, collation, comment, attnum = row
        attnames[relid, attnum] = name
        if relid in columns:
            values = (name, type_, nullable, default, _IDENTITY.get(identity), generated, collation, comment)
            columns[relid].append(_shared(Column, values))
            column_rows[relid].append(values)
    tables = {
        table_keys[oid]: _shared(
            Table,
            (schema, name, tuple(columns[oid]), partitioned, comment, *rest),
            (schema, name, *column_rows[oid], partitioned, comment, *rest),
        )
        for oid, (schema, name, partitioned, comment, *rest) in table_rows.items()
    }
    for oid, key in table_keys.items():
        owned(oid, "tables", key)

    indexes: dict[str, Index] = {}
    # materialized views have indexes too (REFRESH ... CONCURRENTLY needs a unique one)
    indexed = {**table_keys, **{row[4]: object_key(row[0], row[1]) for row in raw["views"] if row[3]}}
    expression_columns: dict[int, set[int]] = {}
    for indexrelid, attnum in raw["index_columns"]:
        expression_columns.setdefault(indexrelid, set()).add(attnum)
    for row in raw["indexes"]:
        relid, schema, name, definition, unique, primary, constraint, indkey, indexrelid, comment = row
        if relid in indexed:
            index_columns = _index_columns(attnames, relid, indkey, expression_columns.get(indexrelid, ()))
            values = (schema, indexed[relid], name, definition, unique, primary, constraint, index_columns)
            indexes[object_key(schema, name)] = _shared(Index, (*values, comment))
            owned(relid, "indexes", object_key(schema, name))

    constraints: dict[str, Constraint] = {}
    for relid, name, contype, definition, conkey, ref_schema, ref_name, confkey, ref_relid, comment in raw[
        "constraints"
    ]:
        if relid in table_keys:
            cols = _key_names(attnames, relid, conkey)
            ref_cols = _key_names(attnames, ref_relid, confkey)
            table = table_keys[relid]
            ref_table = object_key(ref_schema, ref_name) if ref_name is not None else None
            values = (tables[table].schema, table, name, _CONSTRAINT_TYPES[contype], definition, cols)
            constraints[f"{table}.{name}"] = _shared(Constraint, (*values, ref_table, ref_cols, comment))
            owned(relid, "constraints", f"{table}.{name}")

    enums = {
        object_key(schema, name): _shared(EnumType, (schema, name, tuple(labels or ()), comment))
        for schema, name, labels, comment in raw["enums"]
    }
    for key in enums:
        owned(0, "enums", key)

    sequences: dict[str, Sequence] = {}
    for row in raw["sequences"]:
        schema, name, data_type, owner_oid, owner_schema, owner_table, owner_column, identity = row[:8]
        start, increment, min_value, max_value, cycle, comment, sequence_oid = row[8:]
        owner_key = object_key(owner_schema, owner_table) if owner_table is not None else None
        if owner_key is not None and owner_oid not in table_keys and _matches(owner_key, patterns):
            continue
        owned_by = f"{owner_key}.{owner_column}" if owner_key is not None else None
        values = (
            schema,
            name,
            data_type,
            owned_by,
            bool(identity),
            start,
            increment,
            min_value,
            max_value,
            cycle,
            comment,
        )
        sequences[object_key(schema, name)] = _shared(Sequence, values)
        owned(sequence_oid, "sequences", object_key(schema, name))

    views = {}
    for schema, name, definition, mat, oid, comment in raw["views"]:
        views[object_key(schema, name)] = _shared(View, (schema, name, definition, mat, comment))
        owned(oid, "views", object_key(schema, name))
    schemas = {name: _shared(Schema, (name, comment)) for name, comment in raw["schemas"]}
    extensions = {row[0]: _shared(Extension, tuple(row)) for row in raw["extensions"]}
    domains = _domains(raw["domains"])
    functions = _functions(raw["functions"])
    for section, objects in (("schemas", schemas), ("extensions", extensions), ("domains", domains)):
        for key in objects:
            owned(0, section, key)
    for key in functions:
        owned(0, "functions", key)
    return Snapshot(
        tables=dict(sorted(tables.items())),
        indexes=dict(sorted(indexes.items())),
        constraints=dict(sorted(constraints.items())),
        enums=dict(sorted(enums.items())),
        sequences=dict(sorted(sequences.items())),
        views=dict(sorted(views.items())),
        schemas=_sorted(schemas),
        extensions=_sorted(extensions),
        domains=_sorted(domains),
        functions=_sorted(functions),
        triggers=_sorted(_triggers(raw["triggers"], table_keys, owned)),
        policies=_sorted(_policies(raw["policies"], table_keys, owned)),
        grants=_sorted(_grants(raw["grants"], table_keys, patterns, owned)),
    )


_Owned = Callable[[int | None, str, str], None]


_T = TypeVar("_T")


def _sorted(section: dict[str, _T]) -> dict[str, _T]:
    return dict(sorted(section.items()))


def _domains(rows: list[list[Any]]) -> dict[str, Domain]:
    return {
        object_key(schema, name): _shared(
            Domain, (schema, name, type_, nullable, default, tuple(checks or ()), comment)
        )
        for schema, name, type_, nullable, default, checks, comment in rows
    }


_FUNCTION_KINDS = {"f": "function", "p": "procedure", "a": "aggregate", "w": "window function"}
_VOLATILITY = {"i": "immutable", "s": "stable", "v": "volatile"}


def function_key(schema: str, name: str, arguments: str) -> str:
    """``touch()``, ``iot.scale(value numeric, factor integer)``: its name and its identity arguments."""
    return object_key(schema, f"{name}({arguments})")


def _functions(rows: list[list[Any]]) -> dict[str, Function]:
    functions = {}
    for schema, name, args, kind, returns, language, body, volatility, definer, config, comment in rows:
        values: tuple[object, ...] = (
            schema,
            name,
            args,
            _FUNCTION_KINDS.get(kind, kind),
            returns,
            language,
            body,
        )
        values += (_VOLATILITY.get(volatility, volatility), definer, tuple(config or ()), comment)
        functions[function_key(schema, name, args)] = _shared(Function, values)
    return functions


# pg_trigger.tgtype bits (catalog/pg_trigger.h)
_ROW, _BEFORE, _INSTEAD = 1, 2, 64
_EVENTS = ((4, "INSERT"), (8, "DELETE"), (16, "UPDATE"), (32, "TRUNCATE"))
_ENABLED = {"O": "enabled", "D": "disabled", "R": "enabled for replica", "A": "enabled always"}


def _triggers(rows: list[list[Any]], table_keys: dict[int, str], owned: _Owned) -> dict[str, Trigger]:
    triggers = {}
    for relid, name, tgtype, enabled, fn_schema, fn_name, definition, comment in rows:
        if relid not in table_keys:
            continue
        table = table_keys[relid]
        timing = "INSTEAD OF" if tgtype & _INSTEAD else "BEFORE" if tgtype & _BEFORE else "AFTER"
        events = tuple(event for bit, event in _EVENTS if tgtype & bit)
        level = "row" if tgtype & _ROW else "statement"
        function = object_key(fn_schema, f"{fn_name}()")
        values: tuple[object, ...] = (_schema_of(table), table, name, timing, events, level, function)
        values += (_ENABLED.get(enabled, enabled), definition, comment)
        triggers[f"{table}.{name}"] = _shared(Trigger, values)
        owned(relid, "triggers", f"{table}.{name}")
    return triggers


_COMMANDS = {"*": "ALL", "r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}


def _policies(rows: list[list[Any]], table_keys: dict[int, str], owned: _Owned) -> dict[str, Policy]:
    policies = {}
    for relid, name, command, permissive, roles, using, check, comment in rows:
        if relid not in table_keys:
            continue
        table = table_keys[relid]
        values: tuple[object, ...] = (
            _schema_of(table),
            table,
            name,
            _COMMANDS.get(command, command),
            permissive,
        )
        values += (tuple(roles or ()), using, check, comment)
        policies[f"{table}.{name}"] = _shared(Policy, values)
        owned(relid, "policies", f"{table}.{name}")
    return policies


_DEFAULT_OBJECTS = {"r": "tables", "S": "sequences", "f": "functions", "T": "types", "n": "schemas"}


def _grants(
    rows: list[list[Any]], table_keys: dict[int, str], patterns: tuple[str, ...], owned: _Owned
) -> dict[str, Grant]:
    grants = {}
    for on, relid, schema, name, sub, grantee, privileges, default in rows:
        table = None
        if on == "default privileges":
            objects = _DEFAULT_OBJECTS.get(sub, sub)
            where = f" in schema {schema}" if schema is not None else ""
            obj = f"{objects} created by {name}{where}"
            key = f"for {obj} to {grantee}"
        else:
            if on == "schema":
                obj = name
            elif on == "function":
                obj = function_key(schema, name, sub)
            else:
                relation = object_key(schema, name)
                if _matches(relation, patterns) or (on in ("table", "column") and relid not in table_keys):
                    continue
                obj = relation if sub is None else f"{relation}.{sub}"
                table = relation if on in ("table", "column") else None
            key = f"on {on} {obj} to {grantee}"
        values = (on, obj, grantee, tuple(privileges or ()), tuple(default or ()), table)
        grants[key] = _shared(Grant, values)
        owned(relid, "grants", key)
    return grants


def _schema_of(table_key: str) -> str:
    return table_key.rsplit(".", 1)[0] if "." in table_key else DEFAULT_SCHEMA
