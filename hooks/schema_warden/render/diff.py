"""Render a schema diff report (changes, new revisions, offline SQL, guard result) as text,
Markdown or JSON. Pure: plain data in, a string out; no I/O.

The Markdown is what a reviewer reads first (PR comment, step summary): a title that says
how much and how dangerous, a compact table with destructive changes first, the verdicts of
the guard and of the migration lint, the new revisions and the SQL in a collapsed block.
``render_markdown`` can fit a character budget (GitHub caps a comment at 65,536
characters): it drops the ER diagram first (a one-line note says so), then the SQL, then
shortens the lists, and points to where the full report is.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from schema_warden import __version__
from schema_warden.render import mermaid

if TYPE_CHECKING:
    from schema_warden.schema.diff import Change

JSON_FORMAT_VERSION = 1

MAX_PROBLEM_DETAILS = 12
ICONS = {"destructive": "⚠️", "added": "➕", "removed": "➖", "changed": "✏️"}
# what a reviewer calls each action, per kind of object
_VERBS = {"added": "added", "removed": "dropped", "changed": "changed"}


@dataclass(frozen=True)
class Revision:
    """A migration the head has and the base does not (or the reverse)."""

    id: str
    message: str
    file: str  # relative to the project root


@dataclass(frozen=True)
class GuardProblem:
    message: str  # one line: what, where, the fix
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class GuardResult:
    """The verdict of ``schema-warden check`` (read from its JSON), shown beside the diff."""

    ok: bool
    headline: str = ""  # one line: what was proven, e.g. "stairway ✅ 3/3 · drift ❌"
    problems: tuple[GuardProblem, ...] = ()


@dataclass(frozen=True)
class LintFinding:
    """One finding of ``schema-warden lint`` in one revision."""

    rule: str  # e.g. "ban-drop-column"
    severity: str  # "error" or "warning"
    revision: str
    target: str = ""  # the table or table.column concerned
    allowed: str | None = None  # the reason of the allow comment that accepts it


@dataclass(frozen=True)
class LintResult:
    """The verdict of ``schema-warden lint --format json`` (read from its JSON), shown beside the diff."""

    ok: bool
    revisions: int = 0  # how many revisions were linted
    selection: str = ""  # "revisions new or changed since origin/main"
    findings: tuple[LintFinding, ...] = ()  # errors, then warnings, then allowed ones
    problems: tuple[str, ...] = ()  # bad allow comments, or why there is no result: one line each
    bad_allows: int = 0  # how many of the problems are bad allow comments
    risky: tuple[tuple[str, str, str], ...] = ()  # lint --trace: (revision, statement, what it did)

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.allowed is None and f.severity == severity)

    @property
    def allowed(self) -> int:
        return sum(1 for f in self.findings if f.allowed is not None)


@dataclass(frozen=True)
class Side:
    """One end of the comparison."""

    ref: str  # "origin/main", "HEAD~1", "working tree"
    commit: str | None = None  # short commit id; None for the working tree
    heads: tuple[str, ...] = ()  # Alembic head revision ids


@dataclass(frozen=True)
class DiffReport:
    base: Side
    head: Side
    changes: tuple[Change, ...]  # as schema_warden.schema.diff.compare sorts them: destructive first
    revisions: tuple[Revision, ...] = ()  # new in head, in upgrade order
    removed_revisions: tuple[Revision, ...] = ()  # in base, missing from head (renamed or deleted)
    sql: str | None = None  # offline SQL of the new revisions
    sql_command: str | None = None  # "alembic upgrade 0002:0003 --sql"
    notes: tuple[str, ...] = ()  # one-line warnings about the inputs (base has no migrations, ...)
    guard: GuardResult | None = None
    lint: LintResult | None = None
    diagram: str | None = None  # Markdown: a collapsed Mermaid ER diagram of the touched tables
    postgres_major: int | None = None
    duration_s: float | None = None
    version: str = __version__

    @property
    def destructive(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.destructive)


@dataclass(frozen=True)
class _Limits:
    """How much of a long report the Markdown shows (None: everything)."""

    sql: bool = True
    diagram: bool = True
    changes: int | None = None
    revisions: int | None = None
    problems: int | None = None
    lint: int | None = None  # findings and bad allow comments of the lint
    more: str = "the full report"


# ---------------------------------------------------------------- shared wording


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _side_label(side: Side) -> str:
    return f"{side.ref} ({side.commit})" if side.commit and side.commit != side.ref else side.ref


def change_verb(change: Change) -> str:
    """'column dropped', 'index added', 'enum changed'."""
    return f"{change.kind} {_VERBS.get(change.action, change.action)}"


def summary_line(report: DiffReport) -> str:
    """One line: how many revisions and changes, how many destructive."""
    parts = [_plural(len(report.revisions), "new revision")]
    if report.changes:
        destructive = len(report.destructive)
        text = _plural(len(report.changes), "schema change")
        if destructive:
            text += f" ({destructive} destructive)"
        parts.append(text)
    else:
        parts.append("no schema change")
    return ", ".join(parts)


def no_change_line(report: DiffReport) -> str:
    return f"no schema change: {_side_label(report.base)} and {_side_label(report.head)} have the same schema"


def _guard_word(guard: GuardResult | LintResult) -> str:
    return "passed" if guard.ok else "failed"


def lint_counts(lint: LintResult) -> str:
    """'1 error, 0 warnings, 1 allowed (2 revisions linted)'."""
    parts = [
        _plural(lint.count("error"), "error"),
        _plural(lint.count("warning"), "warning"),
        f"{lint.allowed} allowed",
    ]
    if lint.bad_allows:
        parts.append(_plural(lint.bad_allows, "bad allow comment"))
    return ", ".join(parts) + f" ({_plural(lint.revisions, 'revision')} linted)"


def lint_finding_line(finding: LintFinding) -> str:
    """'ban-drop-column on 0007 (readings.legacy_value)', plus the severity or the allow reason."""
    target = f" ({finding.target})" if finding.target else ""
    if finding.allowed is not None:
        return f"{finding.rule} on {finding.revision}{target}: allowed: {finding.allowed}"
    return f"{finding.rule} on {finding.revision}{target}: {finding.severity}"


# ---------------------------------------------------------------- text


def render_text(report: DiffReport) -> str:
    lines = [f"schema diff {_side_label(report.base)} -> {_side_label(report.head)}: {summary_line(report)}"]
    lines += [f"warning: {note}" for note in report.notes]
    if report.changes:
        lines += [f"  {change.line()}" for change in report.changes]
    else:
        lines.append(no_change_line(report))
    if report.revisions:
        lines.append("new revisions:")
        lines += [f"  {r.id}  {r.message}  ({r.file})" for r in report.revisions]
    if report.removed_revisions:
        lines.append("revisions in the base that the head no longer has (renamed or deleted?):")
        lines += [f"  {r.id}  {r.message}  ({r.file})" for r in report.removed_revisions]
    if report.guard is not None:
        headline = f": {report.guard.headline}" if report.guard.headline else ""
        lines.append(f"guard {_guard_word(report.guard)}{headline}")
        for problem in report.guard.problems:
            lines.append(f"  {problem.message}")
            lines += [f"    {d}" for d in problem.details]
    if report.lint is not None:
        lines.append(f"lint {_guard_word(report.lint)}: {lint_counts(report.lint)}")
        lines += [f"  {problem}" for problem in report.lint.problems]
        lines += [f"  {lint_finding_line(f)}" for f in report.lint.findings]
    if report.sql:
        lines.append(f"SQL ({report.sql_command}):" if report.sql_command else "SQL:")
        lines += [f"  {line}" if line else "" for line in report.sql.rstrip("\n").splitlines()]
    lines.append(_footer_text(report))
    return "\n".join(lines) + "\n"


def _footer_text(report: DiffReport) -> str:
    parts = [f"schema-warden {report.version}"]
    if report.postgres_major is not None:
        parts.append(f"PostgreSQL {report.postgres_major} throwaway")
    if report.duration_s is not None:
        parts.append(f"{report.duration_s:.1f} s")
    return " · ".join(parts)


# ---------------------------------------------------------------- Markdown


def _escape(text: str) -> str:
    """Free text in Markdown: no HTML from the input, no line breaks inside a table row."""
    return html.escape(" ".join(text.split()), quote=False)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    """An inline code span that survives backticks in the text."""
    text = " ".join(text.split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if longest else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fence(body: str, lang: str = "") -> str:
    longest = max((len(run) for run in re.findall(r"`{3,}", body)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{body.rstrip()}\n{ticks}"


def _icon(change: Change) -> str:
    return ICONS["destructive"] if change.destructive else ICONS.get(change.action, "•")


def _change_row(change: Change) -> str:
    verb = change_verb(change)
    verb = f"**{verb}**" if change.destructive else verb
    detail = f": {_escape(change.detail)}" if change.detail else ""
    return f"| {_icon(change)} | {_cell(_code(change.name))} | {_cell(verb + detail)} |"


def _title(report: DiffReport) -> str:
    title = f"### Schema diff — {summary_line(report)}"
    if report.guard is not None:
        title += " · ✅ guard passed" if report.guard.ok else " · ❌ guard failed"
    if report.lint is not None:
        title += " · ✅ lint passed" if report.lint.ok else " · ❌ lint failed"
    return title


def _md_changes(report: DiffReport, limits: _Limits) -> list[str]:
    if not report.changes:
        return [f"**No schema change:** {_escape(no_change_line(report).split(': ', 1)[1])}."]
    shown = report.changes if limits.changes is None else report.changes[: limits.changes]
    rows = ["| | object | change |", "|---|---|---|", *(_change_row(c) for c in shown)]
    hidden = len(report.changes) - len(shown)
    if hidden:
        rows.append(f"| … | {_plural(hidden, 'more change')} | see {limits.more} |")
    return rows


def _md_guard(guard: GuardResult, limits: _Limits) -> list[str]:
    icon = "✅" if guard.ok else "❌"
    headline = f" — {_escape(guard.headline)}" if guard.headline else ""
    lines = [f"**Guard:** {icon} {_guard_word(guard)}{headline}"]
    shown = guard.problems if limits.problems is None else guard.problems[: limits.problems]
    if shown:
        lines.append("")
    for problem in shown:
        lines.append(f"- {_code(problem.message)}")
        details = list(problem.details[:MAX_PROBLEM_DETAILS])
        if len(problem.details) > len(details):
            details.append(f"… {len(problem.details) - len(details)} more lines")
        if details:  # a code block keeps the detail's own indentation
            lines += [f"  {line}" for line in _fence("\n".join(details), "text").splitlines()]
    hidden = len(guard.problems) - len(shown)
    if hidden:
        lines.append(f"- … {_plural(hidden, 'more problem')}: see {limits.more}")
    return lines


def _md_lint_finding(finding: LintFinding) -> str:
    target = f" ({_code(finding.target)})" if finding.target else ""
    where = f"{_code(finding.rule)} on {_code(finding.revision)}{target}"
    if finding.allowed is not None:
        return f"- ✅ {where} — allowed: “{_escape(finding.allowed)}”"
    if finding.severity == "error":
        return f"- ❌ {where}"
    return f"- ⚠️ {where} · {_escape(finding.severity)}"


def _md_lint(lint: LintResult, limits: _Limits) -> list[str]:
    icon = "✅" if lint.ok else "❌"
    lines = [f"**Lint:** {icon} {_guard_word(lint)} — {_escape(lint_counts(lint))}"]
    items = [f"- ❌ {_escape(problem)}" for problem in lint.problems]
    items += [_md_lint_finding(f) for f in lint.findings]
    shown = items if limits.lint is None else items[: limits.lint]
    if shown:
        lines += ["", *shown]
    hidden = len(items) - len(shown)
    if hidden:
        lines.append(f"- … {_plural(hidden, 'more lint finding')}: see {limits.more}")
    if lint.count("error") or lint.count("warning"):
        lines += ["", f"{_code(lint_command(lint))} shows why each one is risky and the safe way."]
    if lint.risky:  # what the traced statements did on the throwaway server
        lines += ["", "**What the migrations lock and rewrite** (traced on a throwaway server):", ""]
        traced = [f"- {_code(rev)}: {_code(stmt)} — {_escape(did)}" for rev, stmt, did in lint.risky]
        shown_traced = traced if limits.lint is None else traced[: limits.lint]
        lines += shown_traced
        if len(traced) > len(shown_traced):
            lines.append(
                f"- … {_plural(len(traced) - len(shown_traced), 'more statement')}: see {limits.more}"
            )
    return lines


def lint_command(lint: LintResult) -> str:
    """The command that shows the lint's findings in full, for the same revisions."""
    since = "revisions new or changed since "
    if lint.selection.startswith(since):
        return f"schema-warden lint --base {lint.selection.removeprefix(since)}"
    return "schema-warden lint --all" if lint.selection.startswith("all revisions") else "schema-warden lint"


