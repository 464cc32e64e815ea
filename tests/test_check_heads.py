"""``schema-warden heads``: the history checked statically, no database, no project code run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixture_project import READINGS_REVISIONS, Rev, make_project, readings_project, write_revision
from schema_warden.commands.heads import main, parse_revision_file

REPO_ROOT = Path(__file__).resolve().parent.parent


def _run(ini: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main(["--config", str(ini), "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def _failed(data: dict) -> dict[str, str]:
    return {c["name"]: c["message"] for c in data["checks"] if c["status"] == "fail"}


def test_bundled_project_has_one_head(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--config", str(REPO_ROOT / "alembic.ini")])
    out = capsys.readouterr().out
    assert code == 0
    assert "one head: 0002" in out


def test_two_heads_fail_naming_both_and_the_merge_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini = readings_project(tmp_path, revisions=[*READINGS_REVISIONS, Rev("0003", "0001", message="other")])
    code, data = _run(ini, capsys)
    assert code == 1
    message = _failed(data)["single-head"]
    assert message.startswith("2 heads: 0002, 0003")
    assert "alembic merge heads" in message


def test_dangling_down_revision_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = readings_project(tmp_path, revisions=[READINGS_REVISIONS[0], Rev("0002", "0009")])
    code, data = _run(ini, capsys)
    assert code == 1
    assert _failed(data)["down-revisions"].startswith(
        "revision 0002 (migrations/versions/0002_revision_0002.py): down_revision '0009' does not exist"
    )


def test_duplicate_revision_ids_name_both_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = readings_project(tmp_path)
    write_revision(tmp_path, Rev("0002", "0001", message="copy", filename="0002_copy.py"))
    code, data = _run(ini, capsys)
    assert code == 1
    message = _failed(data)["unique-ids"]
    assert "revision id 0002 is declared by" in message
    assert "0002_copy.py" in message and "0002_add_device.py" in message


def test_cycle_is_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = make_project(
        tmp_path, revisions=[Rev("a", None), Rev("b", ("a", "c")), Rev("c", "b"), Rev("d", "c")]
    )
    code, data = _run(ini, capsys)
    assert code == 1
    assert "cycle: b -> c -> b" in _failed(data)["no-cycles"]


def test_syntax_error_is_named_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = readings_project(tmp_path)
    path = tmp_path / "migrations" / "versions" / "0002_add_device.py"
    lines = path.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("def upgrade"))
    lines[index] = "def upgrade( -> None:"
    path.write_text("\n".join(lines) + "\n")
    code, data = _run(ini, capsys)
    assert code == 1
    assert _failed(data)["imports"].startswith(
        f"migrations/versions/0002_add_device.py:{index + 1}: syntax error"
    )


def test_missing_module_import_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = readings_project(tmp_path)
    path = tmp_path / "migrations" / "versions" / "0002_add_device.py"
    path.write_text("import not_a_module_anywhere\n" + path.read_text())
    code, data = _run(ini, capsys)
    assert code == 1
    assert "imports not_a_module_anywhere" in _failed(data)["imports"]


def test_project_modules_on_prepend_sys_path_resolve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini = readings_project(tmp_path)
    path = tmp_path / "migrations" / "versions" / "0002_add_device.py"
    path.write_text("import fixture_app.models\n" + path.read_text())
    code, _data = _run(ini, capsys)
    assert code == 0


def test_no_revision_files_fail_naming_where_it_looked_and_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Zero revisions read proves nothing (it passed: "no revisions yet: nothing to check")."""
    ini = make_project(tmp_path)
    code, data = _run(ini, capsys)
    assert code == 1
    message = _failed(data)["single-head"]
    assert message.startswith("no revision files found in migrations/versions: ")
    assert "set `version-locations` in [tool.schema-warden]" in message


def test_annotated_assignments_and_merge_tuples_are_read(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text('revision: str = "0003"\ndown_revision: tuple[str, ...] = ("0001", "0002")\n')
    rev = parse_revision_file(path, tmp_path)
    assert (rev.revision, rev.down_revisions, rev.error) == ("0003", ("0001", "0002"), None)


def test_no_alembic_ini_is_a_project_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--config", str(tmp_path / "alembic.ini")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: no alembic.ini at {tmp_path / 'alembic.ini'}")


def test_command_line_is_fast_and_never_imports_sqlalchemy(tmp_path: Path) -> None:
    ini = readings_project(tmp_path)
    code = (
        "import sys, time; t = time.perf_counter(); from schema_warden.commands.heads import main; "
        f"rc = main(['--config', {str(ini)!r}]); "
        "print('ELAPSED', time.perf_counter() - t, 'SA', 'sqlalchemy' in sys.modules, file=sys.stderr); "
        "sys.exit(rc)"
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    wall = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    _, elapsed, _, imported = result.stderr.split()
    assert imported == "False"
    assert float(elapsed) < 0.5
    assert wall < 5
