"""The type checker on the pure core: ``mypy --strict`` (pinned in the ``test`` extra).

The pure core is plain data in, plain data out (schema diff, lint rules, render, errors),
plus the snapshot that builds that data from pg_catalog. ``Any`` appears there only where
data enters from outside: a database connection, the catalog query's rows, JSON read back.
The list below is the same as ``[tool.mypy] files`` in pyproject.toml, so ``python -m mypy``
by hand checks what this test checks.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parent.parent
PURE_CORE = (
    "hooks/schema_warden/errors.py",
    "hooks/schema_warden/schema/diff.py",
    "hooks/schema_warden/schema/snapshot.py",
    "hooks/schema_warden/lint",
    "hooks/schema_warden/render",
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None and not os.environ.get("CI"),
    reason="mypy is not installed (it is in the test extra: pip install -e '.[test]')",
)


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    # no cache: a cache dir in the working tree would show up in `git status`
    command = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", os.devnull, *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)


def test_the_pure_core_passes_strict_mypy() -> None:
    result = _mypy(*PURE_CORE)
    assert result.returncode == 0, result.stdout + result.stderr
    paths = [REPO_ROOT / path for path in PURE_CORE]
    checked = sum(len(list(path.rglob("*.py"))) if path.is_dir() else 1 for path in paths)
    assert f"no issues found in {checked} source files" in result.stdout


def test_strict_mypy_rejects_an_unannotated_function(tmp_path: Path) -> None:
    module = tmp_path / "unannotated.py"
    module.write_text("def shape(change):\n    return change\n")
    result = _mypy(str(module))
    assert result.returncode == 1
    assert "[no-untyped-def]" in result.stdout


def test_the_configured_files_are_the_pure_core() -> None:
    settings = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert tuple(settings["files"]) == PURE_CORE
    assert settings["strict"] is True
