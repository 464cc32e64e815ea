"""The run's deadline (``--timeout``, ``[tool.schema-warden] timeout``): a thread that, when
it passes, stops whatever the project's code is doing.

At the deadline the watchdog (1) interrupts the main thread with SIGINT, exactly as Ctrl-C
would (a pure-Python loop in env.py unwinds at its next bytecode; a statement that the main
thread waits for is cancelled by the check's psycopg2 wait callback), and (2) cancels every
statement still running on the throwaway server (``pg_cancel_backend`` from a connection of
its own: a forked worker's, another driver's). The run unwinds as an interrupt, so the
server is stopped and its files removed; the caller sees :attr:`Watchdog.fired` and reports
a timeout instead of exit 130. If the main thread is still running after
:data:`GRACE_S`, it is interrupted again (the project's code swallowed the first one).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Any

from schema_warden.errors import main_thread_only

NAME = "schema-warden-watchdog"  # proof/parallel.py forks with this thread running
GRACE_S = 10.0

_CANCEL = (
    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
    "AND backend_type = 'client backend' AND state = 'active' AND query_start < to_timestamp(%s)"
)


class Watchdog:
    """The deadline of one run, as a context manager; set :attr:`server` once one runs."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.server: Any = None  # the throwaway server whose statements are cancelled
        self.fired = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._main = threading.get_ident() if threading.current_thread() is threading.main_thread() else None
        self._thread = threading.Thread(target=self._watch, name=NAME, daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """No interrupt from here on; waits for the thread."""
        with self._lock:
            self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        main_thread_only()
        if self._done.wait(self.seconds):
            return
        while True:
            with self._lock:
                if self._done.is_set():
                    return
                self.fired = True
                signalled = time.time()
                if self._main is not None:  # Ctrl-C's way: also ends a blocking wait
                    signal.pthread_kill(self._main, signal.SIGINT)
            self._cancel(signalled)
            if self._done.wait(GRACE_S):
                return

    def _cancel(self, before: float) -> None:
        """Cancel the statements that began before ``before`` (not the rollbacks that the
        interrupted main thread sends after it) and still run."""
        server = self.server
        if server is None:
            return
        import psycopg2

        with contextlib.suppress(psycopg2.Error, OSError):
            conn = psycopg2.connect(**server.connect_kwargs(), connect_timeout=5)
            try:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(_CANCEL, (before,))
            finally:
                conn.close()


def other_threads() -> int:
    """Threads besides the caller's and the watchdog's (which holds no lock a fork could inherit)."""
    return sum(1 for t in threading.enumerate() if t.name != NAME) - 1
