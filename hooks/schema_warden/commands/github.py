"""GitHub Actions integration of ``schema-warden diff --github``.

The workflow stays thin: this module writes the Markdown report to ``$GITHUB_STEP_SUMMARY``,
builds the sticky PR comment body (it starts with :data:`MARKER`, so the comment step finds
and updates the same comment on every push) and hands it to the next job through
``$GITHUB_OUTPUT``. Pull requests from forks get a read-only token: no comment body is
handed on, the step summary still shows everything.

Limits: GitHub rejects a comment longer than 65,536 characters and a step summary larger
than 1 MiB. The comment also travels to ``gh api`` as one environment variable, and Linux
caps a single one at 128 KiB, so its UTF-8 size is bounded too.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schema_warden.errors import ProjectError
from schema_warden.render.diff import DiffReport, render_markdown

MARKER = "<!-- schema-warden:pr-comment -->"
COMMENT_MAX_CHARS = 65_536
COMMENT_MAX_BYTES = 120_000
SUMMARY_MAX_BYTES = 1024 * 1024 - 1024  # the summary may already hold other steps' text
OUTPUT_NAME = "comment"


@dataclass(frozen=True)
class GitHubContext:
    """What a workflow step knows about its run (from the environment and the event file)."""

    event_name: str | None
    event: dict[str, Any]
    base_ref: str | None  # GITHUB_BASE_REF: the PR's target branch
    repository: str | None
    step_summary: Path | None
    output: Path | None
    run_url: str | None

    @property
    def is_pull_request(self) -> bool:
        return "pull_request" in self.event

    @property
    def is_fork(self) -> bool:
        return is_fork_pull_request(self.event)


@dataclass(frozen=True)
class Published:
    """Where the report went."""

    summary: Path | None
    comment: str | None  # the body handed to the comment job, None when none is
    reason: str  # one line for the log: why there is or is no comment


def is_fork_pull_request(event: Mapping[str, Any]) -> bool:
    """A PR whose head lives in another repository (its token is read-only)."""
    pr = event.get("pull_request")
    if not isinstance(pr, Mapping):
        return False
    head = ((pr.get("head") or {}).get("repo") or {}).get("full_name")
    base = ((pr.get("base") or {}).get("repo") or {}).get("full_name")
    if head is None:  # the head repository was deleted: treat as foreign
        return True
    return head != base


def read_event(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ProjectError(f"cannot read the GitHub event file {path}: {err.strerror}") from err
    except ValueError as err:
        raise ProjectError(f"the GitHub event file {path} is not JSON: {err}") from err
    return data if isinstance(data, dict) else {}


def run_url(env: Mapping[str, str]) -> str | None:
    """The run's page, where the step summary is shown."""
    server, repo, run_id = (env.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    if not (repo and run_id):
        return None
    url = f"{(server or 'https://github.com').rstrip('/')}/{repo}/actions/runs/{run_id}"
    attempt = env.get("GITHUB_RUN_ATTEMPT")
    return f"{url}/attempts/{attempt}" if attempt and attempt != "1" else url


def context_from_env(env: Mapping[str, str] | None = None) -> GitHubContext:
    env = os.environ if env is None else env

    def path(name: str) -> Path | None:
        value = env.get(name)
        return Path(value) if value else None

    return GitHubContext(
        event_name=env.get("GITHUB_EVENT_NAME"),
        event=read_event(env.get("GITHUB_EVENT_PATH")),
        base_ref=env.get("GITHUB_BASE_REF") or None,
        repository=env.get("GITHUB_REPOSITORY"),
        step_summary=path("GITHUB_STEP_SUMMARY"),
        output=path("GITHUB_OUTPUT"),
        run_url=run_url(env),
    )


def default_base(ctx: GitHubContext) -> str | None:
    """The ref a pull request is compared with: its target branch as fetched by checkout."""
    if ctx.base_ref:
        return f"origin/{ctx.base_ref}"
    base = (ctx.event.get("pull_request") or {}).get("base") or {}
    return base.get("sha")


def _fits(text: str, max_chars: int | None, max_bytes: int | None) -> bool:
    return (max_chars is None or len(text) <= max_chars) and (
        max_bytes is None or len(text.encode("utf-8")) <= max_bytes
    )


def truncate(text: str, *, max_chars: int | None = None, max_bytes: int | None = None, pointer: str) -> str:
    """Cut Markdown at a line boundary to fit, close an open code fence or <details>, add ``pointer``."""
    if _fits(text, max_chars, max_bytes):
        return text
    lines = text.splitlines()

    def most(count: int, build: Any) -> int:
        """The largest n in [0, count] whose build(n) fits (build grows with n)."""
        low, high, best = 0, count, 0
        while low <= high:
            middle = (low + high) // 2
            if _fits(build(middle), max_chars, max_bytes):
                best, low = middle, middle + 1
            else:
                high = middle - 1
        return best

    whole = most(len(lines), lambda n: _closed(lines[:n], pointer))
    if whole < len(lines):  # part of the next line, for one enormous line
        rest = lines[whole]
        part = most(len(rest), lambda n: _closed([*lines[:whole], rest[:n] + " …"], pointer))
        if part:
            return _closed([*lines[:whole], rest[:part] + " …"], pointer)
    return _closed(lines[:whole], pointer)


def _closed(lines: list[str], pointer: str) -> str:
    fence: str | None = None
    for line in lines:
        stripped = line.strip()
        if fence is None and stripped.startswith("```"):
            fence = stripped[: len(stripped) - len(stripped.lstrip("`"))]
        elif fence is not None and stripped == fence:
            fence = None
    closing = [fence] if fence else []
    opened = sum(line.count("<details>") for line in lines)
    if opened > sum(line.count("</details>") for line in lines):
        closing.append("</details>")
    return "\n".join([*lines, *closing, "", pointer]) + "\n"


def _summary_link(ctx: GitHubContext) -> str:
    return f"the [step summary]({ctx.run_url})" if ctx.run_url else "the step summary of this run"


def comment_body(report: DiffReport, ctx: GitHubContext) -> str:
    """The sticky comment: the marker first, the report fitted to GitHub's limits."""
    prefix = MARKER + "\n"
    more = _summary_link(ctx)
    budget_chars = COMMENT_MAX_CHARS - len(prefix)
    budget_bytes = COMMENT_MAX_BYTES - len(prefix.encode("utf-8"))
    text = render_markdown(report, max_chars=budget_chars, max_bytes=budget_bytes, more=more)
    pointer = f"**Truncated:** the full report is in {more}."
    return prefix + truncate(text, max_chars=budget_chars, max_bytes=budget_bytes, pointer=pointer)


def error_markdown(message: str, detail: str = "") -> str:
    """What the summary and comment say when the diff could not run at all."""
    body = f"### Schema diff — could not run\n\n```text\n{message}\n```\n"
    if detail.strip():
        body += f"\n<details><summary>detail</summary>\n\n```text\n{detail.rstrip()}\n```\n</details>\n"
    return body


def write_step_summary(markdown: str, path: Path) -> None:
    """Append to the step summary (other steps may have written to it too)."""
    text = truncate(
        markdown,
        max_bytes=SUMMARY_MAX_BYTES,
        pointer="**Truncated:** run `schema-warden diff` for all of it.",
    )
    with open(path, "a", encoding="utf-8") as summary:
        summary.write(text if text.endswith("\n") else text + "\n")


def set_output(name: str, value: str, path: Path) -> None:
    """A multi-line step output; the delimiter is random so no text in ``value`` can end it early."""
    delimiter = f"schema_warden_{secrets.token_hex(16)}"
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


def publish_markdown(summary_md: str, comment_md: str, ctx: GitHubContext) -> Published:
    if ctx.step_summary is not None:
        write_step_summary(summary_md, ctx.step_summary)
    if not ctx.is_pull_request:
        return Published(ctx.step_summary, None, "not a pull request: no PR comment")
    if ctx.is_fork:
        return Published(
            ctx.step_summary,
            None,
            "pull request from a fork: its token is read-only, so no PR comment (the step summary has all)",
        )
    if ctx.output is not None:
        set_output(OUTPUT_NAME, comment_md, ctx.output)
    return Published(ctx.step_summary, comment_md, "PR comment body handed to the comment job")


def publish(report: DiffReport, ctx: GitHubContext) -> Published:
    """Step summary (whole report) and the comment body (fitted) of a finished diff."""
    return publish_markdown(render_markdown(report), comment_body(report, ctx), ctx)


def publish_error(message: str, detail: str, ctx: GitHubContext) -> Published:
    markdown = error_markdown(message, detail)
    comment = (
        MARKER
        + "\n"
        + truncate(
            markdown,
            max_chars=COMMENT_MAX_CHARS - len(MARKER) - 1,
            max_bytes=COMMENT_MAX_BYTES - len(MARKER) - 1,
            pointer=f"**Truncated:** see {_summary_link(ctx)}.",
        )
    )
    return publish_markdown(markdown, comment, ctx)
