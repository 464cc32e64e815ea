"""The pytest plugin (schema_warden/pytest_plugin.py): the guard's checks as test items.

A tmp project (tests/fixture_project.py) runs ``python -m pytest`` in a child process, the
way a team runs its suite; the mapping of CheckResults to items is tested without a server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixture_project import READINGS_REVISIONS, Rev, readings_project
from schema_warden import pytest_plugin
from schema_warden.pytest_plugin import FAILED, PASSED, SKIPPED, Verdict, verdicts
from schema_warden.render.report import FAIL, NOTE, PASS, CheckResult

CONSISTENT = [
    "alembic.ini::test_heads",
    "alembic.ini::test_stairway[0001]",
    "alembic.ini::test_stairway[0002]",
    "alembic.ini::test_round_trip",
    "alembic.ini::test_drift",
]

# 0002's downgrade runs, but forgets to drop the column its upgrade added
LEAVES_DEVICE = Rev(
    "0002",
    "0001",
    upgrade='op.add_column("readings", sa.Column("device", sa.String(32)))',
    downgrade='op.execute("SELECT 1")',
    message="add device",
)


def pytest_in(root: Path, *args: str, tmpdir: Path) -> subprocess.CompletedProcess[str]:
    """``python -m pytest ARGS`` in ``root``, as a user runs it (the plugin found by its entry point)."""
    env = {**os.environ, "TMPDIR": str(tmpdir), "COLUMNS": "200", "PY_COLORS": "0"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_consistent_project_gives_every_item_passed(tmp_path: Path, short_tmpdir: Path) -> None:
    readings_project(tmp_path / "app")
    run = pytest_in(tmp_path / "app", "--schema-warden", tmpdir=short_tmpdir)
    assert run.returncode == 0, run.stdout + run.stderr
    for node in CONSISTENT:
        assert f"PASSED {node}" in run.stdout
    assert "5 passed" in run.stdout
    assert "collected 5 items" in run.stdout
    assert "schema-warden check: alembic.ini (2 revisions)" in run.stdout  # the summary section


def test_a_downgrade_that_leaves_a_column_fails_its_stairway_item_with_the_guards_message(
    tmp_path: Path, short_tmpdir: Path
) -> None:
    readings_project(tmp_path / "app", revisions=[READINGS_REVISIONS[0], LEAVES_DEVICE])
    run = pytest_in(tmp_path / "app", "--schema-warden", tmpdir=short_tmpdir)
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert "FAILED alembic.ini::test_stairway[0002] - revision 0002" in out
    message = (
        'revision 0002 (migrations/versions/0002_add_device.py, "add device"): '
        "downgrade leaves column readings.device behind"
    )
    assert f"\n{message}\n" in out  # the guard's line as it is, the detail under it
    assert '\n    the upgrade then fails: column "device" of relation "readings" already exists' in out
    assert "PASSED alembic.ini::test_heads" in out
    assert "PASSED alembic.ini::test_stairway[0001]" in out
    # what could not run says why, as a skip
    assert "SKIPPED [1] alembic.ini:1: skipped: the stairway did not reach head" in out  # drift
    # the round trip: what the run kept as proven below the failure
    assert "SKIPPED [1] alembic.ini:1: not past the first failure (0002); below it:" in out
    assert "1 failed, 2 passed, 2 skipped" in out
    assert "Traceback" not in out and "pytest_plugin.py" not in out


def test_without_the_flag_no_item_is_added(tmp_path: Path, short_tmpdir: Path) -> None:
    readings_project(tmp_path / "app")
    run = pytest_in(tmp_path / "app", "--collect-only", "-q", tmpdir=short_tmpdir)
    assert run.returncode == 5, run.stdout + run.stderr  # pytest's "no tests collected"
    assert "alembic.ini" not in run.stdout


def test_the_ini_setting_turns_it_on_and_collecting_starts_no_server(
    tmp_path: Path, short_tmpdir: Path
) -> None:
    readings_project(tmp_path / "app", pyproject="[tool.pytest.ini_options]\nschema_warden = true\n")
    run = pytest_in(tmp_path / "app", "--collect-only", "-q", tmpdir=short_tmpdir)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.split("\n\n")[0].splitlines() == CONSISTENT
    assert not list(short_tmpdir.iterdir())  # no server's socket or data directory was made


def test_items_carry_a_marker_and_k_selects_them(tmp_path: Path, short_tmpdir: Path) -> None:
    readings_project(tmp_path / "app")
    (tmp_path / "app" / "test_unit.py").write_text("def test_unit():\n    pass\n")
    run = pytest_in(tmp_path / "app", "--schema-warden", "-m", "not schema_warden", tmpdir=short_tmpdir)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 5 deselected" in run.stdout
    heads = pytest_in(tmp_path / "app", "--schema-warden", "-k", "heads", tmpdir=short_tmpdir)
    assert "PASSED alembic.ini::test_heads" in heads.stdout
    assert "1 passed, 5 deselected" in heads.stdout


def test_an_explicit_config_and_a_project_error_are_one_line_failures(
    tmp_path: Path, short_tmpdir: Path
) -> None:
    ini = readings_project(tmp_path / "app", models="raise RuntimeError('models are broken')")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = pytest_in(elsewhere, "--schema-warden", "--schema-warden-config", str(ini), tmpdir=short_tmpdir)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "PASSED ../app/alembic.ini::test_heads" in run.stdout
    assert "FAILED ../app/alembic.ini::test_drift - error: " in run.stdout
    assert "models are broken" in run.stdout
    assert "pytest_plugin.py" not in run.stdout


def test_no_alembic_ini_is_a_usage_error(tmp_path: Path, short_tmpdir: Path) -> None:
    run = pytest_in(tmp_path, "--schema-warden", tmpdir=short_tmpdir)
    assert run.returncode == 4  # pytest's usage error
    assert "schema-warden: no alembic.ini at" in run.stderr


def test_our_own_run_has_the_plugin_but_none_of_its_items(request: pytest.FixtureRequest) -> None:
    assert request.config.pluginmanager.hasplugin("schema_warden")
    assert not pytest_plugin.enabled(request.config)
    assert not any(isinstance(item, pytest_plugin.WardenItem) for item in request.session.items)


# --- CheckResults to verdicts, no server ------------------------------------------------


def _stairway(revision: str | None, status: str, message: str) -> CheckResult:
    return CheckResult("stairway", status, message, revision)


def test_verdicts_map_each_result_to_its_item() -> None:
    results = [
        _stairway("0001", PASS, "0001: upgrade, downgrade (no trace), upgrade (same schema)"),
        _stairway("0002", FAIL, "revision 0002: downgrade leaves column t.c behind"),
        _stairway(None, NOTE, "not run for 0003, 0004: the stairway stopped at 0002"),
        CheckResult("round-trip", NOTE, "skipped: the stairway did not reach head"),
        CheckResult("drift", NOTE, "skipped: the stairway did not reach head"),
    ]
    found = verdicts(results, ["0001", "0002", "0003", "0004"])
    assert found[("stairway", "0001")].outcome == PASSED
    left = "revision 0002: downgrade leaves column t.c behind"
    assert found[("stairway", "0002")] == Verdict(FAILED, (left,))
    assert found[("stairway", "0003")] == Verdict(
        SKIPPED, ("not run for 0003, 0004: the stairway stopped at 0002",)
    )
    assert found[("round-trip", None)] == Verdict(SKIPPED, ("skipped: the stairway did not reach head",))


def test_revisions_proven_by_an_earlier_run_pass_and_say_so() -> None:
    cached = "0001–0002, 2 revisions proven by an earlier run (cache; --no-cache proves them again)"
    results = [
        _stairway(None, PASS, cached),
        _stairway("0003", PASS, "0003: upgrade, downgrade (no trace), upgrade (same schema)"),
    ]
    found = verdicts(results, ["0001", "0002", "0003"])
    assert found[("stairway", "0001")] == Verdict(PASSED, (cached,))
    assert found[("stairway", "0003")].lines[0].startswith("0003: ")
    assert found[("drift", None)].outcome == SKIPPED  # nothing reported it: not a pass


def test_a_failure_without_an_item_fails_what_it_kept_from_running() -> None:
    results = [
        CheckResult("baseline", FAIL, "the baseline (schema.sql) could not be created: boom", None, ("x",)),
        _stairway(None, NOTE, "skipped: the baseline could not be created"),
    ]
    found = verdicts(results, ["0001"])
    expected = ("baseline: the baseline (schema.sql) could not be created: boom", "    x")
    assert found[("stairway", "0001")] == Verdict(FAILED, expected)
    assert found[("drift", None)] == Verdict(FAILED, expected)
