"""``schema-warden lint``: risky operations in new migrations, found in their SQL.

Offline (the default): each revision's upgrade is rendered on its own (``alembic upgrade
<down>:<rev> --sql``, no database), parsed with PostgreSQL's parser (pglast) and checked by
the rules of :mod:`schema_warden.lint.rules`. With ``--trace``: every revision is upgraded in
order on an empty database of a throwaway server and the statements that really ran are
linted, with what each did (its locks, whether it rewrote a table: proof/trace.py), so a
revision that reads the database through ``op.get_bind()`` is linted too.

Which revisions: ``--all``; ``--base REF`` = revision files that are
new or changed since the git ref; by default the ones new or changed since ``HEAD`` (what a
pre-commit hook is about to commit), or all of them outside a git work tree.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from schema_warden.errors import EXIT_OK, EXIT_PROBLEMS, EnvironmentProblem, ProjectError, guarded, one_line
from schema_warden.lint import rules as lint_rules
from schema_warden.lint.rules import ERROR, UNRENDERABLE, WARNING, AllowProblem, Finding
from schema_warden.project.environment import offline_environment
from schema_warden.project.loader import Project, loaded_project

OFFLINE = "offline SQL"
TRACED = "traced"
OFFLINE_NOTE = "offline SQL (alembic --sql, no database); --trace runs each revision on a throwaway server"


@dataclass(frozen=True)
class RevisionResult:
    revision: str
    file: str  # relative to the project root
    findings: tuple[Finding, ...]
    problems: tuple[AllowProblem, ...] = ()
    statements: int = 0
    risky: tuple[tuple[str, int | None, str], ...] = ()  # traced: (statement, line, what it did)
    note: str | None = None  # how it was linted, when that differs from the run's way

    @property
    def name(self) -> str:
        return f"revision {self.revision} ({Path(self.file).name})"


@dataclass(frozen=True)
class LintReport:
    selection: str  # "all" or "new or changed since <ref>"
    results: tuple[RevisionResult, ...] = field(default_factory=tuple)
    source: str = OFFLINE  # OFFLINE or TRACED
    base: str = ""  # the project root relative to the working directory ("" when it is)

    def findings(self, *, allowed: bool | None = None) -> list[tuple[RevisionResult, Finding]]:
        return [
            (result, finding)
            for result in self.results
            for finding in result.findings
            if allowed is None or (finding.allowed is not None) == allowed
        ]

    def count(self, severity: str) -> int:
        return sum(1 for _, f in self.findings(allowed=False) if f.severity == severity)

    @property
    def allow_problems(self) -> list[tuple[RevisionResult, AllowProblem]]:
        return [(result, problem) for result in self.results for problem in result.problems]

    @property
    def failed(self) -> bool:
        return self.count(ERROR) > 0 or bool(self.allow_problems)


# --- git: which revision files are new or changed ----------------------------------------


def _git(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise EnvironmentProblem("git is not installed: install git, or run with --all") from None


def changed_since(paths: Sequence[Path], ref: str, *, required: bool) -> set[Path] | None:
    """Those of ``paths`` (files in one git work tree) that are absent from ``ref`` or differ.

    None when there is no git work tree (or, unless ``required``, no commit yet); a ref that
    does not exist is a ProjectError.
    """
    if not paths:
        return set()
    cwd = paths[0].parent
    top = _git(["rev-parse", "--show-toplevel"], cwd)
    if top.returncode != 0:
        if required:
            raise ProjectError(f"--base {ref}: {cwd} is not in a git work tree: use --all")
        return None
    root = Path(top.stdout.strip()).resolve()
    commit = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], root)
    if commit.returncode != 0:
        if required:
            raise ProjectError(f"--base {ref}: no such git commit: fetch it (git fetch) or fix the ref")
        return None
    inside = [p for p in paths if p.resolve().is_relative_to(root)]
    outside = {p for p in paths if p not in inside}  # not in this work tree: always linted
    if not inside:
        return outside
    relative = [p.resolve().relative_to(root).as_posix() for p in inside]
    listed = _git(["ls-tree", "-r", "-z", commit.stdout.strip(), "--", *relative], root)
    if listed.returncode != 0:
        raise ProjectError(f"git ls-tree {ref} failed: {one_line(listed.stderr)}")
    at_ref: dict[str, str] = {}
    for entry in listed.stdout.split("\0"):
        if entry:
            meta, _, path = entry.partition("\t")
            at_ref[path] = meta.split()[2]
    hashed = _git(["hash-object", "--", *relative], root)
    if hashed.returncode != 0:
        raise ProjectError(f"git hash-object failed: {one_line(hashed.stderr)}")
    now = hashed.stdout.split()
    return outside | {
        path for path, rel, blob in zip(inside, relative, now, strict=True) if at_ref.get(rel) != blob
    }


# --- rendering one revision's SQL ----------------------------------------------------------


@contextlib.contextmanager
def _offline_environment(config: Any) -> Iterator[io.StringIO]:
    captured = io.StringIO()
    with (
        offline_environment(config),
        contextlib.redirect_stdout(captured),
        contextlib.redirect_stderr(captured),
    ):
        yield captured


class _LineBuffer(io.StringIO):
    """Alembic's offline output buffer that remembers, for each piece of SQL written, the line
    of the revision file whose op.* call wrote it."""

    def __init__(self, revision_path: str) -> None:
        super().__init__()
        self.path = os.path.realpath(revision_path)
        self.lines: list[tuple[int, int]] = []  # (offset, line)

    def write(self, text: str) -> int:
        import traceback

        for frame in reversed(traceback.extract_stack()):
            if os.path.realpath(frame.filename) == self.path and frame.lineno is not None:
                self.lines.append((self.tell(), frame.lineno))
                break
        return super().write(text)


def statement_lines(sql: str, statements: Sequence[lint_rules.Statement], lines: Sequence[tuple[int, int]]):
    """Each statement with the line of the revision file that wrote it (offline SQL)."""
    found = []
    position = 0
    for statement in statements:
        at = sql.find(statement.sql, position)
        if at < 0:
            found.append(statement)
            continue
        position = at + len(statement.sql)
        line = next((ln for offset, ln in reversed(lines) if offset <= at), None)
        found.append(replace(statement, line=line))
    return found


def render_sql(project: Project, script: Any, lines: list[tuple[int, int]] | None = None) -> tuple[str, str]:
    """The SQL of exactly this revision's upgrade(), as ``alembic upgrade <down>:<rev> --sql``,
    and the name of the project's version table. ``lines`` gets (offset in the SQL, line of
    the revision file) for each piece of SQL an op.* call wrote.

    Raises the project's own exception when upgrade() fails offline.
    """
    from alembic.runtime.environment import EnvironmentContext
    from alembic.runtime.migration import MigrationStep

    buffer = _LineBuffer(script.path)
    config = project.config
    down = script.down_revision
    starting = None if down is None else (down if isinstance(down, str) else down[0])

    def one_step(_rev: Any, _context: Any) -> list[Any]:
        return [MigrationStep.upgrade_from_script(project.script.revision_map, script)]

    saved_buffer = config.output_buffer
    config.output_buffer = buffer
    config.attributes["configure_logger"] = False
    version_table = "alembic_version"
    try:
        with (
            _offline_environment(config),
            EnvironmentContext(
                config,
                project.script,
                fn=one_step,
                as_sql=True,
                starting_rev=starting,
                destination_rev=script.revision,
            ) as environment,
        ):
            project.script.run_env()
            if environment._migration_context is not None:
                version_table = environment.get_context().opts.get("version_table") or version_table
    finally:
        config.output_buffer = saved_buffer
    if lines is not None:
        lines.extend(buffer.lines)
    return buffer.getvalue(), str(version_table)


# --- linting ---------------------------------------------------------------------------------


def _lint_settings(project: Project) -> dict[str, tuple[str, ...]]:
    raw = project.settings.lint
    selection: dict[str, tuple[str, ...]] = {}
    where = f"[tool.schema-warden.lint] of {project.root / 'pyproject.toml'}"
    for key in ("ignore", "warn", "error"):
        value = raw.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ProjectError(f"{where}: {key} must be a list of rule names")
        unknown = [v for v in value if lint_rules.resolve_rule(v) is None]
        if unknown:
            raise ProjectError(
                f"{where}: {key} names unknown rule {', '.join(unknown)}: "
                f"see `schema-warden lint --list-rules`"
            )
        selection[key] = tuple(value)
    other = sorted(set(raw) - {"ignore", "warn", "error"})
    if other:
        raise ProjectError(f"{where}: unknown key {', '.join(other)}: the keys are ignore, warn, error")
    return selection


def _allows(project: Project, script: Any) -> tuple[str, list[lint_rules.Allow], list[AllowProblem]]:
    path = Path(script.path)
    file = os.path.relpath(path, project.root)
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ProjectError(f"{file}: cannot read the migration: {err}") from None
    allows, problems = lint_rules.parse_allows(source)
    return file, allows, problems


def lint_revision(
    project: Project, script: Any, selection: dict[str, tuple[str, ...]], *, note: str | None = None
) -> RevisionResult:
    path = Path(script.path)
    file, allows, problems = _allows(project, script)
    lines: list[tuple[int, int]] = []
    try:
        sql, version_table = render_sql(project, script, lines)
    except Exception as err:
        finding = Finding(
            UNRENDERABLE.id,
            UNRENDERABLE.severity,
            f"alembic upgrade {script.down_revision or 'base'}:{script.revision} --sql raised "
            f"{type(err).__name__}: {one_line(str(err))}",
            file,
            UNRENDERABLE.why,
            UNRENDERABLE.safe + " (or lint it with --trace: it then runs on a throwaway server)",
        )
        findings = lint_rules.configure([finding], **selection, allows=allows)
        return RevisionResult(script.revision, file, tuple(findings), tuple(problems), note=note)
    try:
        statements = lint_rules.parse_statements(sql)
    except lint_rules.SqlSyntaxError as err:
        raise ProjectError(
            f"revision {script.revision} ({path.name}): its rendered SQL does not parse: {err}: "
            "fix the SQL in op.execute()",
            detail=sql,
        ) from None
    statements = statement_lines(sql, statements, lines)
    findings = lint_rules.lint(statements, version_table=version_table)
    findings = lint_rules.configure(findings, **selection, allows=allows)
    return RevisionResult(script.revision, file, tuple(findings), tuple(problems), len(statements), note=note)


def lint_trace(
    project: Project,
    script: Any,
    trace: Any,
    selection: dict[str, tuple[str, ...]],
    *,
    version_table: str = "alembic_version",
    failed: str | None = None,
) -> RevisionResult:
    """Lint the statements a revision's upgrade ran on the server (a proof.trace.Trace)."""
    file, allows, problems = _allows(project, script)
    statements: list[lint_rules.Statement] = []
    risky: list[tuple[str, int | None, str]] = []
    unparsed = 0
    for traced in trace.statements:
        if traced.facts.risky():
            risky.append((lint_rules.statement_line(traced.sql), traced.line, traced.facts.summary()))
        try:
            parsed = lint_rules.parse_statements(traced.sql)
        except lint_rules.SqlSyntaxError:
            unparsed += 1  # a driver-specific text (COPY, parameters unbound): its facts still show
            continue
        statements.extend(replace(st, line=traced.line, facts=traced.facts) for st in parsed)
    findings = lint_rules.lint(
        statements, version_table=version_table, not_null_checked=trace.not_null_checked
    )
    findings = lint_rules.configure(findings, **selection, allows=allows)
    notes = []
    if failed is not None:
        notes.append(f"upgrade failed on the throwaway server: {failed}")
    if unparsed:
        notes.append(f"{unparsed} traced statement(s) not parsable, not linted")
    return RevisionResult(
        script.revision,
        file,
        tuple(findings),
        tuple(problems),
        len(statements),
        tuple(risky),
        "; ".join(notes) or None,
    )


