"""GitHub integration: step summary, sticky comment body, limits, fork detection (no network)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from schema_warden.commands.github import (
    COMMENT_MAX_BYTES,
    COMMENT_MAX_CHARS,
    MARKER,
    comment_body,
    context_from_env,
    default_base,
    is_fork_pull_request,
    publish,
    publish_error,
    run_url,
    set_output,
    truncate,
    write_step_summary,
)
from schema_warden.errors import ProjectError
from schema_warden.render import mermaid
from schema_warden.render.diff import DiffReport, Side
from schema_warden.schema.diff import Change

ADD = Change("column", "added", "readings.humidity", "readings", "double precision, nullable", False)
DROP = Change("table", "removed", "legacy", "legacy", "2 columns", True)


def _report(
    changes: tuple[Change, ...] = (DROP, ADD), sql: str | None = "DROP TABLE legacy;\n"
) -> DiffReport:
    return DiffReport(
        base=Side("origin/main", "abc1234", ("0002",)),
        head=Side("working tree"),
        changes=changes,
        sql=sql,
        sql_command="alembic upgrade 0002:0003 --sql",
        postgres_major=16,
        duration_s=0.9,
    )


def _event(tmp_path: Path, head_repo: str | None = "acme/iot", base_repo: str = "acme/iot") -> Path:
    head = {"repo": {"full_name": head_repo}} if head_repo else {"repo": None}
    event = {
        "number": 7,
        "pull_request": {"number": 7, "head": head, "base": {"repo": {"full_name": base_repo}}},
    }
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event), encoding="utf-8")
    return path


def _env(tmp_path: Path, event: Path | None) -> dict[str, str]:
    env = {
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
        "GITHUB_BASE_REF": "main",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/iot",
        "GITHUB_RUN_ID": "99",
    }
    if event is not None:
        env["GITHUB_EVENT_PATH"] = str(event)
    return env


def _outputs(path: Path) -> dict[str, str]:
    """Parse $GITHUB_OUTPUT the way the runner does (name<<DELIMITER ... DELIMITER)."""
    text = path.read_text(encoding="utf-8")
    found = {}
    for match in re.finditer(r"^(\w+)<<(\S+)\n(.*?)\n\2$", text, re.MULTILINE | re.DOTALL):
        found[match.group(1)] = match.group(3)
    return found


def test_is_fork_pull_request() -> None:
    def event(head: object, base: str = "acme/iot") -> dict[str, object]:
        return {"pull_request": {"head": {"repo": head}, "base": {"repo": {"full_name": base}}}}

    assert not is_fork_pull_request(event({"full_name": "acme/iot"}))
    assert is_fork_pull_request(event({"full_name": "someone/iot"}))
    assert is_fork_pull_request(event(None))  # the fork was deleted
    assert not is_fork_pull_request({"ref": "refs/heads/main"})  # a push


def test_context_reads_the_environment_and_event_file(tmp_path: Path) -> None:
    ctx = context_from_env(_env(tmp_path, _event(tmp_path)))
    assert ctx.is_pull_request and not ctx.is_fork
    assert ctx.run_url == "https://github.com/acme/iot/actions/runs/99"
    assert default_base(ctx) == "origin/main"
    assert ctx.step_summary == tmp_path / "summary.md"
    no_env = context_from_env({})
    assert no_env.step_summary is None and not no_env.is_pull_request and no_env.run_url is None
    assert run_url({"GITHUB_REPOSITORY": "a/b", "GITHUB_RUN_ID": "5", "GITHUB_RUN_ATTEMPT": "2"}) == (
        "https://github.com/a/b/actions/runs/5/attempts/2"
    )


def test_unreadable_event_file_is_a_one_line_project_error(tmp_path: Path) -> None:
    bad = tmp_path / "event.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ProjectError, match=r"^the GitHub event file .*event.json is not JSON"):
        context_from_env({"GITHUB_EVENT_PATH": str(bad)})
    with pytest.raises(ProjectError, match="cannot read the GitHub event file"):
        context_from_env({"GITHUB_EVENT_PATH": str(tmp_path / "missing.json")})


def test_publish_writes_summary_and_hands_the_marked_comment_on(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    ctx = context_from_env(_env(tmp_path, _event(tmp_path)))
    published = publish(_report(), ctx)
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n### Schema diff")  # appended, not overwritten
    assert "| ⚠️ | `legacy` | **table dropped**: 2 columns |" in text
    assert published.comment is not None and published.comment.startswith(MARKER + "\n### Schema diff")
    assert _outputs(tmp_path / "output.txt") == {"comment": published.comment}


def test_fork_pull_request_gets_the_summary_but_no_comment(tmp_path: Path) -> None:
    ctx = context_from_env(_env(tmp_path, _event(tmp_path, head_repo="someone/iot")))
    published = publish(_report(), ctx)
    assert published.comment is None and "fork" in published.reason
    assert "### Schema diff" in (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert not (tmp_path / "output.txt").exists()


def test_output_delimiter_cannot_be_forged_by_the_content(tmp_path: Path) -> None:
    out = tmp_path / "output.txt"
    value = "line one\nEOF\nschema_warden_\ninjected=yes"
    set_output("comment", value, out)
    set_output("comment2", value, out)
    first, second = re.findall(r"<<(\S+)\n", out.read_text(encoding="utf-8"))
    assert first != second and first not in value
    assert _outputs(out) == {"comment": value, "comment2": value}


def test_comment_fits_githubs_limit_and_points_to_the_summary(tmp_path: Path) -> None:
    many = tuple(
        Change("column", "added", f"readings.c{i:05d}", "readings", "x" * 40, False) for i in range(5000)
    )
    ctx = context_from_env(_env(tmp_path, _event(tmp_path)))
    body = comment_body(_report(changes=(DROP, *many), sql="SELECT 1;\n" * 20_000), ctx)
    assert len(body) <= COMMENT_MAX_CHARS and len(body.encode("utf-8")) <= COMMENT_MAX_BYTES
    assert body.startswith(MARKER)
    assert "[step summary](https://github.com/acme/iot/actions/runs/99)" in body
    assert "**table dropped**" in body
    full = tmp_path / "summary.md"
    write_step_summary(body, full)
    assert full.read_text(encoding="utf-8") == body  # a fitting text is written unchanged


def test_comment_leaves_out_a_diagram_too_long_for_it_and_says_so(tmp_path: Path) -> None:
    tables = "\n".join(f"  t{i:05d} {{ bigint id PK }}" for i in range(3000))  # ~70,000 characters
    fence = f"```mermaid\nerDiagram\n{tables}\n```"
    diagram = f"<details><summary>{mermaid.DIFF_SUMMARY}</summary>\n\n{fence}\n</details>"
    ctx = context_from_env(_env(tmp_path, _event(tmp_path)))
    published = publish(replace(_report(), diagram=diagram), ctx)
    comment = published.comment or ""
    assert comment.startswith(MARKER) and len(comment) <= COMMENT_MAX_CHARS
    assert "erDiagram" not in comment and mermaid.DIFF_LEFT_OUT_NOTE.strip() in comment.splitlines()
    assert "DROP TABLE legacy;" in comment and "**Truncated:**" not in comment  # only the diagram went
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "t02999 { bigint id PK }" in summary and mermaid.DIFF_LEFT_OUT_NOTE.strip() not in summary


def test_truncate_cuts_at_lines_and_closes_open_blocks() -> None:
    text = (
        "# title\n\n<details><summary>SQL</summary>\n\n```sql\n" + "SELECT 1;\n" * 1000 + "```\n</details>\n"
    )
    cut = truncate(text, max_chars=500, pointer="**Truncated:** see the summary.")
    assert len(cut) <= 500
    assert cut.endswith("```\n</details>\n\n**Truncated:** see the summary.\n")
    assert all(
        line in ("", "# title") or line.startswith(("<", "`", "SELECT", "**")) for line in cut.splitlines()
    )
    assert truncate("short\n", max_chars=500, pointer="x") == "short\n"
    one_line = truncate("y" * 10_000, max_chars=300, pointer="cut")
    assert len(one_line) <= 300 and one_line.startswith("yyyy") and one_line.endswith("cut\n")


def test_truncate_respects_a_byte_budget() -> None:
    text = "\n".join(f"⚠️ destructive change number {i}" for i in range(10_000))
    cut = truncate(text, max_bytes=5_000, pointer="more elsewhere")
    assert len(cut.encode("utf-8")) <= 5_000 and cut.endswith("more elsewhere\n")


def test_error_is_published_to_summary_and_comment(tmp_path: Path) -> None:
    ctx = context_from_env(_env(tmp_path, _event(tmp_path)))
    published = publish_error("unknown git ref origin/nope: ...", "detail line", ctx)
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "### Schema diff — could not run" in summary and "unknown git ref origin/nope" in summary
    assert published.comment is not None and published.comment.startswith(MARKER)
    assert "unknown git ref origin/nope" in _outputs(tmp_path / "output.txt")["comment"]
