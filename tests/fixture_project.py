"""Generate small Alembic projects in a directory (usually ``tmp_path``) for tests.

A project is ``alembic.ini`` + ``pyproject.toml`` + a models package + ``migrations/env.py``
+ ``migrations/versions/<id>_<slug>.py``, shaped like a real one::

    from fixture_project import Rev, make_project   # tests/ is on sys.path under pytest

    ini = make_project(
        tmp_path,
        models='''
            readings = sa.Table("readings", metadata,
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("value", sa.Float))
        ''',
        revisions=[
            Rev("0001", None,
                upgrade='op.create_table("readings", sa.Column("id", sa.Integer, primary_key=True),'
                        ' sa.Column("value", sa.Float))',
                downgrade='op.drop_table("readings")'),
        ],
    )
    # then: schema-warden check --config <ini>

``models`` is the body of ``<package>/models.py`` after ``import sqlalchemy as sa`` and
``metadata = sa.MetaData()``; env.py uses that ``metadata`` as target_metadata. Revision
bodies are code (dedented and indented for you); ``sa`` and ``op`` are imported. All
projects use the package name ``fixture_app`` by default: the guard must keep them apart
(``schema_warden.project.imports.isolated_imports``).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "fixture_app"

ALEMBIC_INI = """\
[alembic]
script_location = %(here)s/migrations
prepend_sys_path = %(here)s
path_separator = os

[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic

[formatter_generic]
format = %(levelname)s %(message)s
"""

# env.py shaped like Alembic's template: uses an injected connection when given, else the URL.
ENV_PY = """\
from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

from {package}.models import metadata

config = context.config
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = {connectable}
    if isinstance(connectable, Connection):
        context.configure(connection=connectable, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or os.environ["DATABASE_URL"],
                           poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

REVISION = '''\
"""{message}

Revision ID: {rev}
Revises: {down_text}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = {rev!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
'''

MODELS = """\
from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

{body}
"""


@dataclass(frozen=True)
class Rev:
    """One revision file: id, down_revision (None, an id, or a tuple for a merge), bodies."""

    id: str
    down: str | tuple[str, ...] | None
    upgrade: str = "pass"
    downgrade: str = "pass"
    message: str = ""
    filename: str | None = None  # default "<id>_<slug>.py"


def _body(code: str) -> str:
    return textwrap.indent(textwrap.dedent(code).strip() or "pass", "    ")


def revision_source(rev: Rev) -> str:
    message = rev.message or f"revision {rev.id}"
    down_text = ", ".join(rev.down) if isinstance(rev.down, tuple) else (rev.down or "")
    return REVISION.format(
        message=message,
        rev=rev.id,
        down=rev.down,
        down_text=down_text,
        upgrade=_body(rev.upgrade),
        downgrade=_body(rev.downgrade),
    )


def write_revision(root: Path, rev: Rev) -> Path:
    """Add one revision file to the project at ``root``; returns its path."""
    message = rev.message or f"revision {rev.id}"
    slug = re.sub(r"\W+", "_", message.lower()).strip("_")[:40]
    path = root / "migrations" / "versions" / (rev.filename or f"{rev.id}_{slug}.py")
    path.write_text(revision_source(rev))
    return path


def write_models(root: Path, body: str, package: str = PACKAGE) -> Path:
    """(Re)write ``<package>/models.py`` with ``body`` after ``metadata = sa.MetaData()``."""
    path = root / package / "models.py"
    path.write_text(MODELS.format(body=textwrap.dedent(body).strip()))
    return path


def make_project(
    root: Path,
    *,
    models: str = "",
    revisions: Sequence[Rev] = (),
    package: str = PACKAGE,
    pyproject: str | None = None,
    env_py: str | None = None,
    env_uses_injected_connection: bool = True,
) -> Path:
    """Write a project into ``root`` (created if needed); returns the path of its alembic.ini.

    ``pyproject`` is the text of pyproject.toml (default: none). ``env_py`` replaces env.py
    entirely. ``env_uses_injected_connection=False`` writes an env.py that ignores
    ``config.attributes["connection"]`` and connects to sqlalchemy.url / DATABASE_URL itself.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "alembic.ini").write_text(ALEMBIC_INI)
    (root / package).mkdir(exist_ok=True)
    (root / package / "__init__.py").write_text("")
    write_models(root, models, package)
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    connectable = 'config.attributes.get("connection")' if env_uses_injected_connection else "None"
    (root / "migrations" / "env.py").write_text(
        env_py if env_py is not None else ENV_PY.format(package=package, connectable=connectable)
    )
    if pyproject is not None:
        (root / "pyproject.toml").write_text(textwrap.dedent(pyproject))
    for rev in revisions:
        write_revision(root, rev)
    return root / "alembic.ini"


# A small consistent project used by many tests: one table, then a column.
READINGS_MODELS = """\
readings = sa.Table(
    "readings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("device", sa.String(32)),
)
"""

READINGS_REVISIONS = (
    Rev(
        "0001",
        None,
        upgrade="""
            op.create_table(
                "readings",
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("value", sa.Float, nullable=False),
            )
        """,
        downgrade='op.drop_table("readings")',
        message="create readings",
    ),
    Rev(
        "0002",
        "0001",
        upgrade='op.add_column("readings", sa.Column("device", sa.String(32)))',
        downgrade='op.drop_column("readings", "device")',
        message="add device",
    ),
)


def readings_project(root: Path, **kwargs: object) -> Path:
    """The small consistent project (two revisions, models at head); kwargs override."""
    options: dict[str, object] = {"models": READINGS_MODELS, "revisions": READINGS_REVISIONS}
    options.update(kwargs)
    return make_project(root, **options)  # type: ignore[arg-type]


def check_on(server: object, ini: Path, *, fail_fast: bool = False, data_check: bool = True) -> list:
    """Run the check's stairway, round trip and drift on ``server`` (e.g. the session's
    ``pg_server``) in databases of their own, dropped after; returns the CheckResults.

    Faster than ``schema_warden.commands.check.main`` (no server of its own); use main for tests
    of the command line itself.
    """
    import uuid

    from schema_warden.commands.check import run_checks
    from schema_warden.project.imports import isolated_imports
    from schema_warden.project.loader import open_project
    from schema_warden.project.settings import find_config

    database = f"w_{uuid.uuid4().hex[:10]}"
    settings = find_config(ini)
    try:
        with isolated_imports(settings.alembic_config.parent):
            project = open_project(settings=settings)
            return run_checks(project, server, fail_fast=fail_fast, data_check=data_check, database=database)
    finally:
        server.drop_database(database)  # type: ignore[attr-defined]
        server.drop_database(f"{database}_models")  # type: ignore[attr-defined]
