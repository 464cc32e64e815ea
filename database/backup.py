"""``python database/manage.py db-backup``: pg_dump of DATABASE_URL, checksummed, with a
manifest, optionally proven restorable, kept atomically (see README, Backups).

The dump is written to ``.backup_<stamp>.<ext>.partial`` in the output directory and
renamed to ``backup_<stamp>.sql``/``.dump`` only when pg_dump succeeded and, with
``--verify``, the restore into a throwaway server matched the manifest. Row counts and the
Alembic revision are read in the snapshot pg_dump itself uses (``pg_export_snapshot``), so
they describe exactly the rows in the file, even while devices keep writing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from schema_warden.api import EnvironmentProblem, WardenError

from database import dumpfiles, restore
from database.pgclient import (
    ClientTools,
    Inventory,
    Target,
    compare_inventory,
    connect,
    find_client_tools,
    first_error,
    human_size,
    read_inventory,
    require_client_for,
    run_with_progress,
    sigterm_as_interrupt,
)
from database.pooler import add_allow_pooler, refuse_pooled

VERIFY_DATABASE = "verify_restore"


class DumpFailed(EnvironmentProblem):
    """pg_dump failed or was killed, or the disk filled up (exit 3). No backup was kept."""


class VerifyFailed(WardenError):
    """The restored copy differs from the manifest (exit 1). No backup was kept."""

    exit_code = 1


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: dumpfiles.Manifest
    verify_server: str | None  # "PostgreSQL 15.18" when verified


def register(sub: Any) -> None:
    """Add the db-backup and db-restore commands to manage.py's parser."""
    p = sub.add_parser(
        "db-backup",
        help="pg_dump the database to backups/ (atomic, checksummed, --verify restores it)",
        description="pg_dump DATABASE_URL into the output directory, with a .sha256 and a .json "
        "manifest beside it. Nothing that looks like a backup appears unless it is complete.",
    )
    p.add_argument(
        "--format", choices=("plain", "custom"), default="plain", help="plain .sql (default) or custom .dump"
    )
    p.add_argument("--output-dir", default="backups", help="where backups go (default: backups)")
    p.add_argument(
        "--verify", action="store_true", help="restore into a throwaway server and compare row counts first"
    )
    p.add_argument("--keep", type=_positive, metavar="N", help="keep the newest N backups, delete older ones")
    p.add_argument("--pg-bin", help="bin directory of pg_dump/psql/pg_restore (default: newest installed)")
    add_allow_pooler(p)
    p.set_defaults(func=backup_command)
    restore.add_parser(sub)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--keep needs a whole number of at least 1, got {text!r}")
    return value


def backup_command(args: argparse.Namespace) -> int:
    from database.config import get_settings

    settings = get_settings(warn=False)
    refuse_pooled(settings.url, settings.masked, source="DATABASE_URL", allow=args.allow_pooler)
    target = Target.from_settings(settings)
    out_dir = dumpfiles.prepare_output_dir(Path(args.output_dir))
    with sigterm_as_interrupt():
        result = make_backup(target, args.pg_bin, out_dir, fmt=args.format, verify=args.verify)
        removed = apply_retention(out_dir, args.keep, keep_name=result.path.name) if args.keep else []
    m = result.manifest
    print(
        f"wrote {result.path} ({human_size(m.size_bytes)}, {dumpfiles.table_summary(m.tables)}, "
        f"revision {', '.join(m.alembic_revisions) or 'none'}) in {m.duration_seconds:.1f} s"
    )
    if result.verify_server:
        print(
            f"verified: restored into a throwaway {result.verify_server} server, row counts and "
            f"revision match ({m.verify_seconds:.1f} s)"
        )
    if removed:
        print(f"removed {len(removed)} older backups (--keep {args.keep}): {', '.join(removed)}")
    return 0


def apply_retention(out_dir: Path, keep: int, *, keep_name: str) -> list[str]:
    names = [p.name for p in dumpfiles.list_backups(out_dir)]
    doomed = [n for n in dumpfiles.expired(names, keep) if n != keep_name]
    return dumpfiles.remove_backups(out_dir, doomed)


def _export_snapshot(conn: Any, cur: Any) -> str | None:
    """Open the REPEATABLE READ transaction pg_dump will share; None where exporting is refused."""
    import psycopg2

    try:
        cur.execute("SELECT pg_catalog.pg_export_snapshot()")
        return str(cur.fetchone()[0])
    except psycopg2.Error as err:
        conn.rollback()
        print(
            f"warning: cannot export a snapshot ({first_error(str(err))}); row counts are read "
            "beside the dump and may differ if the database is being written to",
            file=sys.stderr,
        )
        return None


def _verify_binaries(tools: ClientTools, inventory: Inventory) -> Any:
    """The server to restore into: pg_dump's own installation if it has one, else the default."""
    from schema_warden.api import find_binaries

    try:
        binaries = find_binaries(tools.bindir)
    except EnvironmentProblem:
        binaries = find_binaries()
    if binaries.major < inventory.server_major:
        raise EnvironmentProblem(
            f"--verify needs a PostgreSQL {inventory.server_major} (or newer) server to restore into, "
            f"found {binaries.version} in {binaries.bindir}: install postgresql-{inventory.server_major} "
            "(the server package; nothing needs to run) or point --pg-bin at its bin directory"
        )
    return binaries


