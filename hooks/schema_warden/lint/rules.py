"""Lint rules: risky operations in one revision's SQL. Pure: SQL text and parsed statements in,
findings out (no files, no git, no database).

"Existing table" means a table not created earlier in the same revision: a revision that
creates a table and indexes it is fine, an index on a table that may hold millions of rows is not.
"""

from __future__ import annotations

import io
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TypeGuard, cast

import pglast
from pglast import ast, visitors
from pglast.enums import AlterTableType, ConstrType, ObjectType
from pglast.stream import RawStream

ERROR = "error"
WARNING = "warning"
SEVERITIES = (ERROR, WARNING)


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    flags: str  # what the rule looks for
    why: str  # what goes wrong on a live database
    safe: str  # the safe alternative


RULES: tuple[Rule, ...] = (
    Rule(
        "ban-drop-table",
        ERROR,
        "DROP TABLE of an existing table",
        "dropping a table loses its rows and breaks the backend still reading it",
        "stop using the table in a deployed release first, back it up, then drop it in a later migration",
    ),
    Rule(
        "ban-drop-column",
        ERROR,
        "ALTER TABLE ... DROP COLUMN",
        "dropping a column loses its data and breaks the backend still reading it",
        "deploy code that no longer reads the column first, then drop it in a later migration",
    ),
    Rule(
        "renaming-table",
        ERROR,
        "ALTER TABLE ... RENAME TO",
        "the backend still deployed queries the old name and fails until it is redeployed",
        "create the new table (or a view under the new name), move readers, drop the old one later",
    ),
    Rule(
        "renaming-column",
        ERROR,
        "ALTER TABLE ... RENAME COLUMN",
        "the backend still deployed queries the old name and fails until it is redeployed",
        "add the new column, write both, backfill, move readers, drop the old column later",
    ),
    Rule(
        "changing-column-type",
        ERROR,
        "ALTER TABLE ... ALTER COLUMN ... TYPE",
        "most type changes rewrite the whole table under an ACCESS EXCLUSIVE lock (reads and writes wait)",
        "add a column of the new type, backfill in batches, switch readers, drop the old column later "
        "(widening varchar(n) or varchar -> text does not rewrite: allow it with a reason)",
    ),
    Rule(
        "adding-required-field",
        ERROR,
        "ADD COLUMN ... NOT NULL without a DEFAULT on an existing table",
        "fails on a table that has rows, and the deployed backend's INSERTs do not fill the column",
        "add the column nullable (or with a constant DEFAULT), backfill, then add NOT NULL in a later step",
    ),
    Rule(
        "adding-not-nullable-field",
        ERROR,
        "ALTER COLUMN ... SET NOT NULL on an existing table",
        "scans the whole table under an ACCESS EXCLUSIVE lock to prove there are no NULLs",
        "ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT; then SET NOT NULL "
        "(PostgreSQL 12+ uses the valid CHECK and skips the scan) and drop the CHECK",
    ),
    Rule(
        "adding-field-with-default",
        ERROR,
        "ADD COLUMN with a volatile DEFAULT (random(), gen_random_uuid(), clock_timestamp(), nextval(), "
        "serial, identity, stored generated) on an existing table",
        "a volatile default is evaluated per row, so the whole table is rewritten under an ACCESS "
        "EXCLUSIVE lock (a constant or now() default is metadata-only since PostgreSQL 11)",
        "add the column without a default, set the default in a second statement, backfill in batches",
    ),
    Rule(
        "require-concurrent-index-creation",
        ERROR,
        "CREATE INDEX without CONCURRENTLY on an existing table",
        "blocks every INSERT, UPDATE and DELETE on the table until the index is built",
        "op.create_index(..., postgresql_concurrently=True) inside "
        "`with op.get_context().autocommit_block():`",
    ),
    Rule(
        "adding-foreign-key-constraint",
        ERROR,
        "a FOREIGN KEY without NOT VALID on an existing table",
        "validating the key scans the table while blocking writes on both tables",
        "op.create_foreign_key(..., postgresql_not_valid=True), then "
        "ALTER TABLE ... VALIDATE CONSTRAINT in a later migration",
    ),
    Rule(
        "constraint-missing-not-valid",
        ERROR,
        "a CHECK constraint without NOT VALID on an existing table",
        "validating the constraint scans the whole table under an ACCESS EXCLUSIVE lock",
        "op.create_check_constraint(..., postgresql_not_valid=True), then "
        "ALTER TABLE ... VALIDATE CONSTRAINT in a later migration",
    ),
    Rule(
        "disallowed-unique-constraint",
        ERROR,
        "ADD CONSTRAINT ... UNIQUE / PRIMARY KEY that builds its index (no USING INDEX) on an existing table",
        "the index is built under an ACCESS EXCLUSIVE lock: reads and writes wait",
        "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... UNIQUE USING INDEX",
    ),
    Rule(
        "ban-truncate",
        ERROR,
        "TRUNCATE of an existing table",
        "deletes every row; databases that apply the migration lose their data",
        "delete the rows you mean with a bounded DELETE ... WHERE, or drop the table deliberately",
    ),
    Rule(
        "delete-without-where",
        ERROR,
        "DELETE without WHERE on an existing table",
        "deletes every row; databases that apply the migration lose their data",
        "add the WHERE clause that selects the rows you mean",
    ),
    Rule(
        "update-without-where",
        WARNING,
        "UPDATE without WHERE on an existing table",
        "rewrites every row in one transaction: long row locks and table bloat on a big table",
        "backfill in batches (UPDATE ... WHERE id BETWEEN ...), or allow it for a small table",
    ),
    Rule(
        "prefer-timestamptz",
        WARNING,
        "timestamp without time zone",
        "values carry no zone: readings from devices and servers in other zones become ambiguous",
        "sa.DateTime(timezone=True) (timestamp with time zone)",
    ),
    Rule(
        "ban-char-field",
        WARNING,
        "char(n)",
        "char(n) pads with spaces and is no faster than varchar or text",
        "sa.String(n) (varchar(n)) or sa.Text()",
    ),
    Rule(
        "prefer-bigint-over-int",
        WARNING,
        "an integer/smallint/serial single-column primary key",
        "a 32-bit key runs out at 2,147,483,647 rows; changing it later rewrites the table "
        "and every table referencing it",
        "sa.BigInteger() with sa.Identity() (bigint generated by default as identity)",
    ),
)

