"""``schema-warden check`` as a command: exit codes, formats, bad input, Ctrl-C, safety."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from fixture_project import (
    READINGS_MODELS,
    READINGS_REVISIONS,
    Rev,
    make_project,
    readings_project,
    write_models,
    write_revision,
)
from schema_warden.commands import check as check_migrations
from schema_warden.commands import heads as check_heads
from schema_warden.server.postgres import Server

REPO_ROOT = Path(__file__).resolve().parent.parent


def _first_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err.splitlines()[0]


def test_bundled_project_passes(capsys: pytest.CaptureFixture[str]) -> None:
    code = check_migrations.main(["--config", str(REPO_ROOT / "alembic.ini")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ok   stairway: 0001 (create temperature_readings): upgrade, downgrade (no trace)" in out
    assert "ok   drift: the migrations build exactly what the models declare" in out
    assert out.splitlines()[-1].startswith("ok: 4 passed in ")


def test_failing_run_in_json_and_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leaky = Rev("0002", "0001", upgrade=READINGS_REVISIONS[1].upgrade, downgrade="op.execute('SELECT 1')")
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=[READINGS_REVISIONS[0], leaky])
    assert check_migrations.main(["--config", str(ini), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"ok", "checks", "duration_s"} and data["ok"] is False
    failed = [c for c in data["checks"] if c["status"] == "fail"]
    assert [(c["name"], c["revision"]) for c in failed] == [("stairway", "0002")]
    assert failed[0]["message"].endswith("downgrade leaves column readings.device behind")

    assert check_migrations.main(["--config", str(ini), "--format", "markdown"]) == 1
    md = capsys.readouterr().out
    assert md.startswith("### schema-warden check") and "❌ 1 problem(s) found" in md
    assert "| ❌ | stairway | 0002 |" in md


def _break_env(root: Path) -> None:
    env = root / "migrations" / "env.py"
    env.write_text(
        env.read_text().replace("config = context.config", "config = context.config\n{}['missing']")
    )


def _env_missing_module(root: Path) -> None:
    env = root / "migrations" / "env.py"
    env.write_text(env.read_text().replace("import os\n", "import os\nimport geoalchemy_not_installed\n", 1))


def _break_model(root: Path) -> None:
    write_models(root, READINGS_MODELS + "\nbroken = (\n")


def _break_migration(root: Path) -> None:
    path = root / "migrations" / "versions" / "0002_add_device.py"
    path.write_text(path.read_text().replace("def upgrade() -> None:", "def upgrade() -> None"))


def _no_script_dir(root: Path) -> None:
    shutil.rmtree(root / "migrations")


def _two_heads(root: Path) -> None:
    write_revision(root, Rev("0003", "0001", message="parallel"))


def _dangling(root: Path) -> None:
    write_revision(root, Rev("0003", "0042", message="lost"))


def _duplicate(root: Path) -> None:
    write_revision(root, Rev("0002", "0001", message="again", filename="0002_again.py"))


@pytest.mark.parametrize(
    ("breaker", "first_line"),
    [
        (_no_script_dir, "error: alembic.ini: script_location '%(here)s/migrations' does not exist"),
        (_break_env, "error: migrations/env.py raised KeyError: 'missing'"),
        (
            _env_missing_module,
            "error: migrations/env.py failed to import: No module named 'geoalchemy_not_installed'",
        ),
        (
            _break_model,
            r"error: fixture_app/models\.py:\d+: syntax error in a module env\.py imports: "
            r"'\(' was never closed",
        ),
        (
            _break_migration,
            r"error: migrations/versions/0002_add_device\.py:\d+: syntax error in migration: expected ':'",
        ),
        (_two_heads, "error: broken migration history: 2 heads: 0002, 0003: two branches of migrations"),
        (
            _dangling,
            "error: broken migration history: revision 0003 (migrations/versions/0003_lost.py): "
            "down_revision '0042' does not exist",
        ),
        (_duplicate, "error: broken migration history: revision id 0002 is declared by"),
    ],
    ids=[
        "script-dir-missing",
        "env-raises",
        "env-missing-module",
        "model-syntax",
        "migration-syntax",
        "two-heads",
        "dangling",
        "duplicate",
    ],
)
def test_bad_projects_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], breaker: object, first_line: str
) -> None:
    ini = readings_project(tmp_path)
    breaker(tmp_path)  # type: ignore[operator]
    assert check_migrations.main(["--config", str(ini)]) == 2
    line = _first_error_line(capsys)
    assert line.startswith(first_line) or re.match(first_line, line), line


def test_no_alembic_ini_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_migrations.main(["--config", str(tmp_path / "alembic.ini")]) == 2
    assert _first_error_line(capsys).startswith(f"error: no alembic.ini at {tmp_path / 'alembic.ini'}: ")


def test_project_error_in_json_is_still_a_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_migrations.main(["--config", str(tmp_path / "alembic.ini"), "--format", "json"]) == 2
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["ok"] is False
    [check] = data["checks"]
    assert (check["name"], check["status"]) == ("project", "fail")
    assert check["message"].startswith("no alembic.ini at ")
    assert captured.err.startswith("error: no alembic.ini at ")


def test_empty_versions_dir_passes_saying_nothing_to_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini = make_project(tmp_path)
    assert check_migrations.main(["--config", str(ini)]) == 0
    assert "ok   stairway: no revisions: nothing to check" in capsys.readouterr().out


def test_no_postgres_binaries_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = readings_project(tmp_path / "project")
    empty = tmp_path / "bin"
    empty.mkdir()
    assert check_migrations.main(["--config", str(ini), "--pg-bin", str(empty)]) == 3
    assert _first_error_line(capsys).startswith(f"error: no postgres/initdb in {empty}")


def test_first_run_on_a_machine_makes_the_cluster_meanwhile_and_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No initdb'd cluster cached: initdb runs in a thread while the project is read."""
    from schema_warden.server.postgres import cluster_ready, find_binaries

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    binaries = find_binaries()
    assert not cluster_ready(binaries)
    ini = readings_project(tmp_path / "project")
    assert check_migrations.main(["--config", str(ini)]) == 0, capsys.readouterr().out
    assert cluster_ready(binaries)
    assert not any(t.name == "schema-warden-initdb" for t in threading.enumerate())


