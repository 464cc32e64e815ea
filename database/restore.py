"""``python database/manage.py db-restore FILE``: checksum, completeness, then one transaction.

Before anything is applied the dump is checked whole: a plain pg_dump script must end with
pg_dump's end marker (a script cut at a line boundary inside a ``COPY`` is valid SQL: psql
ends the COPY at the end of input and would commit the rows it got); a custom archive must
list (``pg_restore --list``) and read to its end (``pg_restore -f /dev/null``).

Both formats go through ``psql --single-transaction -v ON_ERROR_STOP=1``: a plain file is
fed as it is, a custom archive through ``pg_restore -f -``. We feed psql ourselves, so it
sees the end of its input only when the whole script arrived; a failure or Ctrl-C kills
psql first and the target is left as it was. ``--clean`` drops the target's schemas and
large objects in the same transaction. A target is empty only when it holds no user object
of any kind: no relation, schema, function, type, sequence or large object.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from schema_warden.api import EnvironmentProblem, ProjectError, WardenError

from database import dumpfiles
from database.pgclient import (
    ChildResult,
    ClientTools,
    Inventory,
    Target,
    check_url,
    clean_statements,
    compare_inventory,
    connect,
    feed_psql,
    find_client_tools,
    first_error,
    human_size,
    read_inventory,
    sigterm_as_interrupt,
    user_relations,
)
from database.pooler import add_allow_pooler, refuse_pooled

_CHUNK = 1 << 20
# Settings newer pg_dumps write into every script, and the first major that knows them:
# pg_dump 17+ writes "SET transaction_timeout = 0;", which a 16 server rejects.
_NEWER_SETTINGS = ((17, b"SET transaction_timeout = 0;\n"),)


class RestoreFailed(WardenError):
    """psql or pg_restore failed on the script (exit 1); the transaction was rolled back."""

    exit_code = 1


class IncompleteDump(WardenError):
    """The dump is cut short or unreadable: refused before anything is applied (exit 1)."""

    exit_code = 1


PLAIN_HEADER = b"-- PostgreSQL database dump"
PLAIN_END = b"-- PostgreSQL database dump complete"
_TAIL = 4096


def check_complete(backup: Path, fmt: str, tools: ClientTools, name: str | None = None) -> None:
    """Raise :class:`IncompleteDump` unless ``backup`` is whole; reads it, applies nothing."""
    name = name or backup.name
    if fmt == "plain":
        with open(backup, "rb") as fh:
            head = fh.read(_TAIL)
            fh.seek(max(0, backup.stat().st_size - _TAIL))
            tail = fh.read()
        # a script that is not pg_dump's (no header) has no marker to look for
        if PLAIN_HEADER in head and PLAIN_END not in tail:
            raise IncompleteDump(
                f"{name} is cut short: pg_dump's end marker ({PLAIN_END.decode()!r}) is missing, "
                "nothing was restored; use a complete backup (db-backup writes it whole or not at all)"
            )
        return
    for argv in (
        [tools.path("pg_restore"), "--list", str(backup)],
        [tools.path("pg_restore"), "--no-owner", "--no-privileges", "-f", os.devnull, str(backup)],
    ):
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if result.returncode != 0:
            raise IncompleteDump(
                f"pg_restore cannot read {name}, nothing was restored (the archive is cut short or "
                f"damaged): {first_error(result.stderr)}"
            )


_USER_OBJECTS = """
    SELECT format('function %s.%s', n.nspname, p.proname)
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                      AND d.objid = p.oid AND d.deptype = 'e')
    UNION ALL
    SELECT format('type %s.%s', n.nspname, t.typname)
    FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
      AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c')
      AND NOT (t.typcategory = 'A' AND t.typelem <> 0)
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_type'::regclass
                      AND d.objid = t.oid AND d.deptype = 'e')
    UNION ALL
    SELECT format('large object %s', m.oid) FROM pg_catalog.pg_largeobject_metadata m
    ORDER BY 1
"""


def user_objects(cur: Any) -> list[str]:
    """Every user object a restore would meet: relations and schemas (``user_relations``),
    functions, types (composite, enum, domain, range, base) and large objects; extensions'
    own objects excluded."""
    present = user_relations(cur)
    cur.execute(_USER_OBJECTS)
    return present + [r[0] for r in cur.fetchall()]


# --clean: large objects live outside every schema, so dropping schemas keeps them
CLEAN_LARGE_OBJECTS = "SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;"


class CountMismatch(WardenError):
    """The restored database does not hold what the manifest says (exit 1)."""

    exit_code = 1


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        yield from iter(lambda: fh.read(_CHUNK), b"")


def compatible_script(chunks: Iterator[bytes], target_major: int | None) -> Iterator[bytes]:
    """Drop the header SET lines of settings the target server does not have yet."""
    drop = [line for since, line in _NEWER_SETTINGS if target_major is not None and target_major < since]
    first = True
    for chunk in chunks:
        if first and drop:
            for line in drop:  # the header is in the first chunk (1 MiB)
                chunk = chunk.replace(b"\n" + line, b"\n", 1)
        first = False
        yield chunk


def _leaving_no_settings(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The script, then ``RESET ALL`` in the same transaction.

    A dump sets session state (``set_config('search_path', '', false)``, ``SET
    statement_timeout = 0``, ...). On a server connection of its own that ends with the
    session; behind a transaction pooler (Neon's ``-pooler`` host) the connection goes to the
    next client, which then finds no table without a schema name (``db-current``: no
    revision). Resetting before the commit leaves the session as the restore found it.
    """
    yield from chunks
    yield b"\nRESET ALL;\n"


