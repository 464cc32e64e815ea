"""Neon's pooled host, and the session state our commands set for themselves.

Neon's ``-pooler`` host is PgBouncer in transaction mode: consecutive transactions of one
client may run on different server connections, and what a transaction leaves in the
session (``SET``, ``set_config(..., false)``) stays on the server connection for the next
client. Migrations and pg_dump need the direct host, so the commands that write or dump
refuse the pooled one unless ``--allow-pooler`` is given. Whatever host it is, our commands
set the session state they rely on inside their own transaction (``set_config(..., true)``)
instead of trusting the server connection they happen to get.
"""

from __future__ import annotations

import sys
from typing import Any

from database.config import ConfigError, direct_host, is_neon_pooled

# Postgres's default: what the migrations and our inventory queries are written for
SEARCH_PATH = '"$user", public'
SET_SEARCH_PATH = f"SELECT pg_catalog.set_config('search_path', '{SEARCH_PATH}', true)"
ALLOW_HELP = "go on with a Neon pooled host (-pooler, PgBouncer in transaction mode); not recommended"


class PooledHost(ConfigError):
    """A Neon pooled host given to a command that needs the direct one (exit 2)."""


def refuse_pooled(url: str, masked: str, *, source: str = "", allow: bool = False) -> None:
    """Raise :class:`PooledHost` for a Neon pooled host, naming the direct host; with ``allow``,
    a one-line warning instead. ``url`` may hold the password: only ``masked`` is shown."""
    if not is_neon_pooled(url):
        return
    where = f"{source} {masked}" if source else masked
    if allow:
        print(
            f"warning: {where} is Neon's pooled host; going on as --allow-pooler asks "
            f"(the direct host is {direct_host(url)})",
            file=sys.stderr,
        )
        return
    raise PooledHost(
        f"{where} is Neon's pooled host (PgBouncer in transaction mode: session settings, "
        f"advisory locks and pg_dump break there): use the direct host {direct_host(url)} "
        "(the same name without '-pooler'), or pass --allow-pooler"
    )


def add_allow_pooler(parser: Any) -> None:
    parser.add_argument("--allow-pooler", action="store_true", help=ALLOW_HELP)