def _version_table(project: Project) -> str:
    session = getattr(project, "_session", None)
    opts = getattr(getattr(session, "context", None), "opts", None) or {}
    return str(opts.get("version_table") or "alembic_version")


def run_traced(
    project: Project,
    revisions: Sequence[Any],
    selection: dict[str, tuple[str, ...]],
    *,
    pg_bin: str | None = None,
) -> tuple[RevisionResult, ...]:
    """Upgrade every revision in order on an empty database of a throwaway server, tracing
    each; lint the selected ones. After a failed upgrade the rest are linted offline."""
    from sqlalchemy import create_engine, pool

    from schema_warden.proof import trace as tracing
    from schema_warden.proof.stairway import apply
    from schema_warden.server.postgres import find_binaries, throwaway_server

    wanted = {script.revision for script in revisions}
    results: dict[str, RevisionResult] = {}
    binaries = find_binaries(pg_bin)  # none: EnvironmentProblem, exit 3
    with throwaway_server(binaries=binaries, memory=True) as server:
        engine = create_engine(server.url("postgres"), poolclass=pool.NullPool)
        try:
            with engine.connect() as connection:
                project.load_modules()
                if project.settings.baseline is not None:
                    project.create_baseline(connection)
                    connection.commit()
                stopped: str | None = None
                for script in project.revisions():
                    if stopped is not None:
                        if script.revision in wanted:
                            note = f"linted offline: revision {stopped} failed on the throwaway server"
                            results[script.revision] = lint_revision(project, script, selection, note=note)
                        continue
                    with tracing.recording(connection, script.path) as trace:
                        error = apply(project, connection, script)
                    if script.revision in wanted:
                        results[script.revision] = lint_trace(
                            project,
                            script,
                            trace,
                            selection,
                            version_table=_version_table(project),
                            failed=error.message if error is not None else None,
                        )
                    if error is not None:
                        stopped = script.revision
        finally:
            engine.dispose()
    return tuple(results[script.revision] for script in revisions if script.revision in results)


