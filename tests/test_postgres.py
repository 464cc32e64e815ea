"""server/postgres.py: the throwaway server is private, unprivileged, fast to reuse, and leaves nothing."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from schema_warden.errors import EnvironmentProblem
from schema_warden.server import postgres
from schema_warden.server.postgres import Binaries, Server, find_binaries, throwaway_server

IS_ROOT = os.geteuid() == 0
LINUX = sys.platform.startswith("linux")
TEMP_DIRS = (Path(tempfile.gettempdir()), Path("/tmp"))  # /tmp when TMPDIR is too long for a socket


def query_one(server: Server, sql: str) -> tuple:
    conn = psycopg2.connect(**server.connect_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()
    finally:
        conn.close()


def postmaster_pid(server: Server) -> int:
    """The pid the server wrote into its data directory (what a leak check must follow)."""
    return int((server.socket_dir / "data" / "postmaster.pid").read_text().splitlines()[0])


def process_group(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group: the postmaster and its backends."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def assert_gone(pid: int, socket_dir: Path) -> None:
    assert process_group(pid) == [], f"postgres processes left: {process_group(pid)}"
    assert not socket_dir.exists(), f"{socket_dir} left behind"


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def proc_net_inodes(table: str, *, listening: bool = False) -> set[str]:
    path = Path("/proc/net") / table
    if not path.exists():
        return set()
    rows = [line.split() for line in path.read_text().splitlines()[1:]]
    if table.startswith("unix"):
        return {row[6] for row in rows if len(row) > 6}
    return {row[9] for row in rows if not listening or row[3] == "0A"}


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the server's account can read too (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="sw-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def counting_bindir(shared_dir: Path) -> tuple[Path, Path]:
    """A Postgres bin dir whose initdb counts its runs in a marker file: (bindir, marker)."""
    real = find_binaries().bindir
    bindir, marks = shared_dir / "bin", shared_dir / "marks"
    bindir.mkdir()
    marks.mkdir(mode=0o777)
    marks.chmod(0o777)  # initdb runs as the server account
    marker = marks / "initdb-runs"
    for program in ("postgres", "pg_ctl", "psql"):
        (bindir / program).symlink_to(real / program)
    wrapper = bindir / "initdb"
    wrapper.write_text(f'#!/bin/sh\necho run >> "{marker}"\nexec "{real / "initdb"}" "$@"\n')
    wrapper.chmod(0o755)
    return bindir, marker


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """XDG_CACHE_HOME pointing at an empty directory (removed afterwards: a cluster is 28 MB)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    yield cache
    shutil.rmtree(cache, ignore_errors=True)


