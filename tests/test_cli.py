"""The console script: exit codes, complete output, no traceback on a closed pipe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "schema_warden", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


def test_unknown_command_is_exit_2_with_one_line() -> None:
    result = _cli("nope")
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown command 'nope'; commands: check, heads")
    assert result.stdout == ""


def test_output_is_complete_although_the_interpreter_skips_its_teardown(tmp_path: Path) -> None:
    # heads prints a report, then entry() leaves with os._exit: the buffered lines must be out
    out = tmp_path / "out.txt"
    with out.open("w") as stream:
        result = subprocess.run(
            [sys.executable, "-m", "schema_warden", "heads"],
            cwd=REPO_ROOT,
            stdout=stream,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0
    text = out.read_text()
    assert text.startswith("schema-warden heads") and text.rstrip().splitlines()[-1].startswith("ok:")


def test_a_closed_pipe_is_no_traceback() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "schema_warden", "--help"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `schema-warden --help | true`
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) in (0, 141)  # 141: the write failed, as `yes | head` would
    assert err == ""
