"""Lock-safe migrations: timeouts in the migration's transaction, retries of a lock timeout,
and who held the lock when db-upgrade gives up.

An ``ALTER TABLE`` queued behind a long query waits for its ACCESS EXCLUSIVE lock, and
every later query on the table queues behind the ALTER: one slow report stops all writes.
``lock_timeout`` (default 5 s) makes the migration give up instead; the whole upgrade is one
transaction, so a timeout undoes it all, and it is tried again after a pause. While it
runs, a second connection asks ``pg_blocking_pids`` who blocks it, so the final message
names the waiting statement and the session that held the lock.
"""

from __future__ import annotations

import argparse
import re
import threading
from dataclasses import dataclass
from typing import Any

DEFAULT_LOCK_TIMEOUT_S = 5.0
LOCK_ATTEMPTS = 3
LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of "canceling statement due to lock timeout"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|min)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "min": 60.0, None: 1.0}

_BLOCKERS_SQL = """
SELECT b.pid, coalesce(b.application_name, ''), coalesce(b.state, ''), coalesce(b.query, ''),
       coalesce(w.query, '')
FROM pg_catalog.pg_stat_activity w
CROSS JOIN LATERAL unnest(pg_catalog.pg_blocking_pids(w.pid)) AS blocking(pid)
JOIN pg_catalog.pg_stat_activity b ON b.pid = blocking.pid
WHERE w.pid = %s
ORDER BY b.pid
"""


def duration(text: str) -> float:
    """argparse type: ``5``, ``5s``, ``200ms``, ``0.2``, ``2min`` -> seconds (0: no limit)."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 5s, 200ms, 2min; 0 = no limit)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def as_setting(seconds: float) -> str:
    """Seconds as a Postgres duration setting: ``0.2`` -> ``200ms``, 0 -> ``0`` (no limit)."""
    return f"{round(seconds * 1000)}ms" if seconds > 0 else "0"


def shown(seconds: float) -> str:
    return f"{seconds:g} s"


def timeout_statements(lock_timeout: float, statement_timeout: float | None) -> list[str]:
    """SQL setting the timeouts for the current transaction only (safe behind a pooler)."""
    sql = [f"SELECT pg_catalog.set_config('lock_timeout', '{as_setting(lock_timeout)}', true)"]
    if statement_timeout is not None:
        sql.append(
            f"SELECT pg_catalog.set_config('statement_timeout', '{as_setting(statement_timeout)}', true)"
        )
    return sql


def backoff(attempt: int, lock_timeout: float) -> float:
    """Pause after failed attempt ``attempt`` (1, 2, ...): doubling, from at most a second."""
    return min(lock_timeout or 1.0, 1.0) * 2 ** (attempt - 1)


def is_lock_timeout(err: BaseException) -> bool:
    orig = getattr(err, "orig", None)
    return getattr(orig, "pgcode", None) == LOCK_NOT_AVAILABLE


@dataclass(frozen=True)
class Blocker:
    """A session that held a lock the migration waited for."""

    pid: int
    application_name: str
    state: str
    query: str
    waiting_query: str  # the migration's statement as the server saw it

    def line(self) -> str:
        app = (
            f"application_name {self.application_name!r}" if self.application_name else "no application_name"
        )
        state = f", {self.state}" if self.state else ""
        query = f": {_short(self.query)}" if self.query else ""
        return f"session {self.pid} ({app}{state}{query})"


def _short(sql: str, limit: int = 200) -> str:
    text = re.sub(r"\s+", " ", sql).strip()
    return text if len(text) <= limit else text[:limit] + " ..."


class BlockerWatch:
    """A second connection that notes who blocks the migration's session while it runs.

    Started with the migration's backend pid; polls every ``interval`` seconds until stopped.
    A failure of the watch never fails the migration: the message then says less.
    """

    def __init__(self, libpq_url: str, interval: float) -> None:
        self.libpq_url = libpq_url
        self.interval = interval
        self.blockers: dict[int, Blocker] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None

    def start(self, pid: int) -> None:
        import psycopg2

        try:
            self._conn = psycopg2.connect(
                self.libpq_url, connect_timeout=10, application_name="schema-warden lock watch"
            )
            self._conn.autocommit = True
        except psycopg2.Error:
            return
        self._thread = threading.Thread(target=self._poll, args=(pid,), daemon=True)
        self._thread.start()

    def _poll(self, pid: int) -> None:
        import psycopg2

        try:
            with self._conn.cursor() as cur:
                while not self._stop.wait(self.interval):
                    cur.execute(_BLOCKERS_SQL, (pid,))
                    for row in cur.fetchall():
                        self.blockers[int(row[0])] = Blocker(int(row[0]), *map(str, row[1:]))
        except psycopg2.Error:
            return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._conn is not None:
            self._conn.close()
