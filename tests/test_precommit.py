"""The user story: a real git repository with the hooks installed blocks a commit that changes
a model without a migration, and lets it through once the migration is written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from schema_warden.server.postgres import Server

REPO_ROOT = Path(__file__).resolve().parent.parent
HOOK_IDS = ["schema-warden-heads", "schema-warden-check"]


def _manifest() -> list[dict]:
    """The published definitions of this module's two hooks (other hooks are tested elsewhere)."""
    hooks = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())
    return [h for h in hooks if h["id"] in HOOK_IDS]


def test_manifest_defines_both_hooks_without_filenames() -> None:
    hooks = {h["id"]: h for h in _manifest()}
    assert sorted(hooks) == sorted(HOOK_IDS)
    for hook in hooks.values():
        assert hook["pass_filenames"] is False
        assert hook["language"] == "python"
        assert hook["entry"] in ("schema-warden heads", "schema-warden check")
    files = re.compile(hooks["schema-warden-check"]["files"])
    for path in (
        "alembic.ini",
        "pyproject.toml",
        "database/models/temperature.py",
        "app/models.py",
        "database/alembic/env.py",
        "database/alembic/versions/20261125_0003_x.py",
        "migrations/versions/abc.py",
    ):
        assert files.search(path), path
    for path in ("README.md", "hooks/schema_warden/cli.py", "database/backup.py", "tests/test_x.py"):
        assert not files.search(path), path


# where projects keep their models and migrations: each must wake heads and check
SCHEMA_LAYOUTS = [
    "alembic.ini",
    "pyproject.toml",
    "env.py",
    "alembic/env.py",
    "models.py",
    "app/models.py",
    "models/user.py",
    "app/models/user.py",
    "tables.py",
    "app/tables.py",
    "schema.py",
    "database.py",
    "app/database.py",
    "db/schema.py",
    "app/db/base.py",
    "src/app/db/tables/user.py",
    "migrations/env.py",
    "migrations/versions/0001_init.py",
    "alembic/versions/0001_init.py",
    "versions/0001_init.py",
    "database/alembic/versions/20261125_0003_x.py",
]
NOT_SCHEMA = [
    "README.md",
    "src/app/views.py",
    "app/api/routes.py",
    "database/backup.py",
    "docs/schema.md",
    "tests/test_models_cache.py",
    "my_models.py",
    "dbx/x.py",
]


@pytest.mark.parametrize("hook_id", HOOK_IDS)
@pytest.mark.parametrize("path", SCHEMA_LAYOUTS)
def test_default_files_cover_the_common_layouts(hook_id: str, path: str) -> None:
    files = re.compile(next(h for h in _manifest() if h["id"] == hook_id)["files"])
    assert files.search(path), f"{hook_id}: {path} changes the schema, the hook must run"


@pytest.mark.parametrize("hook_id", HOOK_IDS)
@pytest.mark.parametrize("path", NOT_SCHEMA)
def test_default_files_leave_other_files_alone(hook_id: str, path: str) -> None:
    files = re.compile(next(h for h in _manifest() if h["id"] == hook_id)["files"])
    assert not files.search(path), f"{hook_id}: {path} is not schema, the hook must not run"


def test_this_repository_runs_the_hooks_on_itself() -> None:
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    local = [h for repo in config["repos"] if repo["repo"] == "local" for h in repo["hooks"]]
    entries = {h["id"]: h["entry"] for h in local}
    assert entries["schema-warden-heads"] == "schema-warden heads"
    assert entries["schema-warden-check"] == "schema-warden check"


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A git repository holding a copy of the bundled project, hooks installed (no network)."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("alembic.ini", "pyproject.toml"):
        shutil.copy(REPO_ROOT / name, root / name)
    shutil.copytree(REPO_ROOT / "database", root / "database", ignore=shutil.ignore_patterns("__pycache__"))
    hooks = [{**h, "language": "system"} for h in _manifest()]  # the published hooks, run locally
    (root / ".pre-commit-config.yaml").write_text(
        yaml.safe_dump({"repos": [{"repo": "local", "hooks": hooks}]})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT", "DATABASE_URL"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"),
        GIT_AUTHOR_NAME="Dev",
        GIT_AUTHOR_EMAIL="dev@example.com",
        GIT_COMMITTER_NAME="Dev",
        GIT_COMMITTER_EMAIL="dev@example.com",
        GIT_CONFIG_GLOBAL=os.devnull,
    )
    for args in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "the IoT database"],
        [sys.executable, "-m", "pre_commit", "install"],
    ):
        result = _run(args, root, env)
        assert result.returncode == 0, result.stderr
    return root, env


def test_model_change_without_migration_is_blocked_until_the_migration_exists(
    repo: tuple[Path, dict[str, str]], pg_server: Server, fresh_db: str
) -> None:
    root, env = repo
    model = root / "database" / "models" / "temperature.py"
    text = model.read_text()
    anchor = "    device_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)\n"
    assert anchor in text
    model.write_text(
        text.replace(anchor, anchor + "    humidity: Mapped[float | None] = mapped_column(nullable=True)\n")
    )
    _run(["git", "add", "-A"], root, env)

    blocked = _run(["git", "commit", "-m", "add humidity"], root, env)
    output = blocked.stdout + blocked.stderr
    assert blocked.returncode != 0, output
    assert "schema-warden check" in output and "Failed" in output
    assert "drift: the models have changes that no migration makes:" in output
    assert "+ column temperature_readings.humidity (double precision, nullable)" in output
    assert 'fix: python database/manage.py db-revision -m "add humidity"' in output

    # the developer's database (here: a fresh one on the session's server) is at head
    dev_env = {**env, "DATABASE_URL": pg_server.libpq_url(fresh_db)}
    for command in (["db-upgrade"], ["db-revision", "-m", "add humidity"]):
        result = _run([sys.executable, "database/manage.py", *command], root, dev_env)
        assert result.returncode == 0, result.stderr
    written = sorted((root / "database" / "alembic" / "versions").glob("*_0003_add_humidity.py"))
    assert len(written) == 1
    _run(["git", "add", "-A"], root, env)

    committed = _run(["git", "commit", "-m", "add humidity"], root, env)
    output = committed.stdout + committed.stderr
    assert committed.returncode == 0, output
    assert re.search(r"schema-warden check\.+Passed", output)


def test_two_heads_are_blocked_by_the_heads_hook(repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    versions = root / "database" / "alembic" / "versions"
    source = (versions / "20261125_0002_add_device_id_to_temperature_readings.py").read_text()
    parallel = source.replace('revision: str = "0002"', 'revision: str = "0003"').replace(
        'down_revision: str | Sequence[str] | None = "0002"',
        'down_revision: str | Sequence[str] | None = "0001"',
    )
    assert 'revision: str = "0003"' in parallel
    (versions / "20261125_0003_parallel_branch.py").write_text(parallel)
    _run(["git", "add", "-A"], root, env)
    blocked = _run(["git", "commit", "-m", "parallel branch"], root, env)
    output = blocked.stdout + blocked.stderr
    assert blocked.returncode != 0, output
    assert "schema-warden heads" in output
    assert "2 heads: 0002, 0003" in output
    assert "alembic merge heads" in output