def _md_revision(rev: Revision) -> str:
    return f"- {_code(rev.id)} {_escape(rev.message) or '(no message)'} — {_code(rev.file)}"


def _md_revisions(report: DiffReport, limits: _Limits) -> list[str]:
    lines: list[str] = []
    if report.revisions:
        revs = report.revisions
        shown = revs if limits.revisions is None else revs[: limits.revisions]
        lines += ["**New revisions**", "", *(_md_revision(r) for r in shown)]
        if len(revs) > len(shown):
            lines.append(f"- … {_plural(len(revs) - len(shown), 'more revision')}: see {limits.more}")
    if report.removed_revisions:
        if lines:
            lines.append("")
        lines += [
            "**Revisions the base has and this branch does not** (renamed or deleted?)",
            "",
            *(_md_revision(r) for r in report.removed_revisions),
        ]
    return lines


def _md_sql(report: DiffReport, limits: _Limits) -> list[str]:
    if not report.sql:
        return []
    command = f" (<code>{html.escape(report.sql_command)}</code>)" if report.sql_command else ""
    summary = f"<details><summary>SQL these migrations run{command}</summary>"
    if not limits.sql:
        return [f"SQL these migrations run{command}: too long for here, see {limits.more}."]
    return [summary, "", _fence(report.sql, "sql"), "</details>"]


