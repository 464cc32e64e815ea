"""Alembic environment of the IoT database.

The URL comes from database/config.py (DATABASE_URL in the environment or .env), never
from alembic.ini. Callers that bring their own database (the guard, the tests) pass a
Connection or Engine in ``config.attributes["connection"]``; then DATABASE_URL is not read.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

from database.alembic_support import drift_context_options
from database.config import get_settings
from database.models import Base

config = context.config
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _configure(**kwargs: object) -> None:
    # compare_type / compare_server_default on; tables of other tools (Prisma) invisible
    context.configure(target_metadata=target_metadata, **drift_context_options(), **kwargs)


def run_migrations_offline() -> None:
    """``--sql`` mode: render SQL without a database."""
    url = config.get_main_option("sqlalchemy.url") or "postgresql+psycopg2://"
    _configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if isinstance(connectable, Connection):
        _run_on(connectable)
        return
    if connectable is None:
        connectable = create_engine(get_settings().url, poolclass=pool.NullPool)
    with connectable.connect() as connection:
        _run_on(connection)
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