def _archive_chunks(tools: ClientTools, path: Path, name: str) -> Iterator[bytes]:
    """A custom archive as SQL (``pg_restore -f -``); raises if pg_restore fails."""
    argv = [tools.path("pg_restore"), "--no-owner", "--no-privileges", "-f", "-", str(path)]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        try:
            yield from iter(lambda: proc.stdout.read(_CHUNK), b"")  # type: ignore[union-attr]
            code = proc.wait()
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if code != 0:
            err.seek(0)
            raise RestoreFailed(
                f"pg_restore cannot read {name}: {first_error(err.read().decode(errors='replace'))}"
            )


def restore_into(
    target: Target,
    backup: Path,
    fmt: str,
    tools: ClientTools,
    *,
    clean: Sequence[str] = (),
    target_major: int | None = None,
    name: str | None = None,
    stream: IO[str] | None = None,
) -> ChildResult:
    """Restore ``backup`` into ``target`` in one transaction (after ``clean`` SQL, if any)."""
    argv = [
        tools.path("psql"),
        "-X",
        "-q",
        "--no-password",
        "-v",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        "-d",
        target.dsn,
    ]
    if clean:
        argv += ["-c", "\n".join(clean)]
    argv += ["-f", "-"]
    name = name or backup.name
    chunks = _file_chunks(backup) if fmt == "plain" else _archive_chunks(tools, backup, name)
    chunks = _leaving_no_settings(compatible_script(chunks, target_major))
    result = feed_psql(argv, chunks, env=target.child_env(), label=f"restoring {name}", stream=stream)
    if result.returncode == 2:
        raise EnvironmentProblem(
            f"psql lost the connection to {target.masked}: {target.scrub(first_error(result.stderr))}"
        )
    if result.returncode != 0:
        raise RestoreFailed(
            f"restore of {name} into {target.masked} failed, nothing was changed (one "
            f"transaction): {target.scrub(first_error(result.stderr))}"
        )
    return result


def check_against_manifest(manifest: dict[str, object] | None, actual: Inventory) -> list[str]:
    if not manifest or not isinstance(manifest.get("tables"), dict):
        return []
    return compare_inventory(
        manifest["tables"],  # type: ignore[arg-type]
        list(manifest.get("alembic_revisions") or []),  # type: ignore[call-overload]
        actual,
    )


def _confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise ProjectError(
            f"stdin is not a terminal, so db-restore cannot ask: {question} Pass --yes to go on"
        )
    answer = input(f"{question} Type yes to go on: ")
    return answer.strip().lower() in ("y", "yes")


def restore_command(args: argparse.Namespace) -> int:
    backup = Path(args.file)
    if not backup.is_file():
        raise ProjectError(f"backup file {backup} not found: give the path of a backup_*.sql or .dump file")
    dumpfiles.verify_checksum(backup)
    fmt = dumpfiles.detect_format(backup)
    manifest = dumpfiles.read_manifest(backup)
    tools = find_client_tools(args.pg_bin)
    check_complete(backup, fmt, tools)
    if args.target_url:
        target = check_url(args.target_url, "--target-url")
        refuse_pooled(target.url, target.masked, source="--target-url", allow=args.allow_pooler)
    else:
        from database.config import get_settings

        settings = get_settings(warn=False)
        refuse_pooled(settings.url, settings.masked, source="DATABASE_URL", allow=args.allow_pooler)
        target = Target.from_settings(settings)
    with sigterm_as_interrupt():
        with connect(target) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_setting('server_version_num')::int / 10000")
            target_major = int(cur.fetchone()[0])
            present = user_objects(cur)
            clean = [*clean_statements(cur), CLEAN_LARGE_OBJECTS] if args.clean else []
            conn.rollback()
        if present and not args.clean:
            shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
            raise ProjectError(
                f"target {target.masked} is not empty ({len(present)} objects: {shown}): pass --clean "
                "to drop its schemas and restore in their place, or restore into an empty database"
            )
        size = human_size(backup.stat().st_size)
        what = f"restore {backup.name} ({fmt}, {size}) into {target.masked}"
        if present:
            what += f", dropping its {len(present)} objects first"
        if not _confirm(what + "?", args.yes):
            print("cancelled: nothing was changed", file=sys.stderr)
            return 1
        result = restore_into(target, backup, fmt, tools, clean=clean, target_major=target_major)
        with connect(target) as conn, conn.cursor() as cur:
            actual = read_inventory(cur)
            conn.rollback()
    problems = check_against_manifest(manifest, actual)
    if problems:
        raise CountMismatch(
            f"restored {backup.name} into {target.masked}, but it differs from its manifest: "
            + "; ".join(problems)
        )
    checked = " (row counts match the manifest)" if manifest else ""
    print(
        f"restored {backup.name} into {target.masked}: {dumpfiles.table_summary(actual.tables)}, "
        f"revision {', '.join(actual.alembic_revisions) or 'none'}, {result.seconds:.1f} s{checked}"
    )
    return 0


def add_parser(sub: object) -> None:
    p = sub.add_parser(  # type: ignore[attr-defined]
        "db-restore",
        help="restore a backup file into a database (checksum checked, one transaction)",
        description="Restore a db-backup file. The .sha256 beside it is checked first; the restore "
        "runs in one transaction; a non-empty target needs --clean.",
    )
    p.add_argument("file", help="backups/backup_<UTC>.sql or .dump (its .sha256 must be beside it)")
    p.add_argument("--target-url", help="database to restore into (default: DATABASE_URL)")
    p.add_argument("--clean", action="store_true", help="drop the target's schemas first (same transaction)")
    p.add_argument(
        "--yes", action="store_true", help="do not ask for confirmation (needed without a terminal)"
    )
    p.add_argument("--pg-bin", help="bin directory of psql/pg_restore (default: newest installed)")
    add_allow_pooler(p)
    p.set_defaults(func=restore_command)