def make_backup(target: Target, pg_bin: str | None, out_dir: Path, *, fmt: str, verify: bool) -> BackupResult:
    started_at = datetime.now(timezone.utc)
    name = dumpfiles.backup_name(started_at, fmt)
    final = out_dir / name
    if final.exists():
        raise WardenError(f"{final} already exists: another backup started in the same second; run again")
    partial = out_dir / dumpfiles.partial_name(name)
    written: list[Path] = []
    published = False
    try:
        with connect(target) as conn:
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with conn.cursor() as cur:
                snapshot = _export_snapshot(conn, cur)
                inventory = read_inventory(cur)
            tools = find_client_tools(pg_bin, server_major=inventory.server_major)
            require_client_for(tools, inventory.server_major, inventory.server_version, target.masked)
            print(
                f"db-backup: {target.masked} (PostgreSQL {inventory.server_version}) -> {out_dir}/ "
                f"(pg_dump {tools.version}, {fmt})",
                flush=True,
            )
            binaries = _verify_binaries(tools, inventory) if verify else None
            _create_private(partial)
            argv = [
                tools.path("pg_dump"),
                f"--format={fmt}",
                "--no-owner",
                "--no-privileges",
                "--no-password",
                f"--file={partial}",
                f"--dbname={target.dsn}",
            ]
            if snapshot:
                argv.append(f"--snapshot={snapshot}")
            dump = run_with_progress(argv, env=target.child_env(), label=f"pg_dump {name}", watch=partial)
            conn.rollback()  # the snapshot is no longer needed
        _check_dump(dump, partial, target)
        size = partial.stat().st_size
        digest = dumpfiles.sha256_of(partial)
        verify_seconds = None
        server_label = None
        if binaries is not None:
            verify_seconds = _verify(partial, fmt, tools, binaries, inventory, name, target)
            server_label = f"PostgreSQL {binaries.version}"
        manifest = dumpfiles.Manifest(
            file=name,
            format=fmt,
            created_at=dumpfiles.utc_iso(started_at),
            database_url=target.masked,
            server_version=inventory.server_version,
            pg_dump_version=tools.version,
            alembic_revisions=list(inventory.alembic_revisions),
            tables=dict(inventory.tables),
            size_bytes=size,
            sha256=digest,
            duration_seconds=round(dump.seconds, 3),
            snapshot=snapshot is not None,
            verified=binaries is not None,
            verify_seconds=None if verify_seconds is None else round(verify_seconds, 3),
        )
        try:
            for path, text in (
                (dumpfiles.checksum_path(final), dumpfiles.checksum_line(digest, name)),
                (dumpfiles.manifest_path(final), manifest.to_json()),
            ):
                written.append(path)
                dumpfiles.write_atomically(path, text)
            dumpfiles.publish(partial, final)
        except OSError as err:
            raise DumpFailed(
                f"cannot write {final.name} in {out_dir}: {err.strerror}; no backup was kept"
            ) from None
        published = True
        return BackupResult(final, manifest, server_label)
    finally:
        if not published:
            for path in [partial, *written]:
                with contextlib.suppress(OSError):
                    path.unlink()


def _create_private(path: Path) -> None:
    """Create ``path`` empty and 0600 before pg_dump writes into it (pg_dump truncates a file and
    keeps its mode): a dump holds every row, so no other local account may read it, even
    while it is being written. The final backup is a hard link or a rename of it: also 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as err:
        raise DumpFailed(
            f"cannot write {path.name} in {path.parent}: {err.strerror}; no backup was kept"
        ) from None
    try:
        os.fchmod(fd, 0o600)  # a leftover of a killed run keeps its old mode otherwise
    finally:
        os.close(fd)


def _check_dump(dump: Any, partial: Path, target: Target) -> None:
    size = partial.stat().st_size if partial.exists() else 0
    if dump.signal_name:
        raise DumpFailed(
            f"pg_dump was killed by {dump.signal_name} after writing {human_size(size)} from "
            f"{target.masked}: no backup was kept (the partial file was removed)"
        )
    if dump.returncode != 0:
        raise DumpFailed(
            f"pg_dump failed (exit {dump.returncode}) on {target.masked}: "
            f"{target.scrub(first_error(dump.stderr))}; no backup was kept"
        )
    if not partial.is_file() or size == 0:  # the file was made empty before pg_dump ran
        raise DumpFailed(f"pg_dump exited 0 but wrote no file for {target.masked}: no backup was kept")


def _verify(
    partial: Path,
    fmt: str,
    tools: ClientTools,
    binaries: Any,
    inventory: Inventory,
    name: str,
    source: Target,
) -> float:
    """Restore into a throwaway server and compare with what the source held; returns seconds."""
    from schema_warden.api import throwaway_server

    start = time.monotonic()
    with throwaway_server(binaries=binaries) as server:
        server.create_database(VERIFY_DATABASE)
        scratch = Target(
            url=server.libpq_url(VERIFY_DATABASE), masked="the throwaway server", source="throwaway server"
        )
        try:
            restore.restore_into(scratch, partial, fmt, tools, target_major=binaries.major, name=name)
        except restore.RestoreFailed as err:
            raise VerifyFailed(f"verify failed: {name} does not restore: {err}; no backup was kept") from None
        with connect(scratch) as conn, conn.cursor() as cur:
            restored = read_inventory(cur)
    problems = compare_inventory(inventory.tables, inventory.alembic_revisions, restored)
    if problems:
        raise VerifyFailed(
            f"verify failed: {name} restored differs from {source.masked}: {'; '.join(problems)}; "
            "no backup was kept"
        )
    return time.monotonic() - start
