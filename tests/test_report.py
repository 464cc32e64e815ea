"""Rendering of check results: pure, no server."""

from __future__ import annotations

import json

import pytest
from schema_warden.render.report import FAIL, NOTE, PASS, CheckResult, Report, render

PASSING = Report(
    "schema-warden check: alembic.ini (2 revisions)",
    (
        CheckResult("stairway", PASS, "0001 (create readings): upgrade, downgrade, upgrade", "0001"),
        CheckResult("round-trip", PASS, "upgrade head, downgrade base, upgrade head"),
    ),
    1.234,
)

FAILING = Report(
    "schema-warden check: alembic.ini (2 revisions)",
    (
        CheckResult("stairway", PASS, "0001 (create readings): upgrade, downgrade, upgrade", "0001"),
        CheckResult(
            "stairway",
            FAIL,
            "revision 0002 (versions/0002_add.py): downgrade leaves column readings.device behind",
            "0002",
            ("more | detail",),
        ),
        CheckResult("drift", NOTE, "skipped: the stairway did not reach head"),
    ),
    2.0,
    ("PostgreSQL 15.18",),
)


def test_json_has_the_documented_shape() -> None:
    data = json.loads(render(FAILING, "json"))
    assert set(data) == {"ok", "checks", "duration_s"}
    assert data["ok"] is False
    assert data["duration_s"] == 2.0
    assert [set(c) for c in data["checks"]] == [{"name", "status", "revision", "message", "details"}] * 3
    assert [c["status"] for c in data["checks"]] == ["pass", "fail", "note"]
    assert data["checks"][1]["revision"] == "0002"
    assert data["checks"][1]["details"] == ["more | detail"]
    assert data["checks"][2]["revision"] is None
    assert json.loads(render(PASSING, "json"))["ok"] is True


def test_text_puts_problems_first_with_their_detail() -> None:
    text = render(FAILING, "text")
    lines = text.splitlines()
    assert lines[0] == FAILING.title
    assert lines[1] == "  PostgreSQL 15.18"
    assert lines[2].startswith("FAIL stairway: revision 0002 (versions/0002_add.py): downgrade leaves column")
    assert lines[3].strip() == "more | detail"
    assert "note drift: skipped" in text
    assert lines[-1] == "1 problem found: 1 passed, 1 note in 2.0 s"


def test_text_of_a_passing_run_ends_ok() -> None:
    text = render(PASSING, "text")
    assert "FAIL" not in text
    assert text.splitlines()[-1] == "ok: 2 passed in 1.2 s"


def test_markdown_has_verdict_table_and_details() -> None:
    md = render(FAILING, "markdown")
    assert md.startswith(f"### {FAILING.title}: ❌ 1 problem(s) found")
    assert "| ❌ | stairway | 0002 |" in md
    assert "```\nmore | detail\n```" in md  # details verbatim inside the code block
    assert "more \\| detail" not in md
    assert render(PASSING, "markdown").startswith(f"### {PASSING.title}: ✅ passed")


def test_unknown_status_and_format_are_refused() -> None:
    with pytest.raises(ValueError, match="status"):
        CheckResult("x", "maybe", "m")
    with pytest.raises(ValueError, match="format"):
        render(PASSING, "html")
