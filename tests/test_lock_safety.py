"""db-upgrade against a table another session has locked: it gives up after lock_timeout,
tries again, names who held the lock, and leaves nothing half-applied (real PostgreSQL)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import psycopg2
import pytest
from schema_warden.server.postgres import Server

from database import locks
from database.manage import main

ALTER = "ALTER TABLE temperature_readings ADD COLUMN device_id VARCHAR(64)"
LOCK = "LOCK TABLE temperature_readings IN ACCESS EXCLUSIVE MODE"


def query(server: Server, db: str, sql: str) -> list[tuple]:
    conn = psycopg2.connect(**server.connect_kwargs(db))
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def columns(server: Server, db: str) -> list[str]:
    rows = query(
        server,
        db,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'temperature_readings' ORDER BY ordinal_position",
    )
    return [r[0] for r in rows]


@pytest.fixture
def at_0001(pg_server: Server, fresh_db: str, database_url: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["db-upgrade", "0001"]) == 0
    capsys.readouterr()
    return fresh_db


@pytest.fixture
def holder(pg_server: Server, at_0001: str) -> Iterator[int]:
    """Another session, idle in a transaction that holds an ACCESS EXCLUSIVE lock; its pid."""
    conn = psycopg2.connect(**pg_server.connect_kwargs(at_0001), application_name="nightly-report")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = int(cur.fetchone()[0])
            cur.execute(LOCK)
        yield pid
    finally:
        conn.rollback()
        conn.close()


def test_upgrade_behind_a_lock_retries_then_names_the_waiting_statement_and_the_holder(
    pg_server: Server, at_0001: str, holder: int, capsys: pytest.CaptureFixture[str]
) -> None:
    before = columns(pg_server, at_0001)
    assert main(["db-upgrade", "--lock-timeout", "200ms"]) == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert [line for line in lines if line.startswith("lock timeout")] == [
        "lock timeout (0.2 s): the transaction was rolled back; trying again in 0.2 s (attempt 2 of 3)",
        "lock timeout (0.2 s): the transaction was rolled back; trying again in 0.4 s (attempt 3 of 3)",
    ]
    (error,) = [line for line in lines if line.startswith("error:")]
    assert error.startswith("error: revision 0002 (database/alembic/versions/20261125_0002_")
    assert (
        f"{ALTER} waited 3 times for a lock, 0.2 s each (lock_timeout), and gave up: the lock was held "
        f"by session {holder} (application_name 'nightly-report', idle in transaction: {LOCK}); "
        "nothing was applied (one transaction, rolled back): end that session or run again when it "
        "is done, or wait longer with --lock-timeout"
    ) in error
    assert lines[-1] == error  # one line, no traceback
    # nothing half-applied: the revision and the table are as they were
    assert query(pg_server, at_0001, "SELECT version_num FROM alembic_version") == [("0001",)]
    assert columns(pg_server, at_0001) == before
    assert "device_id" not in before
    assert out == ""


def test_upgrade_goes_through_once_the_lock_is_released(
    pg_server: Server, at_0001: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db-upgrade", "--lock-timeout", "200ms"]) == 0
    assert capsys.readouterr().out.strip() == "0002 (head)"
    assert "device_id" in columns(pg_server, at_0001)


def test_statement_timeout_cancels_a_waiting_statement_without_retrying(
    pg_server: Server, at_0001: str, holder: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db-upgrade", "--lock-timeout", "0", "--statement-timeout", "200ms"]) == 1
    err = capsys.readouterr().err
    assert "canceling statement due to statement timeout" in err
    assert "trying again" not in err
    assert query(pg_server, at_0001, "SELECT version_num FROM alembic_version") == [("0001",)]


@pytest.mark.parametrize(
    ("text", "seconds", "setting"),
    [
        ("5", 5.0, "5000ms"),
        ("5s", 5.0, "5000ms"),
        ("200ms", 0.2, "200ms"),
        ("0.2", 0.2, "200ms"),
        ("2min", 120.0, "120000ms"),
        ("0", 0.0, "0"),
    ],
)
def test_durations(text: str, seconds: float, setting: str) -> None:
    assert locks.duration(text) == pytest.approx(seconds)
    assert locks.as_setting(locks.duration(text)) == setting


def test_a_duration_that_is_not_one_is_a_usage_error() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration: '5 seconds'"):
        locks.duration("5 seconds")