def runs(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


# --- private, no TCP --------------------------------------------------------------------------


def test_listens_on_a_private_unix_socket_and_never_on_tcp() -> None:
    with throwaway_server(settings={"listen_addresses": "*"}) as server:  # not even when asked
        mode = stat.S_IMODE(server.socket_dir.stat().st_mode)
        listen, fsync, sync_commit, fpw = query_one(
            server,
            "SELECT current_setting('listen_addresses'), current_setting('fsync'), "
            "current_setting('synchronous_commit'), current_setting('full_page_writes')",
        )
        pid = postmaster_pid(server)
        sockets = socket_inodes(pid)
        assert pid == server.pid
        assert (server.socket_dir / f".s.PGSQL.{server.port}").is_socket()
        assert mode == 0o700
        assert (listen, fsync, sync_commit, fpw) == ("", "off", "off", "off")
        # the postmaster's sockets: a unix one (so the scan sees them), no TCP one at all
        assert sockets & proc_net_inodes("unix")
        assert not sockets & (proc_net_inodes("tcp") | proc_net_inodes("tcp6"))
        socket_dir = server.socket_dir
    assert_gone(pid, socket_dir)


def test_the_tcp_scan_sees_a_tcp_listener() -> None:
    """The scan above is not blind: it finds a TCP listener of this very process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert socket_inodes(os.getpid()) & proc_net_inodes("tcp", listening=True)


def test_runs_unprivileged(pg_server: Server) -> None:
    pid = postmaster_pid(pg_server)
    uid = int(
        next(
            line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")
        ).split()[1]
    )
    owner = pg_server.socket_dir.stat().st_uid
    if IS_ROOT:
        assert uid == owner == pwd.getpwnam("nobody").pw_uid
    else:
        assert uid == owner == os.geteuid()
    assert uid != 0


@pytest.mark.skipif(not LINUX, reason="fork and /proc")
def test_starts_as_a_non_root_user(tmp_path: Path) -> None:
    binaries = find_binaries()
    if not IS_ROOT:  # the suite already runs as non-root: that is the path under test
        with throwaway_server(binaries=binaries) as server:
            assert query_one(server, "SELECT 1") == (1,)
        return
    nobody = pwd.getpwnam("nobody")
    home = Path(tempfile.mkdtemp(prefix="sw-nobody-"))
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # everything below runs as nobody, with the modules imported above
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.environ["XDG_CACHE_HOME"] = str(home)
            with throwaway_server(binaries=binaries) as server:
                answer = {
                    "euid": os.geteuid(),
                    "user": query_one(server, "SELECT current_user")[0],
                    "owner": server.socket_dir.stat().st_uid,
                    "dir": str(server.socket_dir),
                    "pid": postmaster_pid(server),
                }
            os.write(write_end, json.dumps(answer).encode())
            code = 0
        except BaseException as err:
            os.write(write_end, json.dumps({"error": repr(err)}).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        answer = json.loads(pipe.read() or "{}")
    _, status = os.waitpid(child, 0)
    try:
        assert os.waitstatus_to_exitcode(status) == 0, answer
        assert answer["euid"] == answer["owner"] == nobody.pw_uid
        assert answer["user"] == "postgres"
        assert list(home.iterdir())  # the cache was filled under the user's own XDG_CACHE_HOME
        assert_gone(answer["pid"], Path(answer["dir"]))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_memory_server_lives_in_dev_shm_when_there_is_room_and_leaves_nothing() -> None:
    room = postgres.memory_dir()
    with throwaway_server(memory=True) as server:
        assert query_one(server, "SELECT 1") == (1,)
        pid, socket_dir = postmaster_pid(server), server.socket_dir
    if room is not None:
        assert socket_dir.parent == room
    else:
        assert socket_dir.parent in TEMP_DIRS
    assert_gone(pid, socket_dir)


def test_memory_server_falls_back_to_the_temp_dir_without_room(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "MEMORY_MIN_FREE", 1 << 62)  # more than any machine has
    assert postgres.memory_dir() is None
    with throwaway_server(memory=True) as server:
        assert server.socket_dir.parent in TEMP_DIRS
        assert query_one(server, "SELECT 1") == (1,)


# --- saved data directories ------------------------------------------------------------------


@pytest.mark.parametrize("tar", ["program", "python"])
def test_a_saved_data_directory_starts_again_with_its_databases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tar: str
) -> None:
    if tar == "python":  # no tar program on the machine: Python's tarfile writes and reads the archive
        which = shutil.which
        monkeypatch.setattr(
            shutil, "which", lambda name, *a, **k: None if name == "tar" else which(name, *a, **k)
        )
    saved = tmp_path / "saved"
    with throwaway_server() as server:
        pid, socket_dir = postmaster_pid(server), server.socket_dir
        server.execute("CREATE TABLE kept (id integer); INSERT INTO kept VALUES (7)")
        server.copy_database("other", template="postgres")
        assert server.databases() == ["other", "postgres"]
        digest = server.save_data_dir(saved)
        assert process_group(pid) == []  # stopped cleanly by the save; the block still ends normally
    assert_gone(pid, socket_dir)
    with tarfile.open(saved) as archive:
        names = set(archive.getnames())
    assert "./PG_VERSION" in names and not names & {"./postmaster.pid", "./postmaster.opts"}
    assert digest == hashlib.sha256(saved.read_bytes()).hexdigest()
    assert [p.name for p in tmp_path.iterdir()] == ["saved"]  # no staging left beside it
    with throwaway_server(cluster=saved) as again:
        assert query_one(again, "SELECT id FROM kept") == (7,)
        assert again.databases() == ["other", "postgres"]
        account = postgres._server_account()
        if account is not None:  # root: the copy is the server's account's, like the initdb'd one
            data = again.socket_dir / "data"
            owners = {path.lstat().st_uid for path in [data, *data.rglob("*")]}
            assert owners == {account.pw_uid}  # tar unpacked as the account: every file
    assert digest == hashlib.sha256(saved.read_bytes()).hexdigest()  # started from a copy


def test_saving_over_an_existing_file_fails_and_leaves_no_staging(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("someone else's")
    with pytest.raises(EnvironmentProblem, match="cannot save"), throwaway_server() as server:
        pid, socket_dir = postmaster_pid(server), server.socket_dir
        server.save_data_dir(taken)
    assert_gone(pid, socket_dir)
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    assert taken.read_text() == "someone else's"


def test_a_damaged_archive_is_an_environment_problem_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    archive = tmp_path / "broken.tar"
    archive.write_bytes(b"not a tar archive" * 100)
    with pytest.raises(EnvironmentProblem, match="cannot prepare"), throwaway_server(cluster=archive):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["broken.tar"]


# --- cleanup on every path --------------------------------------------------------------------


def test_cleans_up_after_normal_exit() -> None:
    with throwaway_server() as server:
        pid, socket_dir = postmaster_pid(server), server.socket_dir
        assert process_group(pid)
    assert_gone(pid, socket_dir)


def test_cleans_up_after_an_exception_in_the_block() -> None:
    with pytest.raises(ZeroDivisionError), throwaway_server() as server:
        pid, socket_dir = postmaster_pid(server), server.socket_dir
        query_one(server, "SELECT 1")  # a backend is running too
        1 / 0  # noqa: B018
    assert_gone(pid, socket_dir)


def test_cleans_up_when_the_server_fails_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(EnvironmentProblem) as info, throwaway_server(settings={"shared_buffers": "lots"}):
        pass
    assert info.value.exit_code == 3
    assert "exited at start" in str(info.value) and "shared_buffers" in str(info.value)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("schema-warden-")] == []


CHILD = """
import json, signal, sys
from schema_warden.server.postgres import throwaway_server
# a shell without job control starts background jobs with SIGINT ignored: behave like a terminal
signal.signal(signal.SIGINT, signal.default_int_handler)
try:
    with throwaway_server() as server:
        print(json.dumps({"pid": server.pid, "dir": str(server.socket_dir)}), flush=True)
        sys.stdin.read()  # until the test signals us
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cleans_up_when_the_holding_process_is_signalled(sig: signal.Signals) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        started = json.loads(child.stdout.readline())  # type: ignore[union-attr]
        pid, socket_dir = started["pid"], Path(started["dir"])
        assert process_group(pid)
        assert (socket_dir / "data" / "postmaster.pid").read_text().split()[0] == str(pid)
        child.send_signal(sig)
        assert child.wait(timeout=60) == 130
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdin.close()  # type: ignore[union-attr]
        child.stdout.close()  # type: ignore[union-attr]
    assert_gone(pid, socket_dir)


def test_sigkill_of_the_holder_stops_the_server_and_the_next_start_sweeps_its_dir() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        started = json.loads(child.stdout.readline())  # type: ignore[union-attr]
        pid, socket_dir = started["pid"], Path(started["dir"])
        child.kill()  # no cleanup code can run: the kernel's parent-death signal stops postgres
        child.wait()
    finally:
        child.stdin.close()  # type: ignore[union-attr]
        child.stdout.close()  # type: ignore[union-attr]
    deadline = time.monotonic() + 30
    while process_group(pid):
        assert time.monotonic() < deadline, "postgres outlived its SIGKILLed parent"
        time.sleep(0.01)
    assert socket_dir.is_dir() and not (socket_dir / "data" / "postmaster.pid").exists()
    old = time.time() - 2 * postgres.STALE_AFTER_S
    os.utime(socket_dir, (old, old))
    assert socket_dir in postgres.sweep_stale_dirs(socket_dir.parent)
    assert not socket_dir.exists()


def test_sweep_keeps_running_young_and_foreign_dirs(tmp_path: Path) -> None:
    old = time.time() - 2 * postgres.STALE_AFTER_S
    for name, files in {
        "schema-warden-dead": ["data/PG_VERSION"],
        "schema-warden-running": ["data/postmaster.pid"],
        "schema-warden-young": ["data/PG_VERSION"],
        "schema-warden-nodata": ["server.log"],
        "other-dir": ["data/PG_VERSION"],
    }.items():
        for file in files:
            (tmp_path / name / file).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name / file).write_text("x")
        if name != "schema-warden-young":
            os.utime(tmp_path / name, (old, old))
    assert postgres.sweep_stale_dirs(tmp_path) == [tmp_path / "schema-warden-dead"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "other-dir",
        "schema-warden-nodata",
        "schema-warden-running",
        "schema-warden-young",
    ]