def select_revisions(project: Project, *, base: str | None, everything: bool) -> tuple[list[Any], str]:
    revisions = project.revisions()
    if everything:
        return revisions, "all revisions"
    ref = base or "HEAD"
    paths = [Path(r.path) for r in revisions]
    changed = changed_since(paths, ref, required=base is not None)
    if changed is None:
        return revisions, "all revisions (not a git work tree with commits)"
    return [r for r in revisions if Path(r.path) in changed], f"revisions new or changed since {ref}"


def run(
    project: Project,
    *,
    base: str | None = None,
    everything: bool = False,
    trace: bool = False,
    pg_bin: str | None = None,
) -> LintReport:
    selection = _lint_settings(project)
    revisions, described = select_revisions(project, base=base, everything=everything)
    prefix = os.path.relpath(project.root, Path.cwd())
    prefix = "" if prefix == "." else prefix
    if trace and revisions:
        results = run_traced(project, revisions, selection, pg_bin=pg_bin)
        return LintReport(described, results, TRACED, prefix)
    results = tuple(lint_revision(project, script, selection) for script in revisions)
    return LintReport(described, results, OFFLINE, prefix)


# --- output ------------------------------------------------------------------------------------


def _summary(report: LintReport) -> str:
    revisions = len(report.results)
    allowed = len(report.findings(allowed=True))
    parts = [
        f"{revisions} revision{'s' if revisions != 1 else ''} checked ({report.selection})",
        f"{report.count(ERROR)} error(s)",
        f"{report.count(WARNING)} warning(s)",
        f"{allowed} allowed",
    ]
    if report.allow_problems:
        parts.append(f"{len(report.allow_problems)} bad allow comment(s)")
    how = OFFLINE_NOTE if report.source == OFFLINE else "traced on a throwaway PostgreSQL server"
    return "schema-warden lint: " + ", ".join(parts) + f"; {how}"


