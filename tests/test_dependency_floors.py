"""The lowest versions pyproject.toml allows work: the check, run on them, passes on the bundled project.

A fresh venv gets exactly the floors of alembic, SQLAlchemy and psycopg2-binary (the other
dependencies as declared) from the package index, and runs ``schema-warden check`` on this
repository's own project. Found so: alembic 1.13.2 to 1.15.2 crash on the project layer
(their ``version_locations`` are strings); 1.16.0 is the lowest that passes.
"""

from __future__ import annotations

import os
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
PINNED = ("alembic", "sqlalchemy", "psycopg2-binary")


def floor_requirements() -> list[str]:
    """pyproject's dependencies, the PINNED ones at exactly their minimum."""
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    out = []
    for line in deps:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        if req.name.lower() in PINNED:
            [floor] = [spec.version for spec in req.specifier if spec.operator == ">="]
            out.append(f"{req.name}=={floor}")
        else:
            out.append(str(req))
    return out


def test_floors_name_the_three_core_dependencies() -> None:
    assert sorted(r.split("==")[0].lower() for r in floor_requirements() if "==" in r) == sorted(PINNED)


def test_check_passes_on_the_minimum_versions(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = str(venv / "bin" / "python")
    pip = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *floor_requirements()],
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0 and "No matching distribution" in pip.stderr:
        pytest.skip(f"the package index has not the floors: {pip.stderr.strip().splitlines()[-1]}")
    assert pip.returncode == 0, pip.stderr
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(REPO_ROOT / "hooks")  # the guard from this tree, not an installed one
    env["SCHEMA_WARDEN_PROOF_CACHE"] = str(tmp_path / "proofs")
    result = subprocess.run(
        [python, "-m", "schema_warden", "check", "--no-cache"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout.splitlines()[-1]
