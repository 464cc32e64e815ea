"""The stairway proven by the parent and a forked child: the same results as one process."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg2
import pytest
from fixture_project import Rev, make_project
from schema_warden.commands.check import main
from schema_warden.errors import ProjectError
from schema_warden.project.imports import isolated_imports
from schema_warden.project.loader import Project, open_project
from schema_warden.project.settings import find_config
from schema_warden.proof import parallel
from schema_warden.proof.parallel import (
    idle_cpus,
    is_linear,
    parallel_plan,
    run_parallel,
    run_stairway,
    should_switch,
    wanted_jobs,
    weight,
)
from schema_warden.proof.stairway import StairwayResult, migrate, round_trip
from schema_warden.render.report import FAIL, NOTE, PASS
from schema_warden.schema.diff import compare
from schema_warden.server.postgres import Server


def chain(
    count: int = 20, *, trace: tuple[int, ...] = (), broken: tuple[int, ...] = ()
) -> tuple[str, list[Rev]]:
    """(models, revisions) of a linear history: a table, a table with a foreign key to it, a
    seed of the first, then a column per revision. ``trace``: downgrades that leave a table behind;
    ``broken``: upgrades that fail."""
    columns = {"devices": ['sa.Column("id", sa.Integer, primary_key=True)', 'sa.Column("name", sa.Text)']}
    columns["readings"] = [
        'sa.Column("id", sa.Integer, primary_key=True)',
        'sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False)',
        'sa.Column("value", sa.Float)',
    ]
    revisions = [
        Rev("0001", None, 'op.create_table("devices", ' + ", ".join(columns["devices"]) + ")",
            'op.drop_table("devices")', "create devices"),
        Rev("0002", "0001", 'op.create_table("readings", ' + ", ".join(columns["readings"]) + ")",
            'op.drop_table("readings")', "create readings"),
        Rev("0003", "0002", "op.execute(\"INSERT INTO devices (name) VALUES ('seed-a'), ('seed-b')\")",
            "op.execute(\"DELETE FROM devices WHERE name LIKE 'seed-%'\")", "seed devices"),
    ]  # fmt: skip
    for number in range(4, count + 1):
        table = "readings" if number % 2 else "devices"
        name = f"c{number:02d}"
        upgrade = f'op.add_column("{table}", sa.Column("{name}", sa.Integer))'
        if number in broken:
            upgrade = 'op.execute("ALTER TABLE nope ADD COLUMN x integer")'
        downgrade = f'op.drop_column("{table}", "{name}")'
        if number in trace:
            downgrade += f'\nop.execute("CREATE TABLE IF NOT EXISTS left_{number:02d} (id integer)")'
        revisions.append(Rev(f"{number:04d}", f"{number - 1:04d}", upgrade, downgrade, f"add {table}.{name}"))
        columns[table].append(f'sa.Column("{name}", sa.Integer)')
    models = "\n".join(
        f'{table} = sa.Table("{table}", metadata, {", ".join(cols)})' for table, cols in columns.items()
    )
    return models, revisions


@pytest.fixture(autouse=True)
def _small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(parallel.MIN_ENV, "4")


@contextlib.contextmanager
def loaded(ini: Path) -> Iterator[Project]:
    settings = find_config(ini)
    with isolated_imports(settings.alembic_config.parent):
        yield open_project(settings=settings)


def stairway_on(
    server: Server, project: Project, split_at: int | None, *, start: int = 0, data_check: bool = True
) -> tuple[StairwayResult, Any]:
    """The stairway from ``start`` (one process, or split at ``split_at``) and the round trip
    after it, on a database of its own."""
    from sqlalchemy import create_engine, pool

    database = f"p_{uuid.uuid4().hex[:10]}"
    server.create_database(database)
    engine = create_engine(server.url(database), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            project.environment(connection)
            connection.rollback()
            target = "base"
            if start:  # proven by an earlier run: upgraded plainly, as the check does
                target = project.revisions()[start - 1].revision
                assert migrate(project, connection, target) is None
            if split_at is None:
                result = run_stairway(project, connection, jobs=1, start=start, data_check=data_check)
            else:
                result = run_parallel(
                    project, connection, jobs=2, split_at=split_at, start=start, data_check=data_check
                )
                assert result is not None
            trip = None
            if result.head is not None:
                trip = round_trip(project, connection, result.base, result.head, target)
            return result, trip
    finally:
        engine.dispose()
        server.drop_database(database)


def databases(server: Server) -> list[str]:
    conn = psycopg2.connect(**server.connect_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE '%%_part_%%'")
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def forked_children() -> list[int]:
    """Live processes forked from this one (same command line; the session's server is not)."""
    me = str(os.getpid())
    mine = Path("/proc/self/cmdline").read_bytes()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                if parent == me and (entry / "cmdline").read_bytes() == mine:
                    found.append(int(entry.name))
    return found


def same(a: StairwayResult, b: StairwayResult) -> None:
    assert a.checks == b.checks
    assert a.reversible == b.reversible
    assert (a.head is None) == (b.head is None)
    if a.head is not None and b.head is not None:
        assert compare(a.head, b.head) == []
    assert compare(a.base, b.base) == []


def test_split_anywhere_gives_the_lines_of_one_process(tmp_path: Path, pg_server: Server) -> None:
    models, revisions = chain(20)
    with loaded(make_project(tmp_path, models=models, revisions=revisions)) as project:
        alone, alone_trip = stairway_on(pg_server, project, None)
        assert [c.status for c in alone.checks] == [PASS] * 20
        assert alone_trip is not None and alone_trip.status == PASS
        for split_at in (3, 11, 19):
            result, trip = stairway_on(pg_server, project, split_at)
            same(alone, result)
            # the generated rows are the same too: seeded devices are not referenced by
            # generated readings, so the round trip's downgrade of the seed passes as before
            assert trip == alone_trip
    assert databases(pg_server) == []
    assert forked_children() == []


def test_from_a_proven_revision_and_without_the_data_check(tmp_path: Path, pg_server: Server) -> None:
    models, revisions = chain(20, trace=(14,))
    with loaded(make_project(tmp_path, models=models, revisions=revisions)) as project:
        for options in ({"start": 6}, {"data_check": False}):
            alone, alone_trip = stairway_on(pg_server, project, None, **options)  # type: ignore[arg-type]
            result, trip = stairway_on(pg_server, project, 12, **options)  # type: ignore[arg-type]
            same(alone, result)
            assert trip == alone_trip
            assert result.checks[0].revision == ("0007" if options.get("start") else "0001")
            assert [c.revision for c in result.checks if c.status == FAIL] == ["0014"]
    assert databases(pg_server) == []


def test_failures_in_either_part_read_as_in_one_process(tmp_path: Path, pg_server: Server) -> None:
    models, revisions = chain(20, trace=(6, 16))
    with loaded(make_project(tmp_path, models=models, revisions=revisions)) as project:
        alone, _ = stairway_on(pg_server, project, None)
        result, _ = stairway_on(pg_server, project, 11)
    same(alone, result)
    assert [c.revision for c in result.checks if c.status == FAIL] == ["0006", "0016"]
    assert "downgrade leaves table left_06 behind" in result.checks[5].message


@pytest.mark.parametrize("broken", [5, 15])
def test_failing_upgrade_stops_the_stairway_in_either_part(
    tmp_path: Path, pg_server: Server, broken: int
) -> None:
    models, revisions = chain(20, broken=(broken,))
    with loaded(make_project(tmp_path, models=models, revisions=revisions)) as project:
        alone, _ = stairway_on(pg_server, project, None)
        result, trip = stairway_on(pg_server, project, 10)
    same(alone, result)
    assert result.head is None and trip is None
    assert result.checks[broken - 1].status == FAIL
    assert "upgrade failed" in result.checks[broken - 1].message
    left = ", ".join(f"{n:04d}" for n in range(broken + 1, 21))
    assert result.checks[broken].status == NOTE
    assert result.checks[broken].message == f"not run for {left}: the stairway stopped at {broken:04d}"
    assert len(result.checks) == broken + 1
    assert databases(pg_server) == []


def test_a_crashed_child_is_replaced_by_the_parent(
    tmp_path: Path, pg_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    models, revisions = chain(12, trace=(4,))
    monkeypatch.setattr(parallel, "_child_main", lambda *args: os._exit(3))
    with loaded(make_project(tmp_path, models=models, revisions=revisions)) as project:
        result, _ = stairway_on(pg_server, project, 8)
        monkeypatch.undo()
        alone, _ = stairway_on(pg_server, project, None)
    same(alone, result)
    assert databases(pg_server) == []
    assert forked_children() == []


def test_the_check_command_prints_the_same_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    models, revisions = chain(16, trace=(9,))
    ini = make_project(tmp_path, models=models, revisions=revisions)
    reports = []
    for jobs in ("1", "2"):
        monkeypatch.setenv(parallel.JOBS_ENV, jobs)
        assert main(["--config", str(ini), "--no-cache"]) == 1
        reports.append(capsys.readouterr().out.splitlines()[:-1])  # the last line has the time
    assert reports[0] == reports[1]
    assert any("revision 0009" in line and "left_09 behind" in line for line in reports[0])
    assert forked_children() == []


def test_branches_run_in_one_process(tmp_path: Path, pg_server: Server) -> None:
    models, revisions = chain(6)
    revisions.append(Rev("0007", "0005", 'op.execute("SELECT 1")', 'op.execute("SELECT 1")', "branch"))
    with loaded(make_project(tmp_path, models=models, revisions=revisions)) as project:
        assert not is_linear(project.revisions())
        from sqlalchemy import create_engine, pool

        engine = create_engine(pg_server.url("postgres"), poolclass=pool.NullPool)
        try:
            with engine.connect() as connection:
                assert run_parallel(project, connection, jobs=2) is None
        finally:
            engine.dispose()


def test_deciding_where_to_split() -> None:
    assert weight(0, 0) == 0 and weight(0, 1) == 1
    assert weight(0, 250) == pytest.approx(250 + 249 * 250 / (2 * parallel.GROWTH))
    assert not should_switch(10, 0, 300)  # the child has far less left than the parent
    assert should_switch(300, 290, 300)  # nothing left to prove for the parent
    assert should_switch(200, 0, 300)  # the child has 200 left, the parent 100 (heavier ones)
    position = next(p for p in range(301) if should_switch(p, 0, 300))
    assert 160 < position < 200  # later revisions cost more: the parent takes fewer
    revisions = [
        SimpleNamespace(revision=f"{n:04d}", down_revision=f"{n - 1:04d}" if n else None) for n in range(300)
    ]
    assert is_linear(revisions) and is_linear(revisions[:1]) and not is_linear(revisions[1:])
    assert parallel_plan(revisions, 0, 2) and parallel_plan(revisions, 150, 2)
    assert not parallel_plan(revisions, 280, 2)  # the child's plain upgrade to 280 costs more
    assert not parallel_plan(revisions[:3], 0, 2)  # fewer than SCHEMA_WARDEN_PARALLEL_MIN (4 here)
    assert not parallel_plan(revisions, 0, 1)
    assert wanted_jobs(None, {parallel.JOBS_ENV: "1"}) == 1
    assert wanted_jobs(None, {parallel.JOBS_ENV: "2"}) == 2
    assert wanted_jobs(3, {parallel.JOBS_ENV: "1"}) == 3
    with pytest.raises(ProjectError, match="SCHEMA_WARDEN_JOBS='two' is not a number"):
        wanted_jobs(None, {parallel.JOBS_ENV: "two"})
    assert 0.0 <= idle_cpus(2) <= 2.0


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_while_the_child_proves_leaves_nothing(
    tmp_path: Path, short_tmpdir: Path, sig: signal.Signals
) -> None:
    fifo = tmp_path / "child-started"
    os.mkfifo(fifo)
    models, revisions = chain(16)
    # revision 0004 blocks in the child only (the parent only rehearses it... after the child:
    # its parent process is the guard, whose parent is this test)
    blocking = (
        f"import os\nif os.getppid() != {os.getpid()}:\n"
        f"    with open({str(fifo)!r}, 'w') as f:\n        f.write('x')\n"
        '    op.execute("SELECT pg_sleep(60)")\n'
        'op.add_column("devices", sa.Column("c04", sa.Integer))'
    )
    revisions[3] = Rev("0004", "0003", blocking, 'op.drop_column("devices", "c04")', "add devices.c04")
    ini = make_project(tmp_path / "project", models=models, revisions=revisions)
    env = {**os.environ, "TMPDIR": str(short_tmpdir), parallel.JOBS_ENV: "2", parallel.MIN_ENV: "4"}
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    proc = subprocess.Popen(
        [sys.executable, "-m", "schema_warden", "check", "--config", str(ini), "--no-cache"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_default_sigint,
    )
    try:
        ready, _, _ = select.select([reader], [], [], 60)
        assert ready and os.read(reader, 1) == b"x", "the child never reached revision 0004"
        children = [
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and _ppid(entry) == proc.pid and b"schema_warden" in _cmdline(entry)
        ]
        # the stairway's child, and maybe drift's (the models side, built meanwhile)
        assert 1 <= len(children) <= 2
        servers = [_workdir(entry) for entry in Path("/proc").iterdir() if _ppid(entry) == proc.pid]
        servers = [path for path in servers if path is not None]
        assert servers, "the guard's server should be running now"
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
    finally:
        os.close(reader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)  # killed and reaped
    assert list(short_tmpdir.iterdir()) == []
    assert not any(path.exists() for path in servers)


def _workdir(entry: Path) -> Path | None:
    argv = _cmdline(entry).split(b"\0")
    return Path(argv[argv.index(b"-D") + 1].decode()).parent if b"-D" in argv else None


def _ppid(entry: Path) -> int:
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    return -1


def _cmdline(entry: Path) -> bytes:
    with contextlib.suppress(OSError):
        return (entry / "cmdline").read_bytes()
    return b""


# --- one call in a forked child (drift's models side while the stairway runs) -----------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_forked_call_returns_its_value_and_leaves_no_process() -> None:
    parent = os.getpid()
    forked = parallel.Forked(lambda: (os.getpid(), {"tables": 3}))
    assert forked.started
    pid = forked.pid
    child_pid, value = forked.result()
    assert child_pid == pid != parent and value == {"tables": 3}
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped already


def test_forked_call_that_raises_gives_none_and_the_caller_does_the_work() -> None:
    def fails() -> None:
        raise RuntimeError("create_all exploded")

    assert parallel.Forked(fails).result() is None


def test_stopping_a_forked_call_kills_and_reaps_it() -> None:
    import time

    forked = parallel.Forked(lambda: time.sleep(60))
    pid = forked.pid
    assert _alive(pid)
    forked.stop()
    assert not _alive(pid)
    assert forked.result() is None  # stopped: nothing to wait for
    forked.stop()  # twice is harmless


def test_jobs_1_means_no_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(parallel.JOBS_ENV, "1")
    assert not parallel.can_fork()
    monkeypatch.setenv(parallel.JOBS_ENV, "2")
    assert parallel.can_fork() == sys.platform.startswith("linux")


def test_drift_is_the_same_with_the_models_built_ahead_or_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    models = """
readings = sa.Table(
    "readings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("humidity", sa.Float),
)
"""
    revisions = [
        Rev(
            "0001",
            None,
            upgrade='op.create_table("readings", sa.Column("id", sa.Integer, primary_key=True), '
            'sa.Column("value", sa.Float, nullable=False))',
            downgrade='op.drop_table("readings")',
        )
    ]
    ini = make_project(tmp_path / "p", models=models, revisions=revisions)
    outputs = {}
    forks: list[str] = []

    class Spy(parallel.Forked):
        def __init__(self, fn: Any) -> None:
            super().__init__(fn)
            forks.append(os.environ[parallel.JOBS_ENV])

    monkeypatch.setattr(parallel, "Forked", Spy)
    for jobs in ("2", "1"):  # models side in a forked child, then built inline
        monkeypatch.setenv(parallel.JOBS_ENV, jobs)
        code = main(["--config", str(ini), "--no-cache", "--format", "json"])
        outputs[jobs] = (code, capsys.readouterr().out)
    assert forks == ["2"]
    assert outputs["2"][0] == outputs["1"][0] == 1
    strip = [line for line in outputs["2"][1].splitlines() if "duration_s" not in line]
    assert strip == [line for line in outputs["1"][1].splitlines() if "duration_s" not in line]
    assert "+ column readings.humidity" in outputs["2"][1]


@pytest.mark.parametrize("at", [6, 16])
def test_a_revision_proven_without_data_reads_the_same_in_either_part(
    tmp_path: Path, pg_server: Server, at: int
) -> None:
    """A data migration that refuses tables with rows (proof/stairway.py upgrade_with_rows):
    the child's part and the parent's rehearsal empty the tables the same way, so every split
    gives one process's lines, rows and round trip."""
    models, revisions = chain(20)
    picky = revisions[at - 1]
    guard = (
        '\nif op.get_bind().execute(sa.text("SELECT count(*) FROM readings")).scalar():\n'
        '    raise RuntimeError("expected no readings yet")'
    )
    revisions[at - 1] = Rev(picky.id, picky.down, picky.upgrade + guard, picky.downgrade, picky.message)
    with loaded(make_project(tmp_path, models=models, revisions=revisions)) as project:
        alone, alone_trip = stairway_on(pg_server, project, None)
        noted = [c for c in alone.checks if c.status == NOTE]
        assert [c.revision for c in noted] == [f"{at:04d}"]
        assert "rejects the generated rows: RuntimeError: expected no readings yet" in noted[0].message
        for split_at in (4, 11, 18):
            result, trip = stairway_on(pg_server, project, split_at)
            same(alone, result)
            assert trip == alone_trip
    assert databases(pg_server) == []