def risky_lines(report: LintReport) -> list[str]:
    """``0007: ALTER TABLE readings ALTER COLUMN value TYPE numeric — ACCESS EXCLUSIVE on readings,
    table rewritten``: what the traced statements did that blocks or rewrites."""
    return [
        f"{result.revision}: {statement} — {what}"
        for result in report.results
        for statement, _line, what in result.risky
    ]


def render_text(report: LintReport) -> str:
    lines = []
    for result, problem in report.allow_problems:
        lines.append(f"{result.file}:{problem.line}: {problem.message}")
    for result, finding in report.findings(allowed=False):
        lines.append(f"{result.name}: {finding.line()}")
    for result, finding in report.findings(allowed=True):
        lines.append(f"{result.name}: {finding.rule} allowed ({finding.allowed}): {finding.statement}")
    for result in report.results:
        if result.note:
            lines.append(f"{result.name}: note: {result.note}")
    risky = risky_lines(report)
    if risky:
        lines.append("traced locks and rewrites:")
        lines.extend(f"  {line}" for line in risky)
    lines.append(_summary(report))
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: LintReport) -> str:
    status = "❌ failed" if report.failed else "✅ passed"
    lines = [f"### Migration lint · {status}", "", _summary(report).removeprefix("schema-warden lint: "), ""]
    for result, problem in report.allow_problems:
        lines.append(f"- ❌ `{result.file}:{problem.line}`: {_cell(problem.message)}")
    rows = report.findings()
    if rows:
        lines += ["", "| | revision | rule | statement | why · safe alternative |", "|---|---|---|---|---|"]
        for result, finding in rows:
            icon = "✅" if finding.allowed is not None else ("❌" if finding.severity == ERROR else "⚠️")
            note = (
                f"allowed: {finding.allowed}"
                if finding.allowed is not None
                else f"{finding.why} · **safe:** {finding.safe}"
            )
            lines.append(
                f"| {icon} | `{result.revision}` | `{finding.rule}` | `{_cell(finding.statement)}` | "
                f"{_cell(note)} |"
            )
    risky = risky_lines(report)
    if risky:
        lines += ["", "**Traced locks and rewrites**", ""]
        lines.extend(f"- `{_cell(line)}`" for line in risky)
    return "\n".join(lines) + "\n"