# --- binaries -----------------------------------------------------------------------------------


def test_pg_bin_without_binaries_is_exit_3_saying_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentProblem) as info:
        find_binaries(pg_bin=tmp_path)
    assert info.value.exit_code == 3
    assert str(tmp_path) in str(info.value)
    assert "apt-get install postgresql" in str(info.value)


def test_pg_bin_variable_without_binaries_is_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEMA_WARDEN_PG_BIN", str(tmp_path))
    with pytest.raises(EnvironmentProblem) as info, throwaway_server():
        pass
    assert info.value.exit_code == 3
    assert "SCHEMA_WARDEN_PG_BIN" in str(info.value) and "apt-get install postgresql" in str(info.value)


def test_no_binaries_anywhere_is_exit_3_saying_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCHEMA_WARDEN_PG_BIN", raising=False)
    monkeypatch.setattr(postgres, "_candidate_bindirs", lambda: iter(()))
    with pytest.raises(EnvironmentProblem) as info:
        find_binaries()
    assert info.value.exit_code == 3
    assert str(info.value).startswith("no PostgreSQL server binaries found: install")


def test_pg_bin_variable_is_used(counting_bindir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    bindir, _ = counting_bindir
    monkeypatch.setenv("SCHEMA_WARDEN_PG_BIN", str(bindir))
    found = find_binaries()
    assert found.bindir == bindir
    assert found.major >= 10


# --- the initdb cache -------------------------------------------------------------------------


def test_initdb_runs_once_then_the_cache_is_reused(
    counting_bindir: tuple[Path, Path], empty_cache: Path
) -> None:
    bindir, marker = counting_bindir
    for expected_runs in (1, 1):
        with throwaway_server(pg_bin=bindir) as server:
            assert query_one(server, "SELECT 1") == (1,)
        assert runs(marker) == expected_runs
    assert [p.name for p in empty_cache.glob("schema-warden/*") if ".tmp" in p.name] == []


def test_cache_falls_back_to_a_private_temp_dir_when_home_is_unusable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fallback = postgres.cache_dir()
    assert fallback == tmp_path / f"schema_warden_cache_{os.geteuid()}"
    assert stat.S_IMODE(fallback.stat().st_mode) == 0o700
    # XDG_CACHE_HOME was the user's choice: one line says why it is not used, once
    warned = capsys.readouterr().err.splitlines()
    assert len(warned) == 1 and warned[0].startswith(f"schema-warden: warning: cannot use {blocker}/cache/")
    postgres.cache_dir()
    assert capsys.readouterr().err == ""

    fallback.chmod(0o777)  # someone else could have planted files in it: refuse it
    with pytest.raises(EnvironmentProblem) as info:
        postgres.cache_dir()
    assert "XDG_CACHE_HOME" in str(info.value)


CACHE_CHILD = """
from schema_warden.server.postgres import throwaway_server
import psycopg2, sys
with throwaway_server(pg_bin=sys.argv[1]) as server:
    conn = psycopg2.connect(**server.connect_kwargs())
    with conn.cursor() as cur:
        cur.execute("SELECT 42")
        print(cur.fetchone()[0])
    conn.close()
"""


def _lock_waiters(inode: int) -> int:
    return sum(
        1 for line in Path("/proc/locks").read_text().splitlines() if "->" in line and f":{inode} " in line
    )


@pytest.mark.skipif(not LINUX, reason="/proc/locks")
def test_two_processes_filling_the_cache_at_once_run_initdb_once(
    counting_bindir: tuple[Path, Path], empty_cache: Path
) -> None:
    bindir, marker = counting_bindir
    binaries = Binaries(bindir, *postgres._version_of(bindir))
    cluster, lock_path = postgres._cluster_paths(binaries)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen[str]] = []
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # both children find no cluster and queue on the lock
        try:
            children = [
                subprocess.Popen(
                    [sys.executable, "-c", CACHE_CHILD, str(bindir)], stdout=subprocess.PIPE, text=True
                )
                for _ in range(2)
            ]
            deadline = time.monotonic() + 60
            while _lock_waiters(os.fstat(lock.fileno()).st_ino) < 2:
                assert time.monotonic() < deadline, "the children never queued on the cache lock"
                assert all(c.poll() is None for c in children)
                time.sleep(0.01)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    outputs = [c.communicate(timeout=120)[0] for c in children]
    assert [c.returncode for c in children] == [0, 0]
    assert outputs == ["42\n", "42\n"]
    assert runs(marker) == 1
    assert (cluster / "PG_VERSION").is_file()


