"""Rendering of a schema diff report: pure, built from Change objects, no server."""

from __future__ import annotations

import json

import pytest
from schema_warden import __version__
from schema_warden.commands.lint import LintReport, RevisionResult, report_dict
from schema_warden.lint.rules import AllowProblem, Finding
from schema_warden.render import mermaid
from schema_warden.render.diff import (
    DiffReport,
    GuardProblem,
    GuardResult,
    LintFinding,
    LintResult,
    Revision,
    Side,
    guard_from_check_json,
    lint_from_json,
    render,
    render_json,
    render_markdown,
    render_text,
    to_dict,
)
from schema_warden.schema.diff import Change

DROP = Change("table", "removed", "legacy_readings", "legacy_readings", "3 columns, PK id", True)
ADD_COLUMN = Change(
    "column",
    "added",
    "temperature_readings.humidity",
    "temperature_readings",
    "double precision, nullable",
    False,
)
ADD_INDEX = Change(
    "index",
    "added",
    "ix_temperature_readings_humidity",
    "temperature_readings",
    "on temperature_readings: btree (humidity)",
    False,
)
CHANGES = (DROP, ADD_COLUMN, ADD_INDEX)
BASE = Side("HEAD~1", "abc1234", ("0002",))
HEAD = Side("working tree", None, ("0003",))
REVISION = Revision(
    "0003", "add humidity, drop legacy", "database/alembic/versions/20261125_0003_add_humidity.py"
)
SQL = (
    "BEGIN;\nALTER TABLE temperature_readings ADD COLUMN humidity FLOAT;\n"
    "DROP TABLE legacy_readings;\nCOMMIT;\n"
)


def _report(**overrides: object) -> DiffReport:
    fields: dict[str, object] = {
        "base": BASE,
        "head": HEAD,
        "changes": CHANGES,
        "revisions": (REVISION,),
        "sql": SQL,
        "sql_command": "alembic upgrade 0002:0003 --sql",
        "postgres_major": 16,
        "duration_s": 1.234,
    }
    fields.update(overrides)
    return DiffReport(**fields)  # type: ignore[arg-type]


def test_text_lists_every_change_destructive_first_then_revisions_sql_footer() -> None:
    text = render_text(_report())
    lines = text.splitlines()
    assert lines[0] == (
        "schema diff HEAD~1 (abc1234) -> working tree: 1 new revision, 3 schema changes (1 destructive)"
    )
    assert lines[1:4] == [f"  {c.line()}" for c in CHANGES]
    assert "[destructive]" in lines[1]
    assert (
        "  0003  add humidity, drop legacy  (database/alembic/versions/20261125_0003_add_humidity.py)"
        in lines
    )
    assert "SQL (alembic upgrade 0002:0003 --sql):" in lines
    assert "  DROP TABLE legacy_readings;" in lines
    assert lines[-1] == f"schema-warden {__version__} · PostgreSQL 16 throwaway · 1.2 s"


def test_no_change_is_one_clear_line_in_every_format() -> None:
    report = _report(changes=(), revisions=(), sql=None)
    line = "no schema change: HEAD~1 (abc1234) and working tree have the same schema"
    assert line in render_text(report).splitlines()
    markdown = render_markdown(report)
    assert "**No schema change:** HEAD~1 (abc1234) and working tree have the same schema." in markdown
    assert "| object |" not in markdown
    data = json.loads(render_json(report))
    assert data["summary"]["changed"] is False and data["changes"] == []


def test_markdown_table_has_destructive_first_with_icons() -> None:
    markdown = render_markdown(_report())
    title, *rest = markdown.splitlines()
    assert title == "### Schema diff — 1 new revision, 3 schema changes (1 destructive)"
    rows = [line for line in rest if line.startswith("| ") and "object" not in line]
    assert rows == [
        "| ⚠️ | `legacy_readings` | **table dropped**: 3 columns, PK id |",
        "| ➕ | `temperature_readings.humidity` | column added: double precision, nullable |",
        "| ➕ | `ix_temperature_readings_humidity` | index added: on temperature_readings: btree (humidity) "
        "|",
    ]
    assert (
        "<details><summary>SQL these migrations run (<code>alembic upgrade 0002:0003 --sql</code>)"
        in markdown
    )
    assert "```sql\nBEGIN;" in markdown and markdown.count("</details>") == 1
    assert f"<sub>schema-warden {__version__} · PostgreSQL 16 throwaway · 1.2 s" in markdown


