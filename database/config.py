"""Settings of the database project: ``DATABASE_URL`` from the environment or ``.env``.

``.env`` is looked for at the repository root, then in ``database/``; the first file that
sets a variable wins, and variables already in the environment win over both (python-dotenv
with ``override=False``). The URL never lives in git, in ``alembic.ini`` or in any output:
everything shown to a person uses :func:`mask_url`.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from dotenv import load_dotenv

from database.errors import ConfigError

DATABASE_DIR = Path(__file__).resolve().parent
REPO_ROOT = DATABASE_DIR.parent
ENV_FILES = (REPO_ROOT / ".env", DATABASE_DIR / ".env")
EXAMPLE_URL = "postgresql://user:password@host/dbname?sslmode=require"

# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which this project does not ship.
_SCHEMES = {
    "postgres": "postgresql+psycopg2",
    "postgresql": "postgresql+psycopg2",
    "postgresql+psycopg2": "postgresql+psycopg2",
    "postgresql+psycopg": "postgresql+psycopg",
}

__all__ = [
    "ENV_FILES",
    "REPO_ROOT",
    "ConfigError",
    "Settings",
    "direct_host",
    "excluded_tables",
    "get_settings",
    "is_neon_pooled",
    "load_env",
    "mask_url",
    "normalize_url",
]


@dataclass(frozen=True)
class Settings:
    url: str  # SQLAlchemy URL with the psycopg2 driver; holds the password: never print it
    masked: str  # the URL as the user wrote it, password replaced by ***: safe to show
    pooled: bool  # a Neon "-pooler" host (PgBouncer, transaction mode)

    @property
    def libpq_url(self) -> str:
        """The URL for libpq programs (pg_dump, psql): no SQLAlchemy driver suffix."""
        return "postgresql" + self.url[self.url.index("://") :]


def mask_url(url: str) -> str:
    """``postgresql://app:secret@host/db`` -> ``postgresql://app:***@host/db`` (query kept).

    The password *field* of the parsed URL is replaced, never its text wherever it occurs: a
    password ``p`` leaves ``postgresql`` and ``ep-cool-pooler`` as they are, and a password
    equal to the user name leaves the user name.
    """
    if "://" not in url:
        return "<not a URL, not shown>"  # no telling which part is the password
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostinfo}" if ":" in userinfo else f"{user}@{hostinfo}"
    query = "&".join(
        f"{key}=***" if unquote(key).lower() == "password" else item
        for item in parts.query.split("&")
        if item
        for key in [item.partition("=")[0]]
    )
    masked = f"{parts.scheme}://{netloc}{parts.path}"
    return masked + (f"?{query}" if query else "")


def normalize_url(url: str) -> str:
    """Accept ``postgres://`` and ``postgresql://``; answer a psycopg2 URL, query parameters kept.

    Raises :class:`ConfigError` (one line, password masked) when the URL cannot work.
    """
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"DATABASE_URL is not a URL (no '://' in it): expected {EXAMPLE_URL}")
    driver = _SCHEMES.get(scheme.lower())
    if driver is None:
        raise ConfigError(
            f"DATABASE_URL has scheme {scheme!r} ({mask_url(url)}): use {EXAMPLE_URL} "
            "(this project runs on PostgreSQL with the psycopg2 driver)"
        )
    normalized = f"{driver}://{rest}"
    try:
        parts = urlsplit(normalized)
        port = parts.port
    except ValueError:
        raise ConfigError(
            f"DATABASE_URL has an invalid host or port ({mask_url(url)}): expected {EXAMPLE_URL}; "
            "percent-encode special characters in the password (@ as %40, : as %3A, / as %2F)"
        ) from None
    del port
    if not parts.hostname and "host=" not in parts.query:
        raise ConfigError(
            f"DATABASE_URL has no host ({mask_url(url)}): expected {EXAMPLE_URL} "
            "(for a local socket: postgresql://user@/dbname?host=/var/run/postgresql)"
        )
    if not parts.path.strip("/"):
        raise ConfigError(f"DATABASE_URL names no database ({mask_url(url)}): add /dbname after the host")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(normalized)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"DATABASE_URL cannot be parsed ({mask_url(url)}): expected {EXAMPLE_URL}; "
            "percent-encode special characters in the password (@ as %40)"
        ) from None
    return normalized


def is_neon_pooled(url: str) -> bool:
    """A Neon pooled host: its first label ends in ``-pooler`` (``ep-x-123-pooler.region.aws.neon.tech``)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return host.split(".", 1)[0].endswith("-pooler")


def direct_host(url: str) -> str:
    """The Neon direct host of a pooled URL: ``ep-x-123-pooler.region...`` -> ``ep-x-123.region...``."""
    host = urlsplit(url).hostname or ""
    first, dot, rest = host.partition(".")
    return first.removesuffix("-pooler") + dot + rest


def load_env(files: Sequence[Path] | None = None) -> None:
    """Load ``.env`` files in order without overriding variables already set."""
    for path in ENV_FILES if files is None else files:
        if Path(path).is_file():
            load_dotenv(path, override=False)


def get_settings(*, warn: bool = True, env_files: Sequence[Path] | None = None) -> Settings:
    """Read and check ``DATABASE_URL``. Raises :class:`ConfigError` with a one-line message."""
    load_env(env_files)
    raw = os.environ.get("DATABASE_URL", "").strip()
    if not raw:
        raise ConfigError(
            "DATABASE_URL is not set: copy .env.example to .env and put your database URL in it "
            "(or export DATABASE_URL)"
        )
    url = normalize_url(raw)
    settings = Settings(url=url, masked=mask_url(raw), pooled=is_neon_pooled(url))
    if warn and settings.pooled:
        print(
            f"warning: {settings.masked} is a Neon pooled host (PgBouncer, transaction mode): "
            f"migrations and pg_dump need the direct host {direct_host(url)} "
            "(the same host name without '-pooler')",
            file=sys.stderr,
        )
    return settings


def project_settings(root: Path = REPO_ROOT) -> dict[str, object]:
    """The ``[tool.schema-warden]`` table of pyproject.toml (empty when absent)."""
    path = Path(root).resolve() / "pyproject.toml"
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return {}
    return dict(_project_settings(path, stamp))


@functools.lru_cache(maxsize=8)
def _project_settings(path: Path, stamp: int) -> dict[str, object]:
    # autogenerate asks include_object about every object: parse the file once per version of it
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    return dict(data.get("tool", {}).get("schema-warden", {}))


def excluded_tables(root: Path = REPO_ROOT) -> frozenset[str]:
    """Tables owned by other tools (Prisma, TypeORM): never created, dropped or diffed by us."""
    tables = project_settings(root).get("exclude-tables", ["_prisma_migrations"])
    if isinstance(tables, str):
        tables = [tables]
    return frozenset(str(t) for t in tables)  # type: ignore[union-attr]
