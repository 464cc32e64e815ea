"""The guard never reaches the user's database, whatever env.py builds its engine from.

A sentinel database stands in for a developer's database: at head, with 1,000 rows. Each
env.py below is written in the shape of a kind of public project and points at the
sentinel in its own way; ``schema-warden check`` must prove the migrations on its
throwaway server and leave the sentinel without a single session.
"""

from __future__ import annotations

import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from fixture_project import READINGS_MODELS, READINGS_REVISIONS, make_project
from schema_warden.commands import check as check_migrations
from schema_warden.project import routing
from schema_warden.server.postgres import Server

HEAD = READINGS_REVISIONS[-1].id


@pytest.fixture
def sentinel(pg_server: Server) -> Iterator[str]:
    """A database at head with 1,000 rows, as a developer's own database would be."""
    name = f"sentinel_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(name)
    conn = psycopg2.connect(**pg_server.connect_kwargs(name))
    with conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE readings (id serial PRIMARY KEY, value float NOT NULL, device varchar(32));"
            "INSERT INTO readings (value) SELECT g FROM generate_series(1, 1000) g;"
            "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);"
            f"INSERT INTO alembic_version VALUES ('{HEAD}')"
        )
    conn.close()
    try:
        yield name
    finally:
        pg_server.drop_database(name)


def _sessions(server: Server, name: str) -> int:
    """Sessions the sentinel has had, once none is open (a session's count lands as it ends)."""
    conn = psycopg2.connect(**server.connect_kwargs("postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            deadline = time.monotonic() + 10
            while True:
                cur.execute("SELECT pg_stat_clear_snapshot()")
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,))
                (open_now,) = cur.fetchone()
                cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (name,))
                (count,) = cur.fetchone()
                if (open_now == 0 and count > 0) or time.monotonic() > deadline:
                    return int(count)
                cur.execute("SELECT pg_sleep(0.05)")
    finally:
        conn.close()


def _untouched(server: Server, name: str) -> tuple[int, str, list[str]]:
    conn = psycopg2.connect(**server.connect_kwargs(name))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM readings")
            (rows,) = cur.fetchone()
            cur.execute("SELECT version_num FROM alembic_version")
            (version,) = cur.fetchone()
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            tables = [t for (t,) in cur.fetchall()]
    finally:
        conn.close()
    return rows, version, tables


# env.py bodies: each builds its own engine and ignores config.attributes["connection"]
_HEADER = """\
import asyncio
import os

from alembic import context
from sqlalchemy import create_engine, engine_from_config, pool
from sqlalchemy.engine import URL

from fixture_app.models import metadata

config = context.config
target_metadata = metadata


def do_run_migrations(connection):
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()

"""

SHAPES = {
    # FastAPI full-stack template: the URL is assembled from POSTGRES_* variables (psycopg 3)
    "postgres-vars": """
        def get_url():
            return URL.create(
                "postgresql+psycopg",
                username=os.getenv("POSTGRES_USER", "postgres"),
                password=os.getenv("POSTGRES_PASSWORD", ""),
                host=os.getenv("POSTGRES_SERVER", "db"),
                port=int(os.getenv("POSTGRES_PORT", "5432")),
                database=os.getenv("POSTGRES_DB", "app"),
            )

        configuration = config.get_section(config.config_ini_section, {})
        configuration["sqlalchemy.url"] = get_url()
        connectable = engine_from_config(configuration, prefix="sqlalchemy.", poolclass=pool.NullPool)
        with connectable.connect() as connection:
            do_run_migrations(connection)
    """,
    # a settings module's URL written into env.py by hand
    "hard-coded": """
        engine = create_engine("{url}", poolclass=pool.NullPool)
        with engine.begin() as connection:
            do_run_migrations(connection)
        engine.dispose()
    """,
    # Alembic's async template on asyncpg, with its own URL
    "async-asyncpg": """
        from sqlalchemy.ext.asyncio import create_async_engine

        async def run_async_migrations():
            connectable = create_async_engine("{async_url}", poolclass=pool.NullPool)
            async with connectable.connect() as connection:
                await connection.run_sync(do_run_migrations)
            await connectable.dispose()

        asyncio.run(run_async_migrations())
    """,
    # a settings object that read DATABASE_URL when the app was imported, before the guard ran
    "settings-object": """
        class Settings:
            database_url = "{url}"

        engine = create_engine(Settings.database_url, pool_pre_ping=True)
        connection = engine.connect()
        try:
            do_run_migrations(connection)
            connection.commit()
        finally:
            connection.close()
    """,
}