def test_markdown_shows_the_guard_verdict_and_its_problems() -> None:
    guard = GuardResult(
        ok=False,
        headline="stairway ✅ 3/3 · drift ❌",
        problems=(GuardProblem("models have a column no migration creates", ("  + column t.c (text)",)),),
    )
    markdown = render_markdown(_report(guard=guard))
    assert markdown.splitlines()[0].endswith("· ❌ guard failed")
    assert "**Guard:** ❌ failed — stairway ✅ 3/3 · drift ❌" in markdown
    assert (
        "- `models have a column no migration creates`\n  ```text\n    + column t.c (text)\n  ```" in markdown
    )
    passed = render_markdown(_report(guard=GuardResult(ok=True, headline="stairway ✅ 3/3")))
    assert passed.splitlines()[0].endswith("· ✅ guard passed")


def test_markdown_escapes_what_would_break_the_table_or_the_page() -> None:
    nasty = Change(
        "constraint",
        "added",
        "t.ck_t_a|b",
        "t",
        "CHECK ((a || b) <> '') <!-- schema-warden:pr-comment --> </details>",
        False,
    )
    backticked = Revision("0004", "rename `x` <b>bold</b>", "versions/0004.py")
    sql = "SELECT '```';\n"
    markdown = render_markdown(_report(changes=(nasty,), revisions=(backticked,), sql=sql))
    row = next(line for line in markdown.splitlines() if "ck_t_a" in line)
    assert row.count(" | ") == 2  # the pipes of the data are escaped: still three cells
    assert "\\|\\|" in row and "&lt;!-- schema-warden:pr-comment --&gt;" in row and "&lt;/details&gt;" in row
    assert "<!--" not in markdown and markdown.count("</details>") == 1
    assert "rename `x` &lt;b&gt;bold&lt;/b&gt;" in markdown
    assert "````sql\nSELECT '```';\n````" in markdown  # a longer fence than any run in the SQL


def test_markdown_notes_and_removed_revisions_are_shown() -> None:
    report = _report(
        notes=("base HEAD~1 has no Alembic migrations: every object is shown as added",),
        removed_revisions=(Revision("0009", "gone", "versions/0009.py"),),
    )
    markdown = render_markdown(report)
    assert "> ⚠️ base HEAD~1 has no Alembic migrations: every object is shown as added" in markdown
    assert "**Revisions the base has and this branch does not**" in markdown
    assert "warning: base HEAD~1 has no Alembic migrations" in render_text(report)


def test_markdown_fits_a_budget_sql_first_then_the_lists() -> None:
    many = tuple(
        Change("column", "added", f"readings.c{i:04d}", "readings", "text, nullable", False)
        for i in range(2000)
    )
    report = _report(changes=(DROP, *many), sql="SELECT 1;\n" * 5000)
    full = render_markdown(report)
    assert len(full) > 65_536
    fitted = render_markdown(report, max_chars=20_000, more="the [step summary](https://x/runs/1)")
    assert len(fitted) <= 20_000
    assert "```sql" not in fitted and "too long for here, see the [step summary](https://x/runs/1)" in fitted
    assert "| ⚠️ | `legacy_readings` | **table dropped**" in fitted  # destructive rows survive
    hidden = next(line for line in fitted.splitlines() if "more change" in line)
    shown = sum(1 for line in fitted.splitlines() if line.startswith("| ➕ |"))
    assert hidden == f"| … | {2001 - 1 - shown} more changes | see the [step summary](https://x/runs/1) |"
    small = render_markdown(_report(), max_chars=100_000)
    assert small == render_markdown(_report())  # nothing dropped when it fits


def test_markdown_fits_a_byte_budget_too() -> None:
    many = tuple(Change("column", "removed", f"r.c{i}", "r", "ünïcödé " * 10, True) for i in range(500))
    fitted = render_markdown(_report(changes=many), max_bytes=30_000)
    assert len(fitted.encode("utf-8")) <= 30_000