def _md_footer(report: DiffReport) -> str:
    where = f"{_code(_side_label(report.base))} → {_code(_side_label(report.head))}"
    return f"<sub>{_escape(_footer_text(report))} · {where}</sub>"


def _assemble(report: DiffReport, limits: _Limits) -> str:
    blocks: list[list[str]] = [[_title(report)]]
    if report.notes:
        blocks.append([f"> ⚠️ {_escape(note)}" for note in report.notes])
    blocks.append(_md_changes(report, limits))
    if report.guard is not None:
        blocks.append(_md_guard(report.guard, limits))
    if report.lint is not None:
        blocks.append(_md_lint(report.lint, limits))
    if report.diagram and limits.diagram:
        blocks.append([report.diagram.strip()])
    elif report.diagram:
        blocks.append([mermaid.DIFF_LEFT_OUT_NOTE.strip()])
    blocks += [_md_revisions(report, limits), _md_sql(report, limits), [_md_footer(report)]]
    return "\n\n".join("\n".join(block) for block in blocks if block) + "\n"


def _shrink(limits: _Limits, report: DiffReport) -> _Limits | None:
    """The next, smaller version of the report; None when nothing is left to drop."""

    def halve(current: int | None, total: int, floor: int) -> int | None:
        now = total if current is None else current
        return None if now <= floor else max(floor, now // 2)

    if limits.diagram and report.diagram:
        return replace(limits, diagram=False)
    if limits.sql and report.sql:
        return replace(limits, sql=False)
    problems = len(report.guard.problems) if report.guard else 0
    lint = len(report.lint.problems) + len(report.lint.findings) if report.lint else 0
    steps: list[tuple[str, int, int]] = [
        ("revisions", len(report.revisions), 10),
        ("problems", problems, 10),
        ("lint", lint, 10),
        ("changes", len(report.changes), 20),
        ("revisions", len(report.revisions), 0),
        ("problems", problems, 1),
        ("lint", lint, 1),
        ("changes", len(report.changes), 0),
    ]
    for name, total, floor in steps:
        smaller = halve(getattr(limits, name), total, floor)
        if smaller is not None:
            # a count chosen by name (getattr above): the dataclass cannot check its type statically
            count: dict[str, Any] = {name: smaller}
            return replace(limits, **count)
    return None


def render_markdown(
    report: DiffReport, *, max_chars: int | None = None, max_bytes: int | None = None, more: str | None = None
) -> str:
    """Markdown for a PR comment or step summary.

    ``max_chars`` / ``max_bytes`` (UTF-8): fit this budget, dropping the diagram and the SQL first, then
    shortening the lists. ``more``: where the full report is (Markdown, e.g. a link).
    """

    def too_long(text: str) -> bool:
        return (max_chars is not None and len(text) > max_chars) or (
            max_bytes is not None and len(text.encode("utf-8")) > max_bytes
        )

    limits = _Limits(more=more or "the full report (`schema-warden diff`)")
    text = _assemble(report, limits)
    while too_long(text):
        smaller = _shrink(limits, report)
        if smaller is None:
            break  # still too long: the caller cuts hard (schema_warden.commands.github.truncate)
        limits = smaller
        text = _assemble(report, limits)
    return text


# ---------------------------------------------------------------- JSON


def _change_dict(change: Change) -> dict[str, object]:
    return {
        "kind": change.kind,
        "action": change.action,
        "name": change.name,
        "table": change.table,
        "detail": change.detail,
        "destructive": change.destructive,
        "line": change.line(),
    }


def _revision_dict(rev: Revision) -> dict[str, str]:
    return {"id": rev.id, "message": rev.message, "file": rev.file}


def _side_dict(side: Side) -> dict[str, object]:
    return {"ref": side.ref, "commit": side.commit, "heads": list(side.heads)}


def _lint_dict(lint: LintResult) -> dict[str, object]:
    return {
        "ok": lint.ok,
        "selection": lint.selection,
        "revisions": lint.revisions,
        "errors": lint.count("error"),
        "warnings": lint.count("warning"),
        "allowed": lint.allowed,
        "findings": [
            {
                "rule": f.rule,
                "severity": f.severity,
                "revision": f.revision,
                "target": f.target,
                "allowed": f.allowed,
            }
            for f in lint.findings
        ],
        "problems": list(lint.problems),
        "bad_allow_comments": lint.bad_allows,
    }


def to_dict(report: DiffReport) -> dict[str, object]:
    """The stable JSON document (``format`` is bumped on incompatible changes)."""
    guard = report.guard
    return {
        "format": JSON_FORMAT_VERSION,
        "schema_warden": report.version,
        "base": _side_dict(report.base),
        "head": _side_dict(report.head),
        "summary": {
            "changed": bool(report.changes),
            "changes": len(report.changes),
            "destructive": len(report.destructive),
            "new_revisions": len(report.revisions),
            "text": summary_line(report),
        },
        "changes": [_change_dict(c) for c in report.changes],
        "revisions": [_revision_dict(r) for r in report.revisions],
        "removed_revisions": [_revision_dict(r) for r in report.removed_revisions],
        "sql": {"command": report.sql_command, "text": report.sql} if report.sql else None,
        "notes": list(report.notes),
        "guard": (
            {
                "ok": guard.ok,
                "headline": guard.headline,
                "problems": [{"message": p.message, "details": list(p.details)} for p in guard.problems],
            }
            if guard
            else None
        ),
        "lint": _lint_dict(report.lint) if report.lint else None,
        "postgres_major": report.postgres_major,
        "duration_s": None if report.duration_s is None else round(report.duration_s, 3),
    }


def render_json(report: DiffReport) -> str:
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False) + "\n"


