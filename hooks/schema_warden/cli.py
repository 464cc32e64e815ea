"""``schema-warden <command>``: dispatch to one module per command (imported lazily)."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Sequence

from schema_warden import __version__

# command -> (module, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "check": (
        "schema_warden.commands.check",
        "prove the migrations in a throwaway Postgres: stairway, round trip, drift",
    ),
    "heads": (
        "schema_warden.commands.heads",
        "no database: one head, no broken down_revision links (milliseconds)",
    ),
    "diff": (
        "schema_warden.commands.diff",
        "schema diff of a git ref vs the working tree (what a pull request changes)",
    ),
    "lint": ("schema_warden.commands.lint", "risky operations in new migrations (parsed SQL, named rules)"),
    "history": ("schema_warden.commands.history", "integrity file: applied migrations must not be edited"),
    "secrets": ("schema_warden.commands.secrets", ".env files and URLs with passwords never committed"),
    "erd": ("schema_warden.commands.erd", "entity relationship diagram (Mermaid) of the schema at head"),
}

USAGE = f"""\
usage: schema-warden <command> [options]

Keeps an Alembic project's PostgreSQL schema honest. Every check runs in a throwaway
PostgreSQL server of its own (unix socket, no TCP, removed afterwards): it never connects
to DATABASE_URL.

commands:
{{commands}}

Run 'schema-warden <command> --help' for a command's options.
exit codes: 0 clean, 1 problems found, 2 usage or project error, 3 environment error
(no Postgres binaries, server will not start), 130 interrupted.
schema-warden {__version__}
"""


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return USAGE.format(commands="\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage(), end="")
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"schema-warden {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest))


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `yes | head`


def entry() -> None:
    """The console script: :func:`main`, then exit without the interpreter's teardown.

    Every command has stopped its server, reaped its processes and removed its files before
    it returns; what is left is the garbage collection of SQLAlchemy's, Alembic's and the
    project's objects at shutdown: about 0.13 s of a warm ``check``. Only the streams need
    flushing.
    """
    try:
        code = main()
    except BrokenPipeError:  # the reader left (``| head``): quietly, as a process killed by SIGPIPE
        code = EXIT_BROKEN_PIPE
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (``| head``)
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
