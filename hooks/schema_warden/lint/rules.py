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
from pglast.enums import AlterTableType, ConstrType, NullTestType, ObjectType, TransactionStmtKind
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
        "(widening varchar(n) or varchar -> text does not rewrite: `schema-warden lint --trace` "
        "proves it and does not flag it)",
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
        "ALTER COLUMN ... SET NOT NULL on an existing table without a validated "
        "CHECK (col IS NOT NULL) earlier in the revision (or, traced, in the database)",
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
        "require-concurrent-index-deletion",
        ERROR,
        "DROP INDEX without CONCURRENTLY of an index not created in the same revision",
        "takes an ACCESS EXCLUSIVE lock on the index's table: every read and write waits for it",
        "op.drop_index(..., postgresql_concurrently=True) inside `with op.get_context().autocommit_block():`",
    ),
    Rule(
        "require-lock-timeout",
        WARNING,
        "a statement that takes an ACCESS EXCLUSIVE lock on an existing table with no lock_timeout "
        "set earlier in the revision",
        "while it waits for a long query to release the table, every later query on the table queues "
        "behind it: a short statement stalls the whole application",
        "op.execute(\"SET lock_timeout = '2s'\") at the start of upgrade() (retry the deploy when it "
        "times out)",
    ),
    Rule(
        "concurrently-in-transaction",
        ERROR,
        "CREATE INDEX / DROP INDEX / REINDEX ... CONCURRENTLY inside a transaction block",
        "PostgreSQL refuses it at run time (CONCURRENTLY cannot run inside a transaction block): "
        "the deploy fails half-way",
        "run it inside `with op.get_context().autocommit_block():`",
    ),
    Rule(
        "adding-foreign-key-constraint",
        ERROR,
        "a FOREIGN KEY without NOT VALID on an existing table (one that holds rows in production)",
        "validating the key scans the table while blocking writes on both tables",
        "op.create_foreign_key(..., postgresql_not_valid=True), then "
        "ALTER TABLE ... VALIDATE CONSTRAINT in a later migration",
    ),
    Rule(
        "constraint-missing-not-valid",
        ERROR,
        "a CHECK constraint without NOT VALID on an existing table, or VALIDATE CONSTRAINT in the "
        "transaction that added it NOT VALID",
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

# Rules with a page of their own (why it matters, the safe way, an example): docs/rules/<id>.md
DOCS_DIR = "docs/rules"
DOCUMENTED = frozenset(
    {
        "require-concurrent-index-deletion",
        "require-lock-timeout",
        "concurrently-in-transaction",
        "adding-foreign-key-constraint",
        "adding-not-nullable-field",
        "changing-column-type",
    }
)


def doc_page(rule_id: str) -> str | None:
    """The rule's documentation page, relative to the repository root, when it has one."""
    return f"{DOCS_DIR}/{rule_id}.md" if rule_id in DOCUMENTED else None


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
class Lock:
    """A lock a traced statement took on a relation (pg_locks of its own backend)."""

    relation: str
    mode: str  # as pg_locks names it: AccessExclusiveLock, ShareLock, ...
    kind: str = "table"  # "table" or "index"
    existed: bool = True  # the relation existed before the revision started

    def label(self) -> str:
        """``ACCESS EXCLUSIVE`` for ``AccessExclusiveLock``."""
        words = "".join(f" {c}" if c.isupper() else c for c in self.mode.removesuffix("Lock"))
        return words.strip().upper()


ACCESS_EXCLUSIVE = "AccessExclusiveLock"


@dataclass(frozen=True)
class Facts:
    """What a statement did on the throwaway server (proof/trace.py), instead of a guess."""

    locks: tuple[Lock, ...] = ()  # locks it took that its backend did not hold before it
    rewritten: tuple[str, ...] = ()  # tables whose relfilenode changed
    duration_s: float = 0.0
    in_transaction: bool | None = None  # None: not known
    error: str | None = None  # the statement failed with this message
    transaction: int | None = None  # which transaction of the revision it ran in (0, 1, ...)

    def access_exclusive(self) -> list[str]:
        """Existing tables it holds ACCESS EXCLUSIVE on."""
        return [
            lock.relation
            for lock in self.locks
            if lock.mode == ACCESS_EXCLUSIVE and lock.existed and lock.kind == "table"
        ]

    def risky(self) -> bool:
        return bool(self.access_exclusive() or self.rewritten or self.error)

    def summary(self) -> str:
        """``ACCESS EXCLUSIVE on readings, table rewritten``."""
        exclusive = self.access_exclusive()
        parts = [f"ACCESS EXCLUSIVE on {', '.join(exclusive)}"] if exclusive else []
        if self.rewritten:
            parts.append(f"table {', '.join(self.rewritten)} rewritten")
        if self.error:
            parts.append(f"failed: {self.error}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Statement:
    sql: str  # the statement's own text, as rendered (or as traced)
    node: ast.Node
    line: int | None = None  # line of the migration file whose op.* call sent it, when known
    facts: Facts | None = None  # what it did on the throwaway server, when traced


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    statement: str  # one line, shortened
    target: str  # the table or table.column concerned
    why: str
    safe: str
    allowed: str | None = None  # the reason of the allow comment that accepts it
    source_line: int | None = None  # line of the migration file, when known
    traced: str | None = None  # what the trace saw the statement do

    def line(self) -> str:
        rule = self.rule if self.severity == ERROR else f"{self.rule} ({self.severity})"
        text = f"{rule}: {self.statement} — {self.why}"
        if self.traced:
            text += f" (traced: {self.traced})"
        text += f"; safe: {self.safe}"
        page = doc_page(self.rule)
        if page is not None:
            text += f"; see {page}"
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


def lint(
    statements: Iterable[Statement],
    *,
    version_table: str = "alembic_version",
    not_null_checked: Iterable[str] = (),
) -> list[Finding]:
    """Findings of one revision's statements, in statement order.

    ``not_null_checked``: ``table.column`` pairs the database already has a validated
    ``CHECK (column IS NOT NULL)`` for (known from a trace), so SET NOT NULL skips its scan.
    """
    checker = _Checker(version_table)
    checker.not_null_checked.update(not_null_checked)
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


def statement_line(sql: str) -> str:
    """A statement as one line, shortened, as findings show it."""
    return _shortened(sql)


def _shortened(sql: str, limit: int = 140) -> str:
    """All of a statement on one line (not only its first), cut at ``limit``."""
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
        return _shortened(RawStream()(node))
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


# ALTER TABLE commands that take less than ACCESS EXCLUSIVE (PostgreSQL's ALTER TABLE page)
_WEAKER = frozenset(
    {
        AlterTableType.AT_ValidateConstraint,  # SHARE UPDATE EXCLUSIVE
        AlterTableType.AT_SetStatistics,
        AlterTableType.AT_ClusterOn,
        AlterTableType.AT_DropCluster,
        AlterTableType.AT_SetOptions,
        AlterTableType.AT_ResetOptions,
        AlterTableType.AT_AttachPartition,
        AlterTableType.AT_EnableTrig,  # SHARE ROW EXCLUSIVE
        AlterTableType.AT_DisableTrig,
    }
)


def _weaker_lock(cmd: ast.AlterTableCmd) -> bool:
    if cmd.subtype in _WEAKER:
        return True
    # ADD FOREIGN KEY takes SHARE ROW EXCLUSIVE
    constraint = cmd.def_
    return (
        cmd.subtype == AlterTableType.AT_AddConstraint
        and isinstance(constraint, ast.Constraint)
        and constraint.contype == ConstrType.CONSTR_FOREIGN
    )


def _const_text(node: ast.Node) -> str:
    if isinstance(node, ast.A_Const):
        value = node.val
        for attr in ("sval", "ival", "fval"):
            found = getattr(value, attr, None)
            if found is not None:
                return str(found).strip().lower()
    return (_printed(node) or "").strip("'").lower()


class _Checker:
    """Walks one revision's statements in order, remembering the tables it creates."""

    def __init__(self, version_table: str) -> None:
        self.version_table = version_table
        self.created: set[tuple[str | None, str]] = set()
        self.findings: list[Finding] = []
        self.current = ""
        self.part: str | None = None  # the part of the current statement a finding is about
        self.line: int | None = None
        self.facts: Facts | None = None
        self.indexes_created: set[str] = set()
        self.not_null_checked: set[str] = set()  # table.column with a validated IS NOT NULL check
        self.unvalidated: dict[str, str] = {}  # NOT VALID IS NOT NULL checks: name -> table.column
        self.not_valid: dict[str, int] = {}  # NOT VALID constraints of existing tables: name -> transaction
        self.transaction = 0  # offline: the number of BEGIN / COMMIT / ROLLBACK seen
        self.lock_timeout = False  # a non-zero lock_timeout is set
        self.lock_timeout_flagged = False
        self.in_transaction = False  # offline SQL: inside BEGIN ... COMMIT
        self.exclusive: list[str] = []  # offline: existing tables the statement locks ACCESS EXCLUSIVE

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
        statement = self.part or _shortened(self.current)
        facts = self.facts
        traced = facts.summary() if facts is not None and facts.risky() else None
        self.findings.append(
            Finding(rule.id, rule.severity, statement, target, rule.why, rule.safe, None, self.line, traced)
        )

    def current_transaction(self) -> int:
        facts = self.facts
        if facts is not None and facts.transaction is not None:
            return facts.transaction
        return self.transaction

    def in_transaction_block(self) -> bool:
        facts = self.facts
        if facts is not None and facts.in_transaction is not None:
            return facts.in_transaction
        return self.in_transaction

    def rewrote(self, guess: bool) -> bool:
        """Traced: whether the statement rewrote a table; offline: the rule's guess."""
        return guess if self.facts is None else bool(self.facts.rewritten)

    # -- statements
    def statement(self, statement: Statement) -> None:
        self.current = statement.sql
        self.line = statement.line
        self.facts = statement.facts
        self.exclusive = []
        node = statement.node
        handler = getattr(self, f"on_{type(node).__name__}", None)
        if handler is not None:
            handler(node)
        self.part = None
        exclusive = self.exclusive if self.facts is None else self.facts.access_exclusive()
        exclusive = [t for t in exclusive if t.split(".")[-1] != self.version_table]
        if exclusive and not self.lock_timeout and not self.lock_timeout_flagged:
            self.lock_timeout_flagged = True
            self.flag("require-lock-timeout", ", ".join(exclusive))

    def on_VariableSetStmt(self, node: ast.VariableSetStmt) -> None:
        if (node.name or "").lower() != "lock_timeout":
            return
        values = [_const_text(arg) for arg in node.args or ()]
        self.lock_timeout = bool(values) and all(v not in ("0", "0s", "0ms", "") for v in values)

    def on_SelectStmt(self, node: ast.SelectStmt) -> None:
        # SELECT set_config('lock_timeout', '2s', false)
        text = (_printed(node) or "").lower()
        if "set_config('lock_timeout'" in text.replace(" ", ""):
            self.lock_timeout = "'0'" not in text

    def on_TransactionStmt(self, node: ast.TransactionStmt) -> None:
        if node.kind in (
            TransactionStmtKind.TRANS_STMT_BEGIN,
            TransactionStmtKind.TRANS_STMT_START,
            TransactionStmtKind.TRANS_STMT_COMMIT,
            TransactionStmtKind.TRANS_STMT_ROLLBACK,
        ):
            self.transaction += 1
        if node.kind in (TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START):
            self.in_transaction = True
        elif node.kind in (
            TransactionStmtKind.TRANS_STMT_COMMIT,
            TransactionStmtKind.TRANS_STMT_ROLLBACK,
            TransactionStmtKind.TRANS_STMT_PREPARE,
        ):
            self.in_transaction = False

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
        if existing and any(not _weaker_lock(cmd) for cmd in cmds):
            self.exclusive.append(table)
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
                if existing and self.rewrote(True):
                    self.flag("changing-column-type", f"{table}.{cmd.name}")
            elif subtype == AlterTableType.AT_SetNotNull and existing:
                if not self.checked_not_null(relation, cast(str, cmd.name)):
                    self.flag("adding-not-nullable-field", f"{table}.{cmd.name}")
            elif subtype == AlterTableType.AT_AddConstraint:
                self.remember_not_null_check(table, cmd.def_)
                if existing:
                    self.add_constraint(table, cmd.def_)
                    constraint = cmd.def_
                    if isinstance(constraint, ast.Constraint) and constraint.skip_validation:
                        self.not_valid[constraint.conname or ""] = self.current_transaction()
            elif subtype == AlterTableType.AT_ValidateConstraint:
                name = cast(str, cmd.name)
                if self.not_valid.get(name) == self.current_transaction():
                    # its ADD took ACCESS EXCLUSIVE, held until commit: the scan runs under it
                    self.flag("constraint-missing-not-valid", f"{table}.{name}")
                if name in self.unvalidated:
                    self.not_null_checked.add(self.unvalidated.pop(name))
        self.part = None

    def checked_not_null(self, relation: ast.RangeVar, column: str) -> bool:
        schema, name = _table_key(relation)
        keys = {f"{name}.{column}", f"{schema}.{name}.{column}" if schema else f"public.{name}.{column}"}
        return bool(keys & self.not_null_checked)

    def remember_not_null_check(self, table: str, constraint: ast.Constraint | None) -> None:
        """``CHECK (col IS NOT NULL)``: valid now, or once VALIDATE CONSTRAINT ran."""
        if constraint is None or constraint.contype != ConstrType.CONSTR_CHECK:
            return
        test = constraint.raw_expr
        if not isinstance(test, ast.NullTest) or test.nulltesttype != NullTestType.IS_NOT_NULL:
            return
        if not isinstance(test.arg, ast.ColumnRef) or not test.arg.fields:
            return
        column = getattr(test.arg.fields[-1], "sval", None)
        if column is None:
            return
        key = f"{table}.{column}"
        if constraint.skip_validation:
            self.unvalidated[constraint.conname or ""] = key
        else:
            self.not_null_checked.add(key)

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
        if (volatile or serial or identity or generated) and self.rewrote(True):
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
        if node.renameType in (ObjectType.OBJECT_TABLE, ObjectType.OBJECT_COLUMN):
            self.exclusive.append(table)
        if node.renameType == ObjectType.OBJECT_TABLE:
            self.flag("renaming-table", table)
        elif node.renameType == ObjectType.OBJECT_COLUMN:
            self.flag("renaming-column", f"{table}.{node.subname}")

    def on_DropStmt(self, node: ast.DropStmt) -> None:
        if node.removeType == ObjectType.OBJECT_INDEX:
            self.drop_index(node)
            return
        if node.removeType != ObjectType.OBJECT_TABLE:
            return
        for names in node.objects or ():
            parts = [part.sval for part in names]
            relation = ast.RangeVar(relname=parts[-1], schemaname=parts[-2] if len(parts) > 1 else None)
            if self.existing(relation):
                self.exclusive.append(_display(relation))
                self.flag("ban-drop-table", _display(relation))

    def drop_index(self, node: ast.DropStmt) -> None:
        names = [".".join(part.sval for part in name) for name in node.objects or ()]
        if node.concurrent:
            if self.in_transaction_block():
                self.flag("concurrently-in-transaction", ", ".join(names))
            return
        # traced: the lock shows whether the index's table existed before the revision
        if self.facts is not None and not self.facts.access_exclusive():
            return
        for name in names:
            if name.split(".")[-1] not in self.indexes_created:
                self.exclusive.append(name)
                self.flag("require-concurrent-index-deletion", name)

    def on_IndexStmt(self, node: ast.IndexStmt) -> None:
        if node.idxname:
            self.indexes_created.add(node.idxname)
        if node.concurrent:
            if self.in_transaction_block():
                self.flag("concurrently-in-transaction", _display(cast(ast.RangeVar, node.relation)))
            return
        if self.existing(node.relation):
            self.flag("require-concurrent-index-creation", _display(node.relation))

    def on_ReindexStmt(self, node: ast.ReindexStmt) -> None:
        concurrent = any(getattr(p, "defname", "") == "concurrently" for p in node.params or ())
        if concurrent and self.in_transaction_block():
            self.flag("concurrently-in-transaction", node.name or _display(cast(ast.RangeVar, node.relation)))

    def on_TruncateStmt(self, node: ast.TruncateStmt) -> None:
        for relation in node.relations or ():
            if self.existing(relation):
                self.exclusive.append(_display(relation))
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