RENDERERS: dict[str, Callable[[DiffReport], str]] = {
    "text": render_text,
    "markdown": render_markdown,
    "json": render_json,
}


def render(report: DiffReport, fmt: str) -> str:
    return RENDERERS[fmt](report)


# ---------------------------------------------------------------- the guard's JSON


def guard_from_check_json(data: object) -> GuardResult:
    """Read the JSON of ``schema-warden check --format json`` (see render/report.py)."""
    if not isinstance(data, dict) or not isinstance(data.get("checks"), list) or "ok" not in data:
        raise ValueError("not the JSON of `schema-warden check --format json` (no 'ok' and 'checks')")
    checks = [c for c in data["checks"] if isinstance(c, dict)]
    order: list[str] = []
    tally: dict[str, list[int]] = {}
    problems: list[GuardProblem] = []
    for check in checks:
        name = str(check.get("name") or "check")
        status = check.get("status")
        if name not in tally:
            order.append(name)
            tally[name] = [0, 0]
        if status in ("pass", "fail"):
            tally[name][status == "fail"] += 1
        if status == "fail":
            message = str(check.get("message") or name)
            revision = check.get("revision")
            if revision and str(revision) not in message:
                message = f"revision {revision}: {message}"
            details = tuple(str(d) for d in check.get("details") or ())
            problems.append(GuardProblem(message, details))
    parts = []
    for name in order:
        passed, failed = tally[name]
        if passed + failed == 0:
            continue
        count = f" {passed}/{passed + failed}" if passed + failed > 1 else ""
        parts.append(f"{name} {'❌' if failed else '✅'}{count}")
    return GuardResult(ok=bool(data["ok"]), headline=" · ".join(parts), problems=tuple(problems))


