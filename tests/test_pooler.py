"""Neon's pooled host: manage.py refuses it without --allow-pooler, and with it, restore and
upgrade work through a real PgBouncer in transaction mode and leave no session state behind."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from schema_warden.server.postgres import Server, _server_account

from database import dumpfiles
from database.manage import main

POOLED = "ep-cool-name-123456-pooler.eu-central-1.aws.neon.tech"
DIRECT = "ep-cool-name-123456.eu-central-1.aws.neon.tech"
NEON_URL = f"postgresql://app:s3cret@{POOLED}/iot?sslmode=require&channel_binding=require"
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


# --- the refusal happens before connecting: a URL is all it needs -----------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["db-upgrade"],
        ["db-downgrade", "-1"],
        ["db-backup", "--output-dir", "{tmp}"],
    ],
)
def test_pooled_database_url_is_refused_naming_the_direct_host(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", NEON_URL)
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"error: DATABASE_URL postgresql://app:***@{POOLED}/iot?sslmode=require&channel_binding=require "
        "is Neon's pooled host (PgBouncer in transaction mode: session settings, advisory locks and "
        f"pg_dump break there): use the direct host {DIRECT} (the same name without '-pooler'), "
        "or pass --allow-pooler"
    ]
    assert "s3cret" not in err
    assert list(tmp_path.iterdir()) == []  # db-backup wrote nothing


def test_pooled_target_url_of_restore_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    backup = tmp_path / "backup_20260101T000000Z.sql"
    backup.write_bytes(b"SELECT 1;\n")
    dumpfiles.write_atomically(
        dumpfiles.checksum_path(backup), dumpfiles.checksum_line(dumpfiles.sha256_of(backup), backup.name)
    )
    assert main(["db-restore", str(backup), "--target-url", NEON_URL, "--yes"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"error: --target-url postgresql://app:***@{POOLED}/iot" in err
    assert f"use the direct host {DIRECT}" in err and "--allow-pooler" in err


def test_direct_host_is_not_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the direct host of the same endpoint gets as far as connecting (port 1: refused at once)
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret@127.0.0.1:1/iot")
    assert main(["db-upgrade"]) == 3
    assert "pooled host" not in capsys.readouterr().err


# --- a real PgBouncer in transaction mode in front of the session's server ----------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def pgbouncer(pg_server: Server) -> Iterator[int]:
    """PgBouncer (transaction mode, one server connection: every client shares it) on
    127.0.0.1:<port>, in front of the unix socket of the session's server; yields the port."""
    if not os.access(PGBOUNCER, os.X_OK):
        pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    account = _server_account()  # as root, PgBouncer runs as the server's account, as it must
    workdir = Path(tempfile.mkdtemp(prefix="sw-pgb-", dir="/tmp"))
    port = free_port()
    (workdir / "pgbouncer.ini").write_text(
        f"""\
[databases]
* = host={pg_server.socket_dir} port={pg_server.port} user={pg_server.user} password={pg_server.password}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 1
max_client_conn = 20
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = {workdir}/pgbouncer.log
"""
    )
    kwargs: dict[str, object] = {}
    if account is not None:
        os.chown(workdir, account.pw_uid, account.pw_gid)
        for path in workdir.iterdir():
            os.chown(path, account.pw_uid, account.pw_gid)
        kwargs.update(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
    proc = subprocess.Popen(
        [PGBOUNCER, str(workdir / "pgbouncer.ini")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **kwargs,  # type: ignore[arg-type]
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (workdir / "pgbouncer.log").read_text(errors="replace")
                    pytest.fail(f"pgbouncer did not start: {log[-2000:]}")
                time.sleep(0.02)  # waiting for a listening socket, not for a result
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def pooled_url(port: int, dbname: str) -> str:
    """A Neon-shaped pooled host name; libpq connects to hostaddr, so no DNS is needed."""
    return f"postgresql://postgres@{POOLED}:{port}/{dbname}?hostaddr=127.0.0.1&sslmode=disable"


def server_search_path(port: int, dbname: str) -> str:
    """search_path of the one server connection behind the pooler, as the next client sees it."""
    conn = psycopg2.connect(f"host=127.0.0.1 port={port} dbname={dbname} user=postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SHOW search_path")
            return str(cur.fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def two_databases(pg_server: Server) -> Iterator[tuple[str, str]]:
    names = (f"src_{uuid.uuid4().hex[:10]}", f"dst_{uuid.uuid4().hex[:10]}")
    for name in names:
        pg_server.create_database(name)
    try:
        yield names
    finally:
        for name in names:
            pg_server.drop_database(name)


@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_restore_and_upgrade_through_a_transaction_pooler_leave_no_search_path_behind(
    fmt: str,
    pgbouncer: int,
    pg_server: Server,
    two_databases: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, target = two_databases
    monkeypatch.setenv("DATABASE_URL", pg_server.libpq_url(source))
    assert main(["db-upgrade"]) == 0
    assert main(["db-backup", "--format", fmt, "--output-dir", str(tmp_path)]) == 0
    (backup,) = [p for p in tmp_path.iterdir() if dumpfiles.BACKUP_RE.match(p.name)]
    capsys.readouterr()

    url = pooled_url(pgbouncer, target)
    assert main(["db-restore", str(backup), "--target-url", url, "--yes", "--allow-pooler"]) == 0
    out, err = capsys.readouterr()
    assert "revision 0002" in out and "row counts match the manifest" in out, err
    assert server_search_path(pgbouncer, target) == '"$user", public'

    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["db-current"]) == 0
    assert capsys.readouterr().out.strip() == "0002 (head)"

    assert main(["db-downgrade", "-1", "--allow-pooler"]) == 0
    assert main(["db-upgrade", "--allow-pooler"]) == 0
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1] == "0002 (head)"
    assert "Running upgrade 0001 -> 0002" in err
    assert server_search_path(pgbouncer, target) == '"$user", public'
