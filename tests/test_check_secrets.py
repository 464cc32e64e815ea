"""``schema-warden secrets``: .env files and URLs with real passwords are blocked, placeholders pass.

The real-looking passwords below are assembled at run time, so this file itself passes the check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from schema_warden.commands import secrets as check_secrets
from schema_warden.commands.secrets import is_env_file, is_placeholder

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL = "npg_" + "8xK2mQz7LpRt"  # the shape of a Neon-generated password
NEON = "ep-cool-darkness-123456.eu-central-1.aws.neon.tech"


def url(password: str, scheme: str = "postgresql", host: str = NEON) -> str:
    return scheme + "://app:" + password + "@" + host + "/iot?sslmode=require"


def run(tmp_path: Path, files: dict[str, str | bytes], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    code = check_secrets.main([str(tmp_path / name) for name in files])
    captured = capsys.readouterr()
    assert REAL not in captured.out + captured.err, "the password itself must never be printed"
    return code, captured.out


@pytest.mark.parametrize("name", [".env", ".env.production", ".env.local", "config/.env", ".pgpass"])
def test_env_files_are_blocked(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(tmp_path, {name: "DATABASE_URL=" + url(REAL) + "\n"}, capsys)
    assert code == 1
    path = tmp_path / name
    assert out.splitlines()[0] == (
        f"{path}: .env files hold real credentials and are never committed — `git rm --cached {path}`, "
        "list it in .gitignore, commit a .env.example with placeholders"
    )
    assert len(out.splitlines()) == 2  # the file is blocked once, not also for the URL in it


@pytest.mark.parametrize("name", [".env.example", ".env.sample", ".env.template"])
def test_env_example_with_placeholders_passes(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    content = "DATABASE_URL=" + url("password", host="host") + "\n"
    assert run(tmp_path, {name: content}, capsys) == (0, "")


def test_env_example_with_a_real_password_is_blocked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(tmp_path, {".env.example": "# ours\nDATABASE_URL=" + url(REAL) + "\n"}, capsys)
    assert code == 1
    assert f".env.example:2: database URL with a password: postgresql://app:***@{NEON}/iot" in out


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg2", "postgresql+asyncpg"])
def test_url_with_real_password_in_a_text_file_names_file_line_and_masked_url(
    tmp_path: Path, scheme: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(tmp_path, {"app/settings.py": f'\n\nDSN = "{url(REAL, scheme)}"\n'}, capsys)
    assert code == 1
    assert out.splitlines()[0] == (
        f"{tmp_path / 'app/settings.py'}:3: database URL with a password: "
        f"{scheme}://app:***@{NEON}/iot?sslmode=require — move it to .env (git-ignored) or a CI secret, "
        "and rotate the password if it was ever committed"
    )


def test_password_as_url_parameter_is_found_and_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = "postgresql://app@" + NEON + "/iot?sslmode=require&password=" + REAL + "&channel_binding=require"
    code, out = run(tmp_path, {"deploy.sh": "export DATABASE_URL='" + line + "'\n"}, capsys)
    assert code == 1
    assert (
        f"deploy.sh:1: database URL with a password: postgresql://app@{NEON}/iot?sslmode=require&password=***"
        "&channel_binding=require — move it"
    ) in out
    placeholder = "postgresql://app@" + NEON + "/iot?password=${PGPASSWORD}"
    assert run(tmp_path, {"deploy.sh": placeholder + "\n"}, capsys) == (0, "")


@pytest.mark.parametrize(
    "password",
    ["password", "PASSWORD", "<password>", "${DB_PASSWORD}", "changeme", "xxx", "***", "secret", "pass", ""],
)
def test_placeholders_pass(tmp_path: Path, password: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, {"README.md": "connect with " + url(password) + "\n"}, capsys) == (0, "")


@pytest.mark.parametrize(
    ("password", "host", "placeholder"),
    [
        ("%(db_password)s", NEON, True),
        ("{password}", NEON, True),
        ("S3cret", NEON, True),
        ("p%40ss", NEON, True),
        ("sec%40ret", NEON, True),
        ("postgres", "localhost", True),
        ("postgres", NEON, False),
        (REAL, "db.example.com", True),
        (REAL, "prod.example.invalid", True),
        (REAL, "localhost", False),
        ("hunter2", NEON, False),
        ("a%26b", NEON, True),
        ("Zq9!x", NEON, False),
        ("correct-horse-battery-staple", NEON, False),
    ],
)
def test_placeholder_rules(password: str, host: str, placeholder: bool) -> None:
    assert is_placeholder(password, host) is placeholder


def test_alembic_ini_with_a_password_in_sqlalchemy_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini = "[alembic]\nscript_location = migrations\nsqlalchemy.url = " + url(REAL, "mysql+pymysql") + "\n"
    code, out = run(tmp_path, {"alembic.ini": ini}, capsys)
    assert code == 1
    assert out.splitlines()[0] == (
        f"{tmp_path / 'alembic.ini'}:3: sqlalchemy.url holds a password: "
        f"mysql+pymysql://app:***@{NEON}/iot?sslmode=require — remove it from alembic.ini and let "
        "env.py read DATABASE_URL from the environment or .env"
    )
    pg_ini = "[alembic]\nsqlalchemy.url = " + url(REAL) + "\n"
    code, out = run(tmp_path, {"alembic.ini": pg_ini}, capsys)
    assert code == 1
    assert len(out.splitlines()) == 2  # one finding (not two for one line) and the summary


def test_alembic_template_url_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = "[alembic]\nsqlalchemy.url = driver://user:pass@localhost/dbname\n"
    assert run(tmp_path, {"alembic.ini": ini}, capsys) == (0, "")


def test_binary_files_are_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blob = b"\x89PNG\x00\x01" + url(REAL).encode() + b"\x00"
    assert run(tmp_path, {"logo.png": blob}, capsys) == (0, "")


def test_pragma_allows_a_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = f'FIXTURE = "{url(REAL)}"  # pragma: allowlist secret\n'
    assert run(tmp_path, {"fixture.py": text}, capsys) == (0, "")


def test_json_output_has_masked_values_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text(url(REAL) + "\n")
    assert check_secrets.main(["--format", "json", str(tmp_path / "notes.txt")]) == 1
    out = capsys.readouterr().out
    assert REAL not in out
    [problem] = json.loads(out)["problems"]
    assert (problem["line"], problem["kind"], problem["masked"]) == (
        1,
        "url-password",
        f"postgresql://app:***@{NEON}/iot?sslmode=require",
    )


def test_is_env_file() -> None:
    assert is_env_file(".env") and is_env_file("deploy/.env.staging")
    assert not is_env_file(".env.example") and not is_env_file("env.py") and not is_env_file(".envrc")


def test_without_files_the_git_tracked_files_are_checked(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.name", "Test")
    git("config", "user.email", "test@example.invalid")
    (tmp_path / "tracked.py").write_text(f'URL = "{url(REAL)}"\n')
    (tmp_path / "untracked.py").write_text(f'URL = "{url(REAL)}"\n')
    (tmp_path / ".env").write_text("DATABASE_URL=" + url(REAL) + "\n")
    (tmp_path / ".env.example").write_text("DATABASE_URL=" + url("password") + "\n")
    git("add", "tracked.py", ".env", ".env.example")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "schema_warden", "secrets"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert REAL not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(".env: .env files hold real credentials")
    assert lines[1].startswith("tracked.py:1: database URL with a password: postgresql://app:***@")
    assert lines[2] == "schema-warden secrets: 2 problem(s) in 3 file(s)"


def test_without_files_outside_git_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert check_secrets.main([]) == 2
    assert "is not in a git work tree: pass the FILES to check" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_a_file_that_is_not_there_is_a_usage_error_naming_it(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checking nothing must not pass: a FILE that is missing (or a directory) exits 2, named."""
    (tmp_path / "clean.py").write_text("x = 1\n")
    target = tmp_path / "nonexistent"
    if kind == "directory":
        target.mkdir()
        (target / "leak.py").write_text(f'URL = "{url(REAL)}"\n')
    assert check_secrets.main([str(tmp_path / "clean.py"), str(target)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    says = "no such file" if kind == "missing" else "is a directory, not a file"
    assert err == f"error: {target}: {says}: pass files, or no FILES to check the git-tracked ones\n"


def test_a_dangling_symlink_is_a_file_as_git_sees_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    assert check_secrets.main([str(tmp_path / "link")]) == 0


def test_pre_commit_hook_secrets_is_defined_for_other_repos_and_this_one() -> None:
    hooks = {h["id"]: h for h in yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert hooks["schema-warden-secrets"]["entry"] == "schema-warden secrets"
    local = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    ids = {h["id"]: h for repo in local["repos"] for h in repo["hooks"]}
    assert ids["schema-warden-secrets"]["entry"] == "schema-warden secrets"
