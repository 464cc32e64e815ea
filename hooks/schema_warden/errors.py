"""One exception family; the CLI edge turns it into a one-line message and an exit code."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Protocol

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130


def one_line(text: str) -> str:
    """The first line of a message, whitespace collapsed: how every message starts."""
    stripped = text.strip()
    return " ".join(stripped.splitlines()[0].split()) if stripped else ""


class WardenError(Exception):
    """A failure a person can act on. ``str(err)`` is the one-line message."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ProjectError(WardenError):
    """Bad flags, no alembic.ini, env.py fails to import, broken history (exit 2)."""

    exit_code = EXIT_USAGE


class EnvironmentProblem(WardenError):
    """No Postgres binaries, the server will not start, a tool is missing (exit 3)."""

    exit_code = EXIT_ENVIRONMENT


class TimedOut(WardenError):
    """The run passed its deadline (``--timeout``): exit 1 when a revision was running (a
    finding about it), 2 when env.py was (it never returns), 1 otherwise. ``check`` names the
    check in a report (``stairway``, ``env.py``)."""

    def __init__(
        self, message: str, *, exit_code: int, check: str, revision: str | None = None, detail: str = ""
    ) -> None:
        super().__init__(message, detail=detail)
        self.exit_code = exit_code
        self.check = check
        self.revision = revision


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, unwinding like Ctrl-C so that every cleanup runs."""


def _interrupt(signum: int, _frame: object) -> None:
    raise Interrupted(f"signal {signum}")


@contextlib.contextmanager
def interrupts() -> Iterator[None]:
    """In the block (on the main thread) Ctrl-C raises KeyboardInterrupt, SIGTERM and SIGHUP
    raise :class:`Interrupted`; the previous handlers come back after."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = {
        signal.SIGINT: signal.default_int_handler,
        signal.SIGTERM: _interrupt,
        signal.SIGHUP: _interrupt,
    }
    previous = {sig: signal.signal(sig, handler) for sig, handler in wanted.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set in C


def main_thread_only() -> None:
    """Called first in a helper thread: Ctrl-C, SIGTERM and SIGHUP are never delivered to it.

    Python runs handlers in the main thread whichever thread the kernel picked, so a signal
    caught by a helper thread would get past the main thread's ``pthread_sigmask`` (the
    server's cleanup, a fork) and interrupt what it holds off."""
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


def report_error(err: WardenError) -> int:
    """Print a WardenError as the one-line message (plus detail) and return its exit code."""
    import sys

    print(f"error: {err.message}", file=sys.stderr)
    if err.detail:
        print(err.detail.rstrip(), file=sys.stderr)
    return err.exit_code


class Command(Protocol):
    """What ``guarded`` wraps and returns: a command's ``main(argv) -> int``."""

    def __call__(self, argv: Sequence[str] | None = None) -> int: ...


def guarded(main: Command) -> Command:
    """Decorate a command's ``main(argv) -> int``: WardenError -> one line + exit code, Ctrl-C,
    SIGTERM and SIGHUP -> 130 (handled from the wrapper's first line: :func:`interrupts`)."""
    import functools
    import sys

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        code = EXIT_INTERRUPTED
        try:
            with interrupts():
                try:
                    code = main(argv)
                except WardenError as err:
                    code = report_error(err)
                except KeyboardInterrupt:
                    print(
                        "interrupted: the throwaway server was stopped and its files removed",
                        file=sys.stderr,
                    )
                    code = EXIT_INTERRUPTED
        except KeyboardInterrupt:  # a signal after the result (or while reporting it): it stands
            pass
        return code

    return wrapper