def test_json_is_stable_and_complete() -> None:
    guard = GuardResult(ok=True, headline="stairway ✅ 3/3")
    data = json.loads(render_json(_report(guard=guard)))
    assert data == to_dict(_report(guard=guard))
    assert data["format"] == 1 and data["schema_warden"] == __version__
    assert data["base"] == {"ref": "HEAD~1", "commit": "abc1234", "heads": ["0002"]}
    assert data["head"] == {"ref": "working tree", "commit": None, "heads": ["0003"]}
    assert data["summary"] == {
        "changed": True,
        "changes": 3,
        "destructive": 1,
        "new_revisions": 1,
        "text": "1 new revision, 3 schema changes (1 destructive)",
    }
    assert [(c["kind"], c["action"], c["name"], c["destructive"]) for c in data["changes"]] == [
        ("table", "removed", "legacy_readings", True),
        ("column", "added", "temperature_readings.humidity", False),
        ("index", "added", "ix_temperature_readings_humidity", False),
    ]
    assert data["changes"][0]["line"] == DROP.line()
    assert data["revisions"] == [
        {"id": "0003", "message": "add humidity, drop legacy", "file": REVISION.file}
    ]
    assert data["sql"] == {"command": "alembic upgrade 0002:0003 --sql", "text": SQL}
    assert data["guard"] == {"ok": True, "headline": "stairway ✅ 3/3", "problems": []}
    assert data["postgres_major"] == 16 and data["duration_s"] == 1.234


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_render_dispatches_by_format(fmt: str) -> None:
    assert render(_report(), fmt) == {"text": render_text, "markdown": render_markdown, "json": render_json}[
        fmt
    ](_report())


def test_guard_from_check_json_summarizes_checks_and_lists_failures() -> None:
    data = {
        "ok": False,
        "checks": [
            {"name": "stairway", "status": "pass", "revision": "0001", "message": "ok", "details": []},
            {"name": "stairway", "status": "pass", "revision": "0002", "message": "ok", "details": []},
            {
                "name": "stairway",
                "status": "fail",
                "revision": "0003",
                "message": "downgrade fails",
                "details": [],
            },
            {
                "name": "drift",
                "status": "fail",
                "revision": None,
                "message": "models differ",
                "details": ["+ x"],
            },
            {"name": "environment", "status": "note", "revision": None, "message": "PG 15", "details": []},
        ],
        "duration_s": 1.0,
    }
    guard = guard_from_check_json(data)
    assert guard.ok is False
    assert guard.headline == "stairway ❌ 2/3 · drift ❌"
    assert guard.problems == (
        GuardProblem("revision 0003: downgrade fails"),
        GuardProblem("models differ", ("+ x",)),
    )
    clean = guard_from_check_json({"ok": True, "checks": [{"name": "drift", "status": "pass"}]})
    assert clean == GuardResult(ok=True, headline="drift ✅", problems=())


@pytest.mark.parametrize("bad", [[], {"checks": []}, {"ok": True}, "text"])
def test_guard_from_check_json_rejects_other_documents(bad: object) -> None:
    with pytest.raises(ValueError, match="schema-warden check --format json"):
        guard_from_check_json(bad)


# ---------------------------------------------------------------- the lint's result


def _finding(rule: str, severity: str, target: str, allowed: str | None = None) -> Finding:
    return Finding(rule, severity, f"-- {rule}", target, "why", "safe", allowed)


def _lint_report() -> LintReport:
    """What schema_warden.commands.lint builds: findings in revision order, allowed ones mixed in."""
    return LintReport(
        "revisions new or changed since origin/main",
        (
            RevisionResult(
                "0006",
                "versions/0006_rename.py",
                (
                    _finding("prefer-timestamptz", "warning", "readings.seen_at"),
                    _finding(
                        "ban-drop-column", "error", "readings.legacy_value", "value moved to `readings_v2`"
                    ),
                ),
            ),
            RevisionResult(
                "0007",
                "versions/0007_drop.py",
                (_finding("ban-drop-table", "error", "legacy"),),
                (
                    AllowProblem(
                        12, "allow drop-table has no reason: write '# schema-warden: allow RULE -- why'"
                    ),
                ),
            ),
        ),
    )


def test_lint_from_json_reads_what_schema_warden_lint_writes() -> None:
    lint = lint_from_json(json.loads(json.dumps(report_dict(_lint_report()))))
    assert lint.ok is False and lint.revisions == 2 and lint.bad_allows == 1
    assert lint.selection == "revisions new or changed since origin/main"
    assert lint.findings == (  # errors, then warnings, then the allowed ones
        LintFinding("ban-drop-table", "error", "0007", "legacy"),
        LintFinding("prefer-timestamptz", "warning", "0006", "readings.seen_at"),
        LintFinding(
            "ban-drop-column", "error", "0006", "readings.legacy_value", "value moved to `readings_v2`"
        ),
    )
    assert lint.problems == (
        "bad allow comment in versions/0007_drop.py:12: allow drop-table has no reason: "
        "write '# schema-warden: allow RULE -- why'",
    )
    assert (lint.count("error"), lint.count("warning"), lint.allowed) == (1, 1, 1)
    passing = LintReport("all revisions", (RevisionResult("0001", "v/0001.py", ()),))
    assert lint_from_json(report_dict(passing)) == LintResult(True, revisions=1, selection="all revisions")


