"""One exception family; the CLI edge turns it into a one-line message and an exit code."""

from __future__ import annotations

from collections.abc import Sequence
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
    """Decorate a command's ``main(argv) -> int``: WardenError -> one line + exit code, Ctrl-C -> 130."""
    import functools
    import sys

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv)
        except WardenError as err:
            return report_error(err)
        except KeyboardInterrupt:
            print("interrupted: the throwaway server was stopped and its files removed", file=sys.stderr)
            return EXIT_INTERRUPTED

    return wrapper