def report_dict(report: LintReport) -> dict[str, Any]:
    return {
        "command": "lint",
        "ok": not report.failed,
        "selection": report.selection,
        "source": report.source,
        "summary": {
            "revisions": len(report.results),
            "errors": report.count(ERROR),
            "warnings": report.count(WARNING),
            "allowed": len(report.findings(allowed=True)),
            "bad_allow_comments": len(report.allow_problems),
        },
        "revisions": [
            {
                "revision": result.revision,
                "file": result.file,
                "statements": result.statements,
                "findings": [asdict(finding) for finding in result.findings],
                "allow_problems": [asdict(problem) for problem in result.problems],
                "risky": [
                    {"statement": statement, "line": line, "did": what}
                    for statement, line, what in result.risky
                ],
                "note": result.note,
            }
            for result in report.results
        ],
    }


def render_sarif(report: LintReport) -> str:
    """SARIF 2.1.0: each finding at its migration file and line (the op.* call, else 1)."""
    from schema_warden import __version__
    from schema_warden.render import sarif

    def uri(file: str) -> str:
        return Path(report.base, file).as_posix() if report.base else Path(file).as_posix()

    results = []
    for result, finding in report.findings():
        suppressed = finding.allowed
        results.append(
            sarif.Result(
                finding.rule,
                sarif.level(finding.severity),
                f"{result.name}: {finding.line()}",
                uri(result.file),
                finding.source_line or 1,
                suppressed,
            )
        )
    for result, problem in report.allow_problems:
        results.append(
            sarif.Result("allow-comment", "error", problem.message, uri(result.file), problem.line)
        )
    rules = [
        sarif.RuleInfo(rule.id, rule.flags, f"{rule.why}; safe: {rule.safe}", lint_rules.doc_page(rule.id))
        for rule in lint_rules.RULES_BY_ID.values()
    ]
    rules.append(
        sarif.RuleInfo("allow-comment", "a malformed schema-warden allow comment", lint_rules.ALLOW_FORMAT)
    )
    return sarif.log(rules, results, version=__version__)


def render_rules() -> str:
    lines = []
    for rule in lint_rules.RULES_BY_ID.values():
        lines.append(f"{rule.id} ({rule.severity}): {rule.flags}")
        lines.append(f"    why: {rule.why}")
        lines.append(f"    safe: {rule.safe}")
    return "\n".join(lines) + "\n"


# --- command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="schema-warden lint",
        description="Risky operations in new migrations: each revision's offline SQL is rendered on its "
        "own and parsed with PostgreSQL's parser. Exit 1 when an error-severity finding (or a bad allow "
        "comment) exists; warnings print but pass.",
    )
    parser.add_argument("-c", "--config", help="alembic.ini of the project (default: ./alembic.ini)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--base", metavar="REF", help="lint revision files new or changed since git REF")
    which.add_argument("--all", action="store_true", help="lint every revision")
    parser.add_argument("--format", choices=("text", "markdown", "json", "sarif"), default="text")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="upgrade each revision in order on a throwaway PostgreSQL server and lint the statements "
        "that ran, with the locks they took and the tables they rewrote (default: offline SQL)",
    )
    parser.add_argument("--pg-bin", metavar="DIR", help="PostgreSQL bin directory for --trace")
    parser.add_argument("--list-rules", action="store_true", help="print the rules and exit")
    return parser


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list_rules:
        print(render_rules(), end="")
        return EXIT_OK
    with loaded_project(args.config) as project:
        report = run(project, base=args.base, everything=args.all, trace=args.trace, pg_bin=args.pg_bin)
    if args.format == "sarif":
        print(render_sarif(report), end="")
    elif args.format == "json":
        print(json.dumps(report_dict(report), indent=2))
    elif args.format == "markdown":
        print(render_markdown(report), end="")
    else:
        print(render_text(report), end="")
    return EXIT_PROBLEMS if report.failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