# Not a SQL rule: the command reports it for a revision whose upgrade() fails in --sql mode.
UNRENDERABLE = Rule(
    "unrenderable-revision",
    ERROR,
    "a revision whose upgrade() fails in --sql (offline) mode",
    "its SQL cannot be checked (upgrade() reads from the database, or fails)",
    "guard data reads with `if not context.is_offline_mode():`, or allow it with a reason",
)

RULES_BY_ID: dict[str, Rule] = {rule.id: rule for rule in (*RULES, UNRENDERABLE)}

# Not lint rules, but names an allow comment may carry for other checks of schema-warden
# (`schema-warden check` uses "data-loss" for a revision allowed to lose rows;
# `schema-warden secrets` skips a line marked "allow secret").
OTHER_ALLOW_NAMES = frozenset({"data-loss", "secret"})
ALLOW_FORMAT = "# schema-warden: allow RULE -- reason"

VOLATILE_FUNCTIONS = frozenset(
    {
        "random",
        "random_normal",
        "gen_random_uuid",
        "uuidv4",
        "uuidv7",
        "uuid_generate_v1",
        "uuid_generate_v1mc",
        "uuid_generate_v4",
        "gen_random_bytes",
        "clock_timestamp",
        "timeofday",
        "nextval",
        "txid_current",
        "pg_current_xact_id",
    }
)
SERIAL_TYPES = frozenset({"serial", "serial4", "serial8", "bigserial", "smallserial", "serial2"})
SMALL_INT_TYPES = frozenset(
    {"int2", "int4", "smallint", "integer", "serial", "serial4", "smallserial", "serial2"}
)


class SqlSyntaxError(ValueError):
    """The SQL could not be parsed by PostgreSQL's parser."""


@dataclass(frozen=True)
class Statement:
    sql: str  # the statement's own text, as rendered
    node: ast.Node


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    statement: str  # one line, shortened
    target: str  # the table or table.column concerned
    why: str
    safe: str
    allowed: str | None = None  # the reason of the allow comment that accepts it

    def line(self) -> str:
        rule = self.rule if self.severity == ERROR else f"{self.rule} ({self.severity})"
        text = f"{rule}: {self.statement} — {self.why}; safe: {self.safe}"
        if self.allowed is not None:
            text += f" [allowed: {self.allowed}]"
        return text


@dataclass(frozen=True)
class Allow:
    line: int
    rules: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class AllowProblem:
    line: int
    message: str