def test_the_initdb_cluster_is_kept_as_an_archive_too_and_servers_start_from_it(
    empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with throwaway_server() as server:  # initdb: the first start copies the directory
        assert query_one(server, "SELECT count(*) FROM pg_database WHERE datname = 'postgres'") == (1,)
    assert not list((empty_cache / "schema-warden").glob("pg*.tar"))
    with throwaway_server() as server:  # the second start archives it once, and unpacks that
        assert query_one(server, "SELECT 1") == (1,)
    [archive] = list((empty_cache / "schema-warden").glob("pg*.tar"))
    directory = archive.with_suffix("")
    assert (directory / "PG_VERSION").is_file()
    with tarfile.open(archive) as members:
        assert "./PG_VERSION" in members.getnames()
    binaries = postgres.find_binaries()
    account = postgres._server_account()
    assert postgres._cached_cluster(binaries, account) == archive
    # without a tar program the directory is copied (Python's tarfile is slower than a copy)
    monkeypatch.setattr(postgres.shutil, "which", lambda _name: None)
    assert postgres._cached_cluster(binaries, account) == directory
    with throwaway_server() as server:
        assert query_one(server, "SELECT 1") == (1,)


def test_a_cut_initdb_archive_is_made_again_with_a_warning(
    empty_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cached cluster's archive cut short (a full disk, a killed run) no longer fails every
    later run with "tar cannot unpack": it is removed, made again from the directory, and said."""
    with throwaway_server():
        pass
    with throwaway_server():  # the second start writes the archive
        pass
    [archive] = list((empty_cache / "schema-warden").glob("pg*.tar"))
    whole = archive.stat().st_size
    with open(archive, "r+b") as fh:
        fh.truncate(whole // 2)
    with throwaway_server() as server:
        assert query_one(server, "SELECT 1") == (1,)
    assert "the cached cluster" in capsys.readouterr().err and archive.stat().st_size == whole
    with throwaway_server() as server:  # and the next run uses the new archive quietly
        assert query_one(server, "SELECT 1") == (1,)
    assert capsys.readouterr().err == ""