# ---------------------------------------------------------------- the lint's JSON

_LINT_ORDER = {"error": 0, "warning": 1}


def lint_from_json(data: object) -> LintResult:
    """Read the JSON of ``schema-warden lint --format json`` (schema_warden.commands.lint.report_dict)."""
    if (
        not isinstance(data, dict)
        or data.get("command") != "lint"
        or "ok" not in data
        or not isinstance(data.get("revisions"), list)
    ):
        raise ValueError("not the JSON of `schema-warden lint --format json` (no 'command': 'lint')")
    findings: list[LintFinding] = []
    problems: list[str] = []
    risky: list[tuple[str, str, str]] = []
    revisions = [r for r in data["revisions"] if isinstance(r, dict)]
    for rev in revisions:
        revision = str(rev.get("revision") or "?")
        for traced in rev.get("risky") or ():
            if isinstance(traced, dict):
                risky.append((revision, str(traced.get("statement") or ""), str(traced.get("did") or "")))
        file = str(rev.get("file") or revision)
        for problem in rev.get("allow_problems") or ():
            if isinstance(problem, dict):
                where = f"{file}:{problem.get('line')}" if problem.get("line") else file
                problems.append(f"bad allow comment in {where}: {problem.get('message') or 'unreadable'}")
        for finding in rev.get("findings") or ():
            if not isinstance(finding, dict):
                continue
            allowed = finding.get("allowed")
            findings.append(
                LintFinding(
                    rule=str(finding.get("rule") or "?"),
                    severity=str(finding.get("severity") or "error"),
                    revision=revision,
                    target=str(finding.get("target") or ""),
                    allowed=None if allowed is None else str(allowed),
                )
            )
    # errors first, then warnings, then the allowed ones; revision order kept within each
    findings.sort(key=lambda f: 2 if f.allowed is not None else _LINT_ORDER.get(f.severity, 0))
    return LintResult(
        ok=bool(data["ok"]),
        revisions=len(revisions),
        selection=str(data.get("selection") or ""),
        findings=tuple(findings),
        problems=tuple(problems),
        bad_allows=len(problems),
        risky=tuple(risky),
    )