def test_initdb_failing_in_its_thread_is_exit_3_and_leaves_nothing(
    tmp_path: Path, short_tmpdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from schema_warden.server.postgres import find_binaries

    real = find_binaries().bindir
    bindir = short_tmpdir / "bin"
    bindir.mkdir()
    for program in real.iterdir():
        if program.name != "initdb":
            (bindir / program.name).symlink_to(program)
    script = bindir / "initdb"
    script.write_text(
        f'#!/bin/sh\nif [ "$1" = --version ]; then exec {real / "initdb"} --version; fi\n'
        'echo "initdb: error: out of disk space (test)" >&2\nexit 1\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TMPDIR", str(short_tmpdir))
    ini = readings_project(tmp_path / "project")
    assert check_migrations.main(["--config", str(ini), "--pg-bin", str(bindir)]) == 3
    line = _first_error_line(capsys)
    assert line.startswith("error: initdb failed") and "out of disk space (test)" in line
    assert not list(short_tmpdir.glob("schema-warden-*"))
    assert not any(t.name == "schema-warden-initdb" for t in threading.enumerate())


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _children(parent: int) -> dict[int, list[bytes]]:
    """The processes whose parent is ``parent``: pid -> argv."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")
    return found


def _server_dirs(parent: int) -> list[Path]:
    """Work dirs of the postgres servers that process ``parent`` started (from their ``-D``)."""
    return [
        Path(argv[argv.index(b"-D") + 1].decode()).parent
        for argv in _children(parent).values()
        if b"-D" in argv
    ]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def _reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """The guard process, killed and reaped on the way out if a test step failed first."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _nothing_left_in(tmpdir: Path) -> None:
    assert _processes_mentioning(str(tmpdir)) == []
    assert list(tmpdir.iterdir()) == []


def _start_check(ini: Path, env: dict[str, str], *, own_group: bool = False) -> subprocess.Popen[str]:
    """``schema-warden check`` as a child process, SIGINT at its default (``own_group``: in a
    process group of its own, as a terminal's foreground job)."""
    return subprocess.Popen(
        [sys.executable, "-m", "schema_warden", "check", "--config", str(ini)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # a shell without job control (CI) starts background jobs with SIGINT ignored, and an
        # ignored SIGINT stays ignored across exec: give the guard a terminal's default
        preexec_fn=_default_sigint,
        start_new_session=own_group,
    )


def test_sigint_mid_stairway_exits_130_and_leaves_nothing(tmp_path: Path, short_tmpdir: Path) -> None:
    sleepy = Rev(
        "0002",
        "0001",
        upgrade='print("STAIRWAY-MARKER", flush=True)\nop.execute("SELECT pg_sleep(60)")',
        downgrade="pass",
    )
    ini = make_project(tmp_path, models=READINGS_MODELS, revisions=[READINGS_REVISIONS[0], sleepy])
    with _reaped(_start_check(ini, {**os.environ, "TMPDIR": str(short_tmpdir)})) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "STAIRWAY-MARKER" in line:
                break
        else:
            pytest.fail(f"no marker; stderr: {proc.stderr.read() if proc.stderr else ''}")
        servers = _server_dirs(proc.pid)  # the guard's server may live in /dev/shm (memory=True)
        assert servers, "the guard's server should be running now"
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    _nothing_left_in(short_tmpdir)
    for workdir in servers:
        assert _processes_mentioning(str(workdir)) == []
        assert not workdir.exists()


def test_ctrl_c_while_initdb_runs_in_its_thread_leaves_nothing(tmp_path: Path, short_tmpdir: Path) -> None:
    """A first run's initdb runs in a thread: Ctrl-C (SIGINT to the whole foreground group,
    initdb included) then still ends with 130 and leaves no directory or process."""
    ini = readings_project(tmp_path / "project")
    xdg = tmp_path / "xdg"
    env = {**os.environ, "TMPDIR": str(short_tmpdir), "XDG_CACHE_HOME": str(xdg)}
    with _reaped(_start_check(ini, env, own_group=True)) as proc:
        deadline = time.monotonic() + 30
        while not any(Path(argv[0].decode()).name == "initdb" for argv in _children(proc.pid).values()):
            assert proc.poll() is None and time.monotonic() < deadline, "initdb never started"
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    _nothing_left_in(short_tmpdir)
    assert not [p for p in (xdg / "schema-warden").glob("*") if ".tmp" in p.name]  # no half cluster


# --- safety: the guard never touches DATABASE_URL --------------------------------------------


@pytest.fixture
def sentinel(pg_server: Server, fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """DATABASE_URL -> a database on the session's server (not the guard's) holding a marker table;
    connections to it are logged, so any connection the guard made would show."""
    pg_server.execute("CREATE TABLE marker (id integer)", dbname=fresh_db)
    pg_server.execute("ALTER SYSTEM SET log_connections = on")
    pg_server.execute("SELECT pg_reload_conf()")
    monkeypatch.setenv("DATABASE_URL", pg_server.libpq_url(fresh_db))
    try:
        yield fresh_db
    finally:
        pg_server.execute("ALTER SYSTEM RESET log_connections")
        pg_server.execute("SELECT pg_reload_conf()")


def _connections_to(pg_server: Server, dbname: str) -> int:
    log = (pg_server.socket_dir / "server.log").read_text(errors="replace")
    return len(re.findall(rf"connection authorized: .*database={re.escape(dbname)}(?:\s|$)", log, re.M))


def _tables(pg_server: Server, dbname: str) -> list[str]:
    conn = psycopg2.connect(**pg_server.connect_kwargs(dbname))
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
            )
            return sorted(r[0] for r in cur.fetchall())
    finally:
        conn.close()


def test_database_url_is_never_touched(
    tmp_path: Path, pg_server: Server, sentinel: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # an env.py that ignores the injected connection and connects to sqlalchemy.url / DATABASE_URL
    careless = readings_project(tmp_path / "careless", env_uses_injected_connection=False)
    drifting = readings_project(
        tmp_path / "drifting", models=READINGS_MODELS + '\nsa.Table("extra", metadata)\n'
    )
    failing = make_project(
        tmp_path / "failing", revisions=[Rev("0001", None, upgrade='op.execute("SELECT nope")')]
    )
    before = _connections_to(pg_server, sentinel)
    assert _tables(pg_server, sentinel) == ["marker"]  # this connection is counted: the log works
    assert _connections_to(pg_server, sentinel) == before + 1
    before += 1
    results = [
        check_migrations.main(["--config", str(REPO_ROOT / "alembic.ini")]),
        check_migrations.main(["--config", str(careless)]),
        check_migrations.main(["--config", str(drifting)]),
        check_migrations.main(["--config", str(failing)]),
        check_heads.main(["--config", str(REPO_ROOT / "alembic.ini")]),
    ]
    output = capsys.readouterr()
    assert results == [0, 0, 1, 1, 0], output
    assert _connections_to(pg_server, sentinel) == before
    assert _tables(pg_server, sentinel) == ["marker"]


def test_template_env_logging_stays_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import logging.config

    ini = readings_project(tmp_path)
    ini.write_text(ini.read_text().replace("level = WARNING", "level = INFO"))
    env = tmp_path / "migrations" / "env.py"
    # Alembic's template configures logging from alembic.ini on every run
    env.write_text(
        env.read_text().replace(
            'if config.config_file_name and config.attributes.get("configure_logger", True):',
            "if config.config_file_name is not None:",
        )
    )
    original = logging.config.fileConfig
    assert check_migrations.main(["--config", str(ini)]) == 0
    captured = capsys.readouterr()
    assert "Running upgrade" not in captured.err and "INFO" not in captured.err
    assert logging.config.fileConfig is original
