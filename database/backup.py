"""db-backup / db-restore: pg_dump and pg_restore through subprocess (see issue: backups)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the db-backup and db-restore commands to manage.py's parser."""
    p = sub.add_parser("db-backup", help="pg_dump the database to backups/ (atomic, checksummed)")
    p.set_defaults(func=_not_ready)
    p = sub.add_parser("db-restore", help="restore a backup file into a database")
    p.set_defaults(func=_not_ready)


def _not_ready(args: argparse.Namespace) -> int:
    raise NotImplementedError("db-backup/db-restore are being built")
