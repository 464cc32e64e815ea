"""db-restore: the checksum is checked first, a non-empty target needs --clean, nobody is
restored into without being asked, and a failed restore changes nothing (one transaction)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from schema_warden.server.postgres import Server

from database import dumpfiles
from database.manage import main
from database.restore import compatible_script

SOURCE_SQL = """
CREATE TABLE devices (id text PRIMARY KEY, name text);
CREATE TABLE readings (id serial PRIMARY KEY, device_id text REFERENCES devices (id), value numeric);
CREATE TABLE "_prisma_migrations" (id varchar(36) PRIMARY KEY, migration_name text);
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO alembic_version VALUES ('0002');
INSERT INTO devices SELECT 'd' || g, 'Gerät ' || g FROM generate_series(1, 20) g;
INSERT INTO readings (device_id, value) SELECT 'd' || (g % 20 + 1), g / 3.0 FROM generate_series(1, 500) g;
INSERT INTO "_prisma_migrations" VALUES ('1', 'init');
"""


PUBLIC_SCHEMA = """
SELECT pg_get_userbyid(nspowner), has_schema_privilege('public', 'public', 'USAGE'),
       has_schema_privilege('public', 'public', 'CREATE')
FROM pg_namespace WHERE nspname = 'public'
"""


def query(server: Server, dbname: str, sql: str) -> list[tuple]:
    conn = psycopg2.connect(**server.connect_kwargs(dbname))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def tables(server: Server, dbname: str) -> dict[str, int]:
    names = query(
        server,
        dbname,
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    return {n: query(server, dbname, f"SELECT count(*) FROM {n}")[0][0] for (n,) in names}


@pytest.fixture
def target(pg_server: Server) -> Iterator[str]:
    name = f"r_{uuid.uuid4().hex[:10]}"
    pg_server.create_database(name)
    try:
        yield name
    finally:
        pg_server.drop_database(name)


def make_backup(fmt: str, server: Server, dbname: str, out: Path) -> Path:
    """A backup made by db-backup of a small database (DATABASE_URL points at it)."""
    query(server, dbname, SOURCE_SQL)
    assert main(["db-backup", "--format", fmt, "--output-dir", str(out)]) == 0
    (path,) = [p for p in out.iterdir() if dumpfiles.BACKUP_RE.match(p.name)]
    return path


@pytest.fixture(params=["plain", "custom"])
def backup(
    request: pytest.FixtureRequest, pg_server: Server, fresh_db: str, database_url: str, tmp_path: Path
) -> Path:
    return make_backup(request.param, pg_server, fresh_db, tmp_path / "backups")


def restore(backup: Path, server: Server, dbname: str, *flags: str) -> int:
    return main(["db-restore", str(backup), "--target-url", server.libpq_url(dbname), *flags])


def test_restore_into_empty_database(backup: Path, pg_server: Server, target: str, capsys) -> None:
    assert restore(backup, pg_server, target, "--yes") == 0
    out = capsys.readouterr().out
    assert "4 tables, 522 rows, revision 0002" in out and "row counts match the manifest" in out
    assert tables(pg_server, target) == {
        "public.devices": 20,
        "public.readings": 500,
        "public._prisma_migrations": 1,
        "public.alembic_version": 1,
    }


def test_restore_defaults_to_database_url(backup: Path, pg_server: Server, target: str, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_server.libpq_url(target))
    assert main(["db-restore", str(backup), "--yes"]) == 0
    assert tables(pg_server, target)["public.readings"] == 500


def test_checksum_mismatch_refuses_before_connecting(
    backup: Path, pg_server: Server, target: str, capsys
) -> None:
    data = bytearray(backup.read_bytes())
    data[len(data) // 2] ^= 0x01
    backup.write_bytes(bytes(data))
    assert restore(backup, pg_server, target, "--yes") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: checksum mismatch: {backup}")
    assert tables(pg_server, target) == {}


def test_missing_checksum_file_is_refused(backup: Path, pg_server: Server, target: str, capsys) -> None:
    dumpfiles.checksum_path(backup).unlink()
    assert restore(backup, pg_server, target, "--yes") == 2
    assert "no checksum file" in capsys.readouterr().err
    assert tables(pg_server, target) == {}


def test_missing_file_is_one_line_exit_2(tmp_path: Path, pg_server: Server, capsys) -> None:
    missing = tmp_path / "backup_20260101T000000Z.sql"
    assert main(["db-restore", str(missing), "--target-url", pg_server.libpq_url("postgres"), "--yes"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: backup file {missing} not found: give the path of a backup_*.sql or .dump file\n"


def test_non_empty_target_needs_clean(backup: Path, pg_server: Server, target: str, capsys) -> None:
    query(
        pg_server,
        target,
        "CREATE SCHEMA legacy; CREATE TABLE legacy.old (x int); CREATE TABLE keep_me (y int)",
    )
    assert restore(backup, pg_server, target, "--yes") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not empty (3 objects: legacy.old, public.keep_me, schema legacy)" in err
    assert set(tables(pg_server, target)) == {"legacy.old", "public.keep_me"}
    public_before = query(pg_server, target, PUBLIC_SCHEMA)

    assert restore(backup, pg_server, target, "--yes", "--clean") == 0
    assert tables(pg_server, target)["public.readings"] == 500
    assert "public.keep_me" not in tables(pg_server, target)
    assert query(pg_server, target, "SELECT count(*) FROM pg_namespace WHERE nspname = 'legacy'") == [(0,)]
    assert query(pg_server, target, PUBLIC_SCHEMA) == public_before  # same owner and grants


def test_no_terminal_without_yes_is_refused(backup: Path, pg_server: Server, target: str, capsys) -> None:
    assert restore(backup, pg_server, target) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stdin is not a terminal" in err and "--yes" in err
    assert tables(pg_server, target) == {}


def test_answer_no_changes_nothing(backup: Path, pg_server: Server, target: str, monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    assert restore(backup, pg_server, target) == 1
    assert "cancelled: nothing was changed" in capsys.readouterr().err
    assert tables(pg_server, target) == {}


def write_with_checksum(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    dumpfiles.checksum_path(path).write_text(dumpfiles.checksum_line(digest, path.name))
    return path


def test_failing_plain_restore_changes_nothing(
    tmp_path: Path, pg_server: Server, target: str, capsys
) -> None:
    query(pg_server, target, "CREATE TABLE precious (x int); INSERT INTO precious VALUES (1)")
    script = b"CREATE TABLE a (x int);\nINSERT INTO a VALUES (1);\nSELECT 1/0;\nCREATE TABLE b (x int);\n"
    bad = write_with_checksum(tmp_path / "backup_20260101T000000Z.sql", script)
    assert restore(bad, pg_server, target, "--yes", "--clean") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "division by zero" in err and "nothing was changed" in err
    assert tables(pg_server, target) == {"public.precious": 1}


def test_dump_of_a_newer_pg_dump_restores_into_an_older_server(
    pg_server: Server, fresh_db: str, database_url: str, target: str, tmp_path: Path
) -> None:
    """pg_dump 17+ writes SET transaction_timeout, unknown before 17: dropped for such targets."""
    if pg_server.binaries.major >= 17:
        pytest.skip("the target knows transaction_timeout")
    backup = make_backup("plain", pg_server, fresh_db, tmp_path)
    script = backup.read_bytes()
    header_end = script.index(b"SET client_encoding")
    newer = script[:header_end] + b"SET transaction_timeout = 0;\n" + script[header_end:]
    write_with_checksum(backup, newer)
    assert restore(backup, pg_server, target, "--yes") == 0
    assert tables(pg_server, target)["public.readings"] == 500


def test_compatible_script_drops_only_unknown_settings() -> None:
    header = b"SET statement_timeout = 0;\nSET transaction_timeout = 0;\nSET lock_timeout = 0;\n"
    assert b"".join(compatible_script(iter([header, b"SELECT 1;\n"]), 16)) == (
        b"SET statement_timeout = 0;\nSET lock_timeout = 0;\nSELECT 1;\n"
    )
    assert b"".join(compatible_script(iter([header]), 17)) == header


def test_truncated_archive_changes_nothing(
    pg_server: Server, fresh_db: str, database_url: str, target: str, tmp_path: Path, capsys
) -> None:
    backup = make_backup("custom", pg_server, fresh_db, tmp_path)
    data = backup.read_bytes()
    cut = write_with_checksum(backup, data[: len(data) * 2 // 3])
    assert restore(cut, pg_server, target, "--yes") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pg_restore cannot read" in err
    assert tables(pg_server, target) == {}


# --- all or nothing: a cut dump is refused before anything changes; empty means empty -------


def _cut_inside_copy(backup: Path) -> Path:
    """The plain dump cut at a line boundary inside the COPY of readings (valid SQL still)."""
    data = backup.read_bytes()
    start = data.index(b"COPY public.readings")
    cut = data.index(b"\n", data.index(b"\n", start) + 4000) + 1
    assert b"\\.\n" not in data[start:cut]
    return write_with_checksum(backup, data[:cut])


@pytest.mark.parametrize("with_manifest", [True, False])
def test_a_plain_dump_cut_inside_a_copy_is_refused_before_anything_changes(
    pg_server: Server,
    fresh_db: str,
    database_url: str,
    target: str,
    tmp_path: Path,
    capsys,
    with_manifest: bool,
) -> None:
    backup = make_backup("plain", pg_server, fresh_db, tmp_path)
    if not with_manifest:
        dumpfiles.manifest_path(backup).unlink()
    _cut_inside_copy(backup)
    query(pg_server, target, "CREATE TABLE precious (x int); INSERT INTO precious VALUES (1), (2)")
    assert restore(backup, pg_server, target, "--yes", "--clean") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cut short" in err and "nothing was restored" in err
    assert tables(pg_server, target) == {"public.precious": 2}
    query(pg_server, target, "DROP TABLE precious")
    assert restore(backup, pg_server, target, "--yes") == 1
    assert tables(pg_server, target) == {}


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TYPE public.mood AS ENUM ('ok')",
        "CREATE DOMAIN public.positive AS int CHECK (VALUE > 0)",
        "SELECT lo_create(0)",
    ],
)
def test_a_target_with_any_user_object_is_not_empty(
    backup: Path, pg_server: Server, target: str, capsys, sql: str
) -> None:
    query(pg_server, target, sql)
    assert restore(backup, pg_server, target, "--yes") == 2
    assert "is not empty" in capsys.readouterr().err
    assert tables(pg_server, target) == {}


def test_clean_removes_large_objects_too(backup: Path, pg_server: Server, target: str) -> None:
    query(pg_server, target, "SELECT lo_create(0); SELECT lo_create(0)")
    assert restore(backup, pg_server, target, "--yes", "--clean") == 0
    assert query(pg_server, target, "SELECT count(*) FROM pg_largeobject_metadata") == [(0,)]
    assert tables(pg_server, target)["public.readings"] == 500
