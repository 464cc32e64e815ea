"""Render check results as text, Markdown or JSON. Pure: plain data in, a string out.

JSON shape (stable, documented in README)::

    {"ok": false,
     "checks": [{"name": "drift", "status": "fail", "revision": null,
                 "message": "the models have changes that no migration makes",
                 "details": ["+ column readings.humidity (double precision, nullable)", ...]}],
     "duration_s": 1.42}

``status`` is ``"pass"``, ``"fail"`` or ``"note"`` (reported, not a failure); ``revision``
is the revision id a check is about, or null.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field

from schema_warden.render import sarif

PASS = "pass"
FAIL = "fail"
NOTE = "note"
STATUSES = (PASS, FAIL, NOTE)
FORMATS = ("text", "markdown", "json", "sarif")


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: ``message`` is one line; ``details`` are the lines under it."""

    name: str
    status: str
    message: str
    revision: str | None = None
    details: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "status": self.status,
            "revision": self.revision,
            "message": self.message,
            "details": list(self.details),
        }


@dataclass(frozen=True)
class Report:
    """The results of one command run."""

    title: str
    checks: tuple[CheckResult, ...] = ()
    duration_s: float = 0.0
    notes: tuple[str, ...] = field(default=())  # context lines (server version, warnings)

    @property
    def ok(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == FAIL]

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "checks": [c.to_dict() for c in self.checks],
            "duration_s": round(self.duration_s, 3),
        }


def _summary(report: Report) -> str:
    failed = len(report.failures)
    passed = sum(1 for c in report.checks if c.status == PASS)
    noted = sum(1 for c in report.checks if c.status == NOTE)
    parts = [f"{passed} passed"]
    if noted:
        parts.append(f"{noted} note{'s' if noted != 1 else ''}")
    head = "ok" if failed == 0 else f"{failed} problem{'s' if failed != 1 else ''} found"
    return f"{head}: {', '.join(parts)} in {report.duration_s:.1f} s"


def _label(check: CheckResult) -> str:
    return f"{check.name} {check.revision}" if check.revision else check.name


def render_text(report: Report, *, verbose: bool = True) -> str:
    """Plain text for a terminal and pre-commit: problems first, each one line plus detail."""
    lines = [report.title, *(f"  {n}" for n in report.notes)]
    marks = {PASS: "ok  ", FAIL: "FAIL", NOTE: "note"}
    ordered = [c for c in report.checks if c.status == FAIL] + [c for c in report.checks if c.status != FAIL]
    for check in ordered:
        if check.status == PASS and not verbose:
            continue
        lines.append(f"{marks[check.status]} {check.name}: {check.message}")
        if check.status != PASS:
            lines.extend(f"       {d}" if d else "" for d in check.details)
    lines.append(_summary(report))
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    """Markdown for PR comments and ``$GITHUB_STEP_SUMMARY``: a verdict, a table, details."""
    icon = {PASS: "✅", FAIL: "❌", NOTE: "ℹ️"}
    verdict = "✅ passed" if report.ok else f"❌ {len(report.failures)} problem(s) found"
    lines = [f"### {report.title}: {verdict}", ""]
    lines.extend(f"> {n}" for n in report.notes)
    if report.notes:
        lines.append("")
    if report.checks:
        lines += ["| | check | revision | result |", "|---|---|---|---|"]
        for c in report.checks:
            lines.append(
                f"| {icon[c.status]} | {_md_escape(c.name)} | {_md_escape(c.revision or '')} "
                f"| {_md_escape(c.message)} |"
            )
        lines.append("")
    for c in report.checks:
        if c.status != PASS and c.details:
            lines += [f"<details open><summary>{_label(c)}: {c.message}</summary>", "", "```"]
            lines.extend(c.details)
            lines += ["```", "", "</details>", ""]
    lines.append(f"_{_summary(report)}_")
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"


# ``revision 0003 (versions/0003_add_humidity.py, "doc")``: stairway.label names the file
_REVISION_FILE = re.compile(r"\(([^(),\"]+\.py)[,)]")
_TITLE_CONFIG = re.compile(r": (\S+\.ini) \(")


def render_sarif(report: Report, *, version: str = "0") -> str:
    """SARIF 2.1.0: each failing check and note at the revision file its message names (line 1),
    else at the project's alembic.ini. Paths in messages are relative to the project root, which
    the title's alembic.ini locates relative to the working directory."""
    found = _TITLE_CONFIG.search(report.title)
    ini = found.group(1) if found else "alembic.ini"
    root = posixpath.dirname(ini)
    results = []
    for check in report.checks:
        if check.status == PASS:
            continue
        named = _REVISION_FILE.search(check.message)
        file = posixpath.normpath(posixpath.join(root, named.group(1))) if named else ini
        text = "\n".join([check.message, *check.details])
        results.append(sarif.Result(check.name, sarif.level(check.status), text, file, 1))
    rules = [
        sarif.RuleInfo(name, f"schema-warden check: {name}", f"the {name} check of schema-warden check")
        for name in dict.fromkeys(r.rule for r in results)
    ]
    return sarif.log(rules, results, version=version)


def render(report: Report, fmt: str = "text") -> str:
    if fmt == "text":
        return render_text(report)
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "json":
        return render_json(report)
    if fmt == "sarif":
        from schema_warden import __version__

        return render_sarif(report, version=__version__)
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
