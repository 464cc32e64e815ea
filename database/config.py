"""Settings of the database project: ``DATABASE_URL`` from the environment or ``.env``.

``.env`` is looked for at the repository root, then in ``database/``; variables already in
the environment win (python-dotenv with ``override=False``). The URL never lives in git,
in ``alembic.ini`` or in any output: everything shown to a person uses :func:`mask_url`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from dotenv import load_dotenv

DATABASE_DIR = Path(__file__).resolve().parent
REPO_ROOT = DATABASE_DIR.parent
ENV_FILES = (REPO_ROOT / ".env", DATABASE_DIR / ".env")

_SCHEMES = {
    "postgres": "postgresql+psycopg2",
    "postgresql": "postgresql+psycopg2",
    "postgresql+psycopg2": "postgresql+psycopg2",
    "postgresql+psycopg": "postgresql+psycopg",
}


class ConfigError(Exception):
    """DATABASE_URL missing or malformed. Exit code 2."""

    exit_code = 2


@dataclass(frozen=True)
class Settings:
    url: str  # SQLAlchemy URL with the psycopg2 driver; holds the password: never print it
    masked: str  # safe to show
    pooled: bool  # a Neon "-pooler" host (PgBouncer, transaction mode)

    @property
    def libpq_url(self) -> str:
        """The URL for libpq programs (pg_dump, psql): no SQLAlchemy driver suffix."""
        return "postgresql" + self.url[self.url.index("://") :]


def mask_url(url: str) -> str:
    """``postgresql://app:secret@host/db`` -> ``postgresql://app:***@host/db``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostinfo}" if ":" in userinfo else f"{user}@{hostinfo}"
    query = "&".join(
        f"{k}=***" if k.lower() == "password" else f"{k}={v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    masked = f"{parts.scheme}://{netloc}{parts.path}"
    return masked + (f"?{query}" if query else "")


def normalize_url(url: str) -> str:
    """Accept ``postgres://`` and ``postgresql://``; use psycopg2 (SQLAlchemy 2.1 would pick psycopg 3)."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"DATABASE_URL is not a URL ({mask_url(url)}): expected "
            "postgresql://user:password@host/dbname?sslmode=require"
        )
    driver = _SCHEMES.get(scheme.lower())
    if driver is None:
        raise ConfigError(
            f"DATABASE_URL has scheme {scheme!r}: use postgresql://user:password@host/dbname "
            "(this project runs on PostgreSQL)"
        )
    parts = urlsplit(f"{driver}://{rest}")
    if not parts.hostname and "host=" not in parts.query:
        raise ConfigError(
            f"DATABASE_URL has no host ({mask_url(url)}): expected postgresql://user:password@host/dbname"
        )
    if not parts.path.strip("/"):
        raise ConfigError(f"DATABASE_URL names no database ({mask_url(url)}): add /dbname after the host")
    return f"{driver}://{rest}"


def is_neon_pooled(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return "-pooler" in host


def load_env() -> None:
    """Load ``.env`` files without overriding variables already set."""
    for path in ENV_FILES:
        if path.is_file():
            load_dotenv(path, override=False)


def get_settings(*, warn: bool = True) -> Settings:
    """Read and check ``DATABASE_URL``. Raises :class:`ConfigError` with a one-line message."""
    load_env()
    raw = os.environ.get("DATABASE_URL", "").strip()
    if not raw:
        raise ConfigError(
            "DATABASE_URL is not set: copy .env.example to .env and put your database URL in it "
            "(or export DATABASE_URL)"
        )
    url = normalize_url(raw)
    settings = Settings(url=url, masked=mask_url(url), pooled=is_neon_pooled(url))
    if warn and settings.pooled:
        print(
            f"warning: {settings.masked} is a Neon pooled host (PgBouncer, transaction mode); "
            "migrations and pg_dump need the direct host: remove '-pooler' from the host name",
            file=sys.stderr,
        )
    return settings


def project_settings(root: Path = REPO_ROOT) -> dict[str, object]:
    """The ``[tool.schema-warden]`` table of pyproject.toml (empty when absent)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    return dict(data.get("tool", {}).get("schema-warden", {}))


def excluded_tables(root: Path = REPO_ROOT) -> frozenset[str]:
    """Tables owned by other tools (Prisma, TypeORM): never created, dropped or diffed by us."""
    tables = project_settings(root).get("exclude-tables", ["_prisma_migrations"])
    return frozenset(str(t) for t in tables)  # type: ignore[union-attr]