def _env_py(body: str, server: Server, database: str) -> str:
    url = f"postgresql+psycopg2://postgres:hunter2@/{database}?host={server.socket_dir}&port={server.port}"
    async_url = (
        f"postgresql+asyncpg://postgres:hunter2@/{database}?host={server.socket_dir}&port={server.port}"
    )
    code = textwrap.dedent(body).replace("{url}", url).replace("{async_url}", async_url)
    return _HEADER + code


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_env_py_with_its_own_engine_never_reaches_the_sentinel(
    shape: str,
    tmp_path: Path,
    pg_server: Server,
    sentinel: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("POSTGRES_SERVER", str(pg_server.socket_dir))
    monkeypatch.setenv("POSTGRES_PORT", str(pg_server.port))
    monkeypatch.setenv("POSTGRES_USER", pg_server.user)
    monkeypatch.setenv("POSTGRES_PASSWORD", "hunter2")
    monkeypatch.setenv("POSTGRES_DB", sentinel)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@/{sentinel}?host={pg_server.socket_dir}")
    ini = make_project(
        tmp_path,
        models=READINGS_MODELS,
        revisions=READINGS_REVISIONS,
        env_py=_env_py(SHAPES[shape], pg_server, sentinel),
    )
    before = _sessions(pg_server, sentinel)
    code = check_migrations.main(["--config", str(ini), "--no-cache"])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, out + captured.err
    assert "ok   stairway: 0002" in out and "ok   round-trip" in out and "ok   drift" in out
    assert _untouched(pg_server, sentinel) == (1000, HEAD, ["alembic_version", "readings"])
    # the reads above opened one session of their own
    assert _sessions(pg_server, sentinel) == before + 1


def test_raw_driver_connection_is_refused_naming_env_py(
    tmp_path: Path, pg_server: Server, sentinel: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An env.py that opens a psycopg2 connection itself, outside SQLAlchemy."""
    body = f"""
        import psycopg2
        raw = psycopg2.connect(host="{pg_server.socket_dir}", port={pg_server.port}, dbname="{sentinel}",
                               user="postgres", password="hunter2")
    """
    ini = make_project(
        tmp_path, models=READINGS_MODELS, revisions=READINGS_REVISIONS, env_py=_HEADER + textwrap.dedent(body)
    )
    before = _sessions(pg_server, sentinel)
    code = check_migrations.main(["--config", str(ini), "--no-cache"])
    captured = capsys.readouterr()
    assert code == 2
    first = captured.err.splitlines()[0] if captured.err.strip() else captured.out.splitlines()[-1]
    assert "migrations/env.py tried to connect to a database through psycopg2.connect() directly" in first
    assert "hunter2" not in captured.out + captured.err
    assert _sessions(pg_server, sentinel) == before


def test_offline_rendering_refuses_every_connection(pg_server: Server) -> None:
    """Inside ``refused`` nothing connects, not even to a server that exists."""
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_server.url())
    with routing.refused("env.py"), pytest.raises(routing.RefusedConnection, match=r"env\.py tried"):
        engine.connect()
    with engine.connect() as conn:  # and outside, the engine works as before
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


def test_routed_engine_gets_the_guards_connection(pg_server: Server, fresh_db: str) -> None:
    """``Engine.connect``/``begin`` of a foreign engine hand out the guard's connection."""
    from sqlalchemy import create_engine, text

    guard = create_engine(pg_server.url(fresh_db))
    foreign = create_engine("postgresql+psycopg2://app:secret@db.invalid:5432/prod")
    with guard.connect() as connection:
        with routing.routed(connection, "env.py"):
            assert foreign.connect() is connection
            with foreign.begin() as inner:
                assert inner is connection
                inner.execute(text("CREATE TABLE t (id int)"))
            foreign.connect().close()  # closing the lent connection does nothing
            assert not connection.closed
            raw = foreign.raw_connection()  # a new DBAPI connection: rewritten to fresh_db
            try:
                cur = raw.cursor()
                cur.execute("SELECT current_database()")
                assert cur.fetchone()[0] == fresh_db
            finally:
                raw.close()
        connection.rollback()
        assert not {"close", "begin", "connect"} & set(vars(connection))
    guard.dispose()
    foreign.dispose()