@pytest.mark.parametrize("bad", [{"ok": True, "checks": []}, {"command": "lint"}, [], "text"])
def test_lint_from_json_rejects_other_documents(bad: object) -> None:
    with pytest.raises(ValueError, match="schema-warden lint --format json"):
        lint_from_json(bad)


def test_markdown_shows_the_lint_verdict_compactly_errors_first() -> None:
    lint = lint_from_json(report_dict(_lint_report()))
    markdown = render_markdown(_report(guard=GuardResult(ok=True, headline="stairway ✅ 3/3"), lint=lint))
    assert markdown.splitlines()[0].endswith("· ✅ guard passed · ❌ lint failed")
    block = markdown[markdown.index("**Lint:**") :].split("\n\n")
    assert block[0] == (
        "**Lint:** ❌ failed — 1 error, 1 warning, 1 allowed, 1 bad allow comment (2 revisions linted)"
    )
    assert block[1].splitlines() == [
        "- ❌ bad allow comment in versions/0007_drop.py:12: allow drop-table has no reason: "
        "write '# schema-warden: allow RULE -- why'",
        "- ❌ `ban-drop-table` on `0007` (`legacy`)",
        "- ⚠️ `prefer-timestamptz` on `0006` (`readings.seen_at`) · warning",
        "- ✅ `ban-drop-column` on `0006` (`readings.legacy_value`) — "
        "allowed: “value moved to `readings_v2`”",
    ]
    assert block[2] == "`schema-warden lint --base origin/main` shows why each one is risky and the safe way."
    # after the guard, before the diagram and the revisions
    assert markdown.index("**Guard:**") < markdown.index("**Lint:**") < markdown.index("**New revisions**")


def test_markdown_of_a_passing_lint_is_one_line_and_an_allow_reason_cannot_break_the_page() -> None:
    clean = render_markdown(
        _report(lint=LintResult(True, revisions=1, selection="revisions new or changed since x"))
    )
    assert clean.splitlines()[0].endswith("· ✅ lint passed")
    assert (
        "**Lint:** ✅ passed — 0 errors, 0 warnings, 0 allowed (1 revision linted)\n\n**New revisions**"
        in clean
    )
    assert "shows why" not in clean
    nasty = LintFinding(
        "ban-truncate", "error", "0009", "t", "small <!-- schema-warden:pr-comment --> </details>"
    )
    markdown = render_markdown(_report(lint=LintResult(True, revisions=1, findings=(nasty,))))
    assert "allowed: “small &lt;!-- schema-warden:pr-comment --&gt; &lt;/details&gt;”" in markdown
    assert "<!--" not in markdown and markdown.count("</details>") == 1


def test_text_and_json_carry_the_lint() -> None:
    lint = lint_from_json(report_dict(_lint_report()))
    text = render_text(_report(lint=lint)).splitlines()
    start = text.index("lint failed: 1 error, 1 warning, 1 allowed, 1 bad allow comment (2 revisions linted)")
    assert text[start + 1 : start + 5] == [
        "  bad allow comment in versions/0007_drop.py:12: allow drop-table has no reason: "
        "write '# schema-warden: allow RULE -- why'",
        "  ban-drop-table on 0007 (legacy): error",
        "  prefer-timestamptz on 0006 (readings.seen_at): warning",
        "  ban-drop-column on 0006 (readings.legacy_value): allowed: value moved to `readings_v2`",
    ]
    data = to_dict(_report(lint=lint))["lint"]
    assert data["ok"] is False and (data["errors"], data["warnings"], data["allowed"]) == (1, 1, 1)
    assert data["bad_allow_comments"] == 1 and len(data["problems"]) == 1
    assert data["findings"][0] == {
        "rule": "ban-drop-table",
        "severity": "error",
        "revision": "0007",
        "target": "legacy",
        "allowed": None,
    }
    assert to_dict(_report())["lint"] is None


