"""One exception family; the CLI edge turns it into a one-line message and an exit code."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

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


# While the main thread forks (os.fork, or a subprocess with a preexec_fn), Python runs the
# modules' fork hooks (logging's takes and gives back its lock): an interrupt raised inside
# one prints "Exception ignored" and leaves the lock in doubt. So around a fork the handlers
# only note a signal, and it is raised as the fork returns.
_fork_state: dict[str, Any] = {"active": False, "saved": None, "noted": []}


def _note(signum: int, _frame: object) -> None:
    _fork_state["noted"].append(signum)


def _before_fork() -> None:
    import signal
    import threading

    if not _fork_state["active"] or threading.current_thread() is not threading.main_thread():
        return
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    _fork_state["saved"] = {sig: signal.signal(sig, _note) for sig in sigs}


def _after_fork_in_parent() -> None:
    import _thread
    import signal

    saved = _fork_state["saved"]
    if saved is None:
        return
    _fork_state["saved"] = None
    for sig, handler in saved.items():
        signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    noted, _fork_state["noted"] = _fork_state["noted"], []
    if noted:  # raised by the handler the fork's caller had, once it runs Python again
        _thread.interrupt_main(noted[0])


def _after_fork_in_child() -> None:
    import signal

    saved = _fork_state["saved"]
    _fork_state["saved"] = None
    _fork_state["noted"] = []
    if saved is not None:  # the child sets its own handlers next (or execs)
        for sig, handler in saved.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _watch_forks() -> None:
    """Register the fork hooks once, after logging's: ours then run first before a fork and
    last after it."""
    import logging  # noqa: F401
    import os

    if not _fork_state.get("registered"):
        _fork_state["registered"] = True
        os.register_at_fork(
            before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
        )


@contextlib.contextmanager
def interrupts() -> Iterator[None]:
    """In the block (on the main thread) Ctrl-C raises KeyboardInterrupt, SIGTERM and SIGHUP
    raise :class:`Interrupted`; the previous handlers come back after. Around a fork a
    signal waits until the fork returns."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _watch_forks()
    wanted = {
        signal.SIGINT: signal.default_int_handler,
        signal.SIGTERM: _interrupt,
        signal.SIGHUP: _interrupt,
    }
    previous = {sig: signal.signal(sig, handler) for sig, handler in wanted.items()}
    _fork_state["active"] = True
    try:
        yield
    finally:
        _fork_state["active"] = False
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