def parse_statements(sql: str) -> list[Statement]:
    """Split and parse SQL with PostgreSQL's own parser (pglast)."""
    try:
        raws = pglast.parse_sql(sql)
    except pglast.parser.ParseError as err:
        raise SqlSyntaxError(str(err)) from None
    statements = []
    for raw in raws:
        # pglast types every node field optional; the parser sets these on each raw statement
        start, node = cast(int, raw.stmt_location), cast(ast.Node, raw.stmt)
        end = start + raw.stmt_len if raw.stmt_len else len(sql)
        statements.append(Statement(sql[start:end].strip(), node))
    return statements


def rule_matches(name: str, rule_id: str) -> bool:
    """``drop-column`` names ``ban-drop-column``: the ``ban-`` prefix may be left out."""
    return name == rule_id or f"ban-{name}" == rule_id


def resolve_rule(name: str) -> str | None:
    for rule in RULES_BY_ID.values():
        if rule_matches(name, rule.id):
            return rule.id
    return None


def parse_allows(source: str) -> tuple[list[Allow], list[AllowProblem]]:
    """``# schema-warden: allow drop-column, renaming-column -- reason`` comments of a migration file."""
    allows: list[Allow] = []
    problems: list[AllowProblem] = []
    for lineno, comment in _comments(source):
        body = comment.lstrip("#").strip()
        if not body.startswith("schema-warden:"):
            continue
        directive = body.removeprefix("schema-warden:").strip()
        if not directive.startswith("allow"):
            problems.append(AllowProblem(lineno, f"unknown schema-warden directive; write '{ALLOW_FORMAT}'"))
            continue
        names_part, sep, reason = directive.removeprefix("allow").partition("--")
        names = tuple(n for n in names_part.replace(",", " ").split() if n)
        reason = reason.strip()
        if not names:
            problems.append(AllowProblem(lineno, f"allow comment names no rule: write '{ALLOW_FORMAT}'"))
            continue
        unknown = [n for n in names if resolve_rule(n) is None and n not in OTHER_ALLOW_NAMES]
        if unknown:
            problems.append(
                AllowProblem(
                    lineno, f"allow comment names unknown rule {', '.join(unknown)}; rules: {_rule_list()}"
                )
            )
            continue
        if not sep or not reason:
            problems.append(
                AllowProblem(
                    lineno,
                    f"allow {' '.join(names)} has no reason: write '# schema-warden: allow "
                    f"{' '.join(names)} -- why it is safe here'",
                )
            )
            continue
        allows.append(Allow(lineno, names, reason))
    return allows, problems


def allowed_reason(allows: Iterable[Allow], rule_id: str) -> str | None:
    for allow in allows:
        if any(rule_matches(name, rule_id) or name == rule_id for name in allow.rules):
            return allow.reason
    return None


def configure(
    findings: Iterable[Finding],
    *,
    ignore: Iterable[str] = (),
    warn: Iterable[str] = (),
    error: Iterable[str] = (),
    allows: Iterable[Allow] = (),
) -> list[Finding]:
    """Apply rule selection (lint-ignore / lint-warn / lint-error) and a file's allow comments."""
    ignore, warn, error, allows = set(ignore), set(warn), set(error), list(allows)
    result = []
    for finding in findings:
        if any(rule_matches(name, finding.rule) for name in ignore):
            continue
        if any(rule_matches(name, finding.rule) for name in warn):
            finding = replace(finding, severity=WARNING)
        elif any(rule_matches(name, finding.rule) for name in error):
            finding = replace(finding, severity=ERROR)
        reason = allowed_reason(allows, finding.rule)
        if reason is not None:
            finding = replace(finding, allowed=reason)
        result.append(finding)
    return result


def unknown_rule_names(names: Iterable[str]) -> list[str]:
    return [name for name in names if resolve_rule(name) is None]


def lint(statements: Iterable[Statement], *, version_table: str = "alembic_version") -> list[Finding]:
    """Findings of one revision's statements, in statement order."""
    checker = _Checker(version_table)
    for statement in statements:
        checker.statement(statement)
    return checker.findings


def _rule_list() -> str:
    return ", ".join(RULES_BY_ID)


def _comments(source: str) -> Iterator[tuple[int, str]]:
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                yield token.start[0], token.string
    except (tokenize.TokenError, SyntaxError):
        # an unfinished file: fall back to plain lines (Alembic will report the real error)
        for lineno, text in enumerate(source.splitlines(), 1):
            stripped = text.strip()
            if stripped.startswith("#"):
                yield lineno, stripped


def _one_line(sql: str, limit: int = 140) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _type_name(type_name: ast.TypeName | None) -> str:
    if type_name is None or not type_name.names:
        return ""
    name: str = type_name.names[-1].sval
    return name.lower()


