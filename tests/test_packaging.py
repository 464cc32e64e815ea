"""Packaging: one import package in the wheel, dependencies in one place, no secrets committed."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def requirements(lines: list[str]) -> set[str]:
    return {str(Requirement(line)) for line in lines}


def test_requirements_txt_equals_pyproject_dependencies() -> None:
    lines = (REPO_ROOT / "database" / "requirements.txt").read_text().splitlines()
    listed = [line.split("#", 1)[0].strip() for line in lines]
    assert requirements([line for line in listed if line]) == requirements(
        PYPROJECT["project"]["dependencies"]
    )


def test_every_runtime_dependency_has_a_minimum_version() -> None:
    for line in PYPROJECT["project"]["dependencies"]:
        req = Requirement(line)
        assert any(spec.operator == ">=" for spec in req.specifier), f"{req.name} has no minimum version"


def test_alembic_ini_holds_no_database_url() -> None:
    text = (REPO_ROOT / "alembic.ini").read_text()
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(text)
    assert not ini.has_option("alembic", "sqlalchemy.url")
    assert "://" not in text
    assert ini.get("alembic", "script_location") == "%(here)s/database/alembic"


def test_the_wheel_ships_schema_warden_alone(tmp_path: Path) -> None:
    """Installed beside a project that has its own ``hooks`` or ``database`` package, the
    guard must not shadow them: its wheel's only top-level package is ``schema_warden``."""
    import zipfile

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("schema_warden-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"schema_warden"}
    assert "schema_warden/commands/check.py" in names and "schema_warden/server/postgres.py" in names
    assert not any("__pycache__" in name for name in names)


git = shutil.which("git")
in_git = git is not None and (REPO_ROOT / ".git").exists()


@pytest.mark.skipif(not in_git, reason="needs a git checkout")
@pytest.mark.parametrize("path", [".env", "database/.env", ".env.local"])
def test_env_files_are_git_ignored(path: str) -> None:
    result = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=REPO_ROOT)
    assert result.returncode == 0, f"{path} is not git-ignored"


@pytest.mark.skipif(not in_git, reason="needs a git checkout")
def test_env_example_is_committed_and_holds_no_real_password() -> None:
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "-q", ".env.example"], cwd=REPO_ROOT)
    assert ignored.returncode == 1
    tracked = subprocess.run(
        ["git", "ls-files", ".env.example"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert tracked.stdout.strip() == ".env.example"
    text = (REPO_ROOT / ".env.example").read_text()
    assert "DATABASE_URL=postgresql://user:password@" in text
