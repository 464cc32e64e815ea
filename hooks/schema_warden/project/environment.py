"""What env.py sees while it runs: the throwaway database in DATABASE_URL, sqlalchemy.url and
PG*, every connection routed there (or refused while offline SQL is rendered), quiet logging."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from schema_warden.project import routing
from schema_warden.project.frames import relative


@contextlib.contextmanager
def quiet_logging() -> Iterator[None]:
    """While env.py runs: its ``fileConfig(alembic.ini)`` does nothing and INFO lines are dropped.

    Alembic's template env.py configures logging from alembic.ini on every run, which would
    print "Running upgrade ..." for every step of the stairway around the guard's report.
    Warnings still show.
    """
    import logging
    import logging.config

    saved = logging.config.fileConfig
    disabled = logging.root.manager.disable
    logging.config.fileConfig = lambda *args, **kwargs: None  # type: ignore[assignment]
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.config.fileConfig = saved
        logging.disable(disabled)


def _who(config: Any) -> str:
    """How messages name the code being fenced in: the env.py that Alembic runs."""
    location = config.get_main_option("script_location") or "."
    if ":" in location and not Path(location).exists():
        return f"env.py of {location}"  # package-resource form
    root = Path(config.config_file_name or ".").resolve().parent
    return relative(root / location / "env.py", root)


@contextlib.contextmanager
def throwaway_environment(connection: Any, config: Any) -> Iterator[None]:
    """DATABASE_URL, sqlalchemy.url and PG* point at the connection's database while env.py runs."""
    url = connection.engine.url
    sa_url = url.render_as_string(hide_password=False)
    libpq = sa_url.replace(f"{url.drivername}://", "postgresql://", 1)
    query = dict(url.query)
    pg_env = {
        "PGHOST": str(query.get("host", url.host or "")),
        "PGPORT": str(query.get("port", url.port or "")),
        "PGDATABASE": str(url.database or ""),
        "PGUSER": str(url.username or ""),
    }
    saved = {k: os.environ.get(k) for k in ("DATABASE_URL", *pg_env, "PGPASSWORD", "PGSERVICE")}
    saved_url = config.get_main_option("sqlalchemy.url")
    os.environ["DATABASE_URL"] = libpq
    os.environ.update({k: v for k, v in pg_env.items() if v})
    for k in ("PGPASSWORD", "PGSERVICE"):
        os.environ.pop(k, None)
    config.set_main_option("sqlalchemy.url", sa_url.replace("%", "%%"))
    try:
        with routing.routed(connection, _who(config)):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if saved_url is None:
            config.remove_main_option("sqlalchemy.url")
        else:
            config.set_main_option("sqlalchemy.url", saved_url.replace("%", "%%"))


# env.py files that read DATABASE_URL or sqlalchemy.url even in --sql mode get this harmless
# value while offline SQL is rendered: offline mode never connects, and the user's URL is
# never read.
OFFLINE_URL = "postgresql+psycopg2://schema-warden-offline.invalid/render"


@contextlib.contextmanager
def offline_environment(config: Any) -> Iterator[None]:
    """DATABASE_URL and sqlalchemy.url name no real server while env.py renders ``--sql``."""
    saved_env = os.environ.get("DATABASE_URL")
    saved_url = config.get_main_option("sqlalchemy.url")
    os.environ["DATABASE_URL"] = OFFLINE_URL
    config.set_main_option("sqlalchemy.url", OFFLINE_URL)
    try:
        with routing.refused(_who(config)):
            yield
    finally:
        if saved_env is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved_env
        if saved_url is None:
            config.remove_main_option("sqlalchemy.url")
        else:
            config.set_main_option("sqlalchemy.url", saved_url.replace("%", "%%"))