def _table_key(relation: ast.RangeVar) -> tuple[str | None, str]:
    # pglast types every node field optional; the parser always names a relation
    return relation.schemaname, cast(str, relation.relname)


def _display(relation: ast.RangeVar) -> str:
    schema, name = _table_key(relation)
    return f"{schema}.{name}" if schema else name


def _printed(node: ast.Node) -> str | None:
    """A node as SQL text (pglast's printer), None if the printer cannot print it alone."""
    try:
        return _one_line(RawStream()(node))
    except Exception:
        return None


def _functions_called(node: ast.Node | None) -> list[str]:
    names: list[str] = []
    if node is None:
        return names

    class _Calls(visitors.Visitor):
        def visit_FuncCall(self, ancestors: visitors.Ancestor, call: ast.FuncCall) -> None:
            # pglast types every node field optional; a function call always has a name
            funcname = cast("tuple[ast.String, ...]", call.funcname)
            names.append(cast(str, funcname[-1].sval).lower())

    _Calls()(node)
    return names


class _Checker:
    """Walks one revision's statements in order, remembering the tables it creates."""

    def __init__(self, version_table: str) -> None:
        self.version_table = version_table
        self.created: set[tuple[str | None, str]] = set()
        self.findings: list[Finding] = []
        self.current = ""
        self.part: str | None = None  # the part of the current statement a finding is about

    # -- bookkeeping
    def created_here(self, relation: ast.RangeVar | None) -> bool:
        if relation is None:
            return False
        schema, name = _table_key(relation)
        return any(n == name and (s is None or schema is None or s == schema) for s, n in self.created)

    def existing(self, relation: ast.RangeVar | None) -> TypeGuard[ast.RangeVar]:
        """A table not created earlier in this revision (the version table does not count)."""
        return (
            relation is not None and not self.created_here(relation) and not self.is_version_table(relation)
        )

    def is_version_table(self, relation: ast.RangeVar | None) -> bool:
        return relation is not None and relation.relname == self.version_table

    def flag(self, rule_id: str, target: str) -> None:
        rule = RULES_BY_ID[rule_id]
        statement = self.part or _one_line(self.current)
        self.findings.append(Finding(rule.id, rule.severity, statement, target, rule.why, rule.safe))

    # -- statements
    def statement(self, statement: Statement) -> None:
        self.current = statement.sql
        node = statement.node
        handler = getattr(self, f"on_{type(node).__name__}", None)
        if handler is not None:
            handler(node)

    def on_CreateStmt(self, node: ast.CreateStmt) -> None:
        relation = cast(ast.RangeVar, node.relation)  # pglast types it optional; CREATE TABLE has one
        if self.is_version_table(relation):
            return
        self.created.add(_table_key(relation))
        table = _display(relation)
        primary: set[str] = set()
        for element in node.tableElts or ():
            if isinstance(element, ast.Constraint) and element.contype == ConstrType.CONSTR_PRIMARY:
                keys = [k.sval for k in element.keys or ()]
                if len(keys) == 1:
                    primary.add(keys[0])
        for element in node.tableElts or ():
            if isinstance(element, ast.ColumnDef):
                inline = any(c.contype == ConstrType.CONSTR_PRIMARY for c in element.constraints or ())
                # the column itself, not the first 140 characters of a long CREATE TABLE
                column = _printed(element)
                self.part = f"CREATE TABLE {table} (... {column} ...)" if column else None
                self.column_types(table, element, primary_key=inline or element.colname in primary)
        self.part = None

    def on_CreateTableAsStmt(self, node: ast.CreateTableAsStmt) -> None:
        if node.into is not None and node.into.rel is not None:
            self.created.add(_table_key(node.into.rel))

    def on_AlterTableStmt(self, node: ast.AlterTableStmt) -> None:
        relation = cast(ast.RangeVar, node.relation)  # pglast types it optional; ALTER TABLE has one
        if node.objtype != ObjectType.OBJECT_TABLE or self.is_version_table(relation):
            return
        existing = self.existing(relation)
        table = _display(relation)
        cmds = node.cmds or ()
        for cmd in cmds:
            subtype = cmd.subtype
            # one ALTER TABLE may carry many commands: show the one a finding is about
            self.part = (
                _printed(ast.AlterTableStmt(relation=relation, cmds=(cmd,), objtype=node.objtype))
                if len(cmds) > 1
                else None
            )
            if subtype == AlterTableType.AT_AddColumn:
                self.add_column(table, cmd.def_, existing)
            elif subtype == AlterTableType.AT_DropColumn and existing:
                self.flag("ban-drop-column", f"{table}.{cmd.name}")
            elif subtype == AlterTableType.AT_AlterColumnType:
                self.column_types(table, cmd.def_, primary_key=False, name=cmd.name)
                if existing:
                    self.flag("changing-column-type", f"{table}.{cmd.name}")
            elif subtype == AlterTableType.AT_SetNotNull and existing:
                self.flag("adding-not-nullable-field", f"{table}.{cmd.name}")
            elif subtype == AlterTableType.AT_AddConstraint and existing:
                self.add_constraint(table, cmd.def_)
        self.part = None

    def add_column(self, table: str, column: ast.ColumnDef, existing: bool) -> None:
        constraints = list(column.constraints or ())
        kinds = {c.contype for c in constraints}
        primary = ConstrType.CONSTR_PRIMARY in kinds
        self.column_types(table, column, primary_key=primary)
        if not existing:
            return
        target = f"{table}.{column.colname}"
        default = next((c for c in constraints if c.contype == ConstrType.CONSTR_DEFAULT), None)
        serial = _type_name(column.typeName) in SERIAL_TYPES
        identity = ConstrType.CONSTR_IDENTITY in kinds
        generated = ConstrType.CONSTR_GENERATED in kinds
        not_null = column.is_not_null or ConstrType.CONSTR_NOTNULL in kinds or primary
        volatile = default is not None and any(
            name in VOLATILE_FUNCTIONS for name in _functions_called(default.raw_expr)
        )
        if volatile or serial or identity or generated:
            self.flag("adding-field-with-default", target)
        elif not_null and default is None:
            self.flag("adding-required-field", target)
        for constraint in constraints:
            self.add_constraint(table, constraint)

    def add_constraint(self, table: str, constraint: ast.Constraint) -> None:
        name = table
        if constraint.contype == ConstrType.CONSTR_FOREIGN and not constraint.skip_validation:
            self.flag("adding-foreign-key-constraint", name)
        elif constraint.contype == ConstrType.CONSTR_CHECK and not constraint.skip_validation:
            self.flag("constraint-missing-not-valid", name)
        elif (
            constraint.contype in (ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_PRIMARY)
            and not constraint.indexname
        ):
            self.flag("disallowed-unique-constraint", name)

    def column_types(
        self, table: str, coldef: ast.ColumnDef | None, *, primary_key: bool, name: str | None = None
    ) -> None:
        if coldef is None:
            return
        target = f"{table}.{name or coldef.colname}"
        type_name = _type_name(coldef.typeName)
        if type_name == "timestamp":
            self.flag("prefer-timestamptz", target)
        elif type_name == "bpchar":
            self.flag("ban-char-field", target)
        elif primary_key and type_name in SMALL_INT_TYPES:
            self.flag("prefer-bigint-over-int", target)

    def on_RenameStmt(self, node: ast.RenameStmt) -> None:
        if not self.existing(node.relation) or self.is_version_table(node.relation):
            return
        table = _display(node.relation)
        if node.renameType == ObjectType.OBJECT_TABLE:
            self.flag("renaming-table", table)
        elif node.renameType == ObjectType.OBJECT_COLUMN:
            self.flag("renaming-column", f"{table}.{node.subname}")

    def on_DropStmt(self, node: ast.DropStmt) -> None:
        if node.removeType != ObjectType.OBJECT_TABLE:
            return
        for names in node.objects or ():
            parts = [part.sval for part in names]
            relation = ast.RangeVar(relname=parts[-1], schemaname=parts[-2] if len(parts) > 1 else None)
            if self.existing(relation):
                self.flag("ban-drop-table", _display(relation))

    def on_IndexStmt(self, node: ast.IndexStmt) -> None:
        if not node.concurrent and self.existing(node.relation):
            self.flag("require-concurrent-index-creation", _display(node.relation))

    def on_TruncateStmt(self, node: ast.TruncateStmt) -> None:
        for relation in node.relations or ():
            if self.existing(relation):
                self.flag("ban-truncate", _display(relation))

    def on_DeleteStmt(self, node: ast.DeleteStmt) -> None:
        if (
            node.whereClause is None
            and self.existing(node.relation)
            and not self.is_version_table(node.relation)
        ):
            self.flag("delete-without-where", _display(node.relation))

    def on_UpdateStmt(self, node: ast.UpdateStmt) -> None:
        if (
            node.whereClause is None
            and self.existing(node.relation)
            and not self.is_version_table(node.relation)
        ):
            self.flag("update-without-where", _display(node.relation))