def test_markdown_fits_a_budget_shortening_the_lint_list_errors_first() -> None:
    many = tuple(
        LintFinding("prefer-timestamptz", "warning", f"{i:04d}", f"t{i}.seen_at") for i in range(1500)
    )
    error = LintFinding("ban-drop-table", "error", "0001", "legacy")
    lint = LintResult(False, revisions=1500, findings=(error, *many))
    assert len(render_markdown(_report(lint=lint))) > 60_000
    fitted = render_markdown(_report(lint=lint), max_chars=20_000, more="the step summary")
    assert len(fitted) <= 20_000
    assert "- ❌ `ban-drop-table` on `0001` (`legacy`)" in fitted
    hidden = next(line for line in fitted.splitlines() if "more lint finding" in line)
    shown = sum(1 for line in fitted.splitlines() if line.startswith("- ⚠️ `prefer-timestamptz`"))
    assert hidden == f"- … {1500 - shown} more lint findings: see the step summary"


# ---------------------------------------------------------------- the ER diagram and GitHub's limit

COMMENT_LIMIT = 65_536


def _diagram(chars: int) -> str:
    lines = [f"  t{i} {{ bigint id PK }}" for i in range(chars // 22)]
    body = "\n".join(["erDiagram", *lines])
    return f"<details><summary>{mermaid.DIFF_SUMMARY}</summary>\n\n```mermaid\n{body}\n```\n</details>\n"


def test_a_diagram_too_long_for_the_comment_is_left_out_with_a_note() -> None:
    note = (
        "_ER diagram of the touched tables left out: "
        "it would take this comment past GitHub's 65,536-character limit._"
    )
    assert mermaid.DIFF_LEFT_OUT_NOTE.strip() == note
    report = _report(diagram=_diagram(50_000), sql="SELECT 1;\n" * 2000)  # 50k + 20k
    full = render_markdown(report)
    assert len(full) > COMMENT_LIMIT and "```mermaid" in full and note not in full
    fitted = render_markdown(report, max_chars=COMMENT_LIMIT)
    assert len(fitted) <= COMMENT_LIMIT
    assert "```mermaid" not in fitted and "erDiagram" not in fitted
    assert note in fitted.splitlines()
    assert "```sql" in fitted  # only the diagram had to go
    assert fitted.index("| ⚠️ | `legacy_readings`") < fitted.index(note) < fitted.index("**New revisions**")
    # a diagram that fits stays, without the note
    small = render_markdown(_report(diagram=_diagram(2_000)), max_chars=COMMENT_LIMIT)
    assert "```mermaid" in small and note not in small


def test_a_huge_report_keeps_the_note_while_everything_else_shrinks() -> None:
    many = tuple(
        Change("column", "added", f"readings.c{i:04d}", "readings", "text, nullable", False)
        for i in range(3000)
    )
    report = _report(changes=(DROP, *many), diagram=_diagram(60_000), sql="SELECT 1;\n" * 8000)
    fitted = render_markdown(report, max_chars=COMMENT_LIMIT)
    assert len(fitted) <= COMMENT_LIMIT
    assert mermaid.DIFF_LEFT_OUT_NOTE.strip() in fitted and "erDiagram" not in fitted
    assert "```sql" not in fitted and "more change" in fitted
    assert render_markdown(_report(diagram=None), max_chars=COMMENT_LIMIT).count("ER diagram") == 0


def test_markdown_shows_what_the_traced_statements_locked_and_rewrote() -> None:
    """``lint --trace`` JSON carries each risky statement; the PR comment lists them per revision."""
    data = report_dict(_lint_report())
    data["revisions"][0]["risky"] = [
        {
            "statement": "ALTER TABLE readings ALTER COLUMN total TYPE BIGINT",
            "line": 14,
            "did": "ACCESS EXCLUSIVE on readings, table readings rewritten",
        }
    ]
    lint = lint_from_json(json.loads(json.dumps(data)))
    revision = data["revisions"][0]["revision"]
    assert lint.risky == (
        (
            revision,
            "ALTER TABLE readings ALTER COLUMN total TYPE BIGINT",
            "ACCESS EXCLUSIVE on readings, table readings rewritten",
        ),
    )
    markdown = render_markdown(_report(guard=GuardResult(ok=True, headline="stairway ✅ 3/3"), lint=lint))
    assert "**What the migrations lock and rewrite** (traced on a throwaway server):" in markdown
    assert (
        f"- `{revision}`: `ALTER TABLE readings ALTER COLUMN total TYPE BIGINT` — "
        "ACCESS EXCLUSIVE on readings, table readings rewritten"
    ) in markdown.splitlines()
