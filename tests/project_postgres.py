"""pytest-postgresql's fixtures for the database project's tests (manage.py against a server).

``postgresql_proc`` is pytest-postgresql's process fixture: it runs ``pg_ctl`` from the
installed PostgreSQL (find_binaries: /usr/lib/postgresql/<newest>/bin) on a free port. It
cannot run as root: it calls ``pg_ctl initdb``/``start`` as the current user, and initdb
and postgres refuse root, with no setting to run them as another user. As root (CI
containers) the process fixture is replaced by a NoopExecutor over the session's throwaway
server (tests/conftest.py ``pg_server``, which runs postgres as an unprivileged account),
and pytest-postgresql's ``postgresql`` fixture works the same on either: a template
database per session, a fresh database per test, dropped after it.

The guard's own tests keep ``pg_server``: the throwaway server is the product under test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pytest_postgresql import factories
from pytest_postgresql.executors.noop import NoopExecutor
from pytest_postgresql.janitor import DatabaseJanitor
from schema_warden.server.postgres import Binaries, Server, find_binaries

AS_ROOT = os.geteuid() == 0
DBNAME = "manage_py"

if AS_ROOT:

    @pytest.fixture(scope="session")
    def postgresql_proc(pg_server: Server) -> Iterator[NoopExecutor]:
        """pytest-postgresql's noop executor over the throwaway server (root: see above)."""
        executor = NoopExecutor(
            host=str(pg_server.socket_dir),
            port=pg_server.port,
            user=pg_server.user,
            options="",
            dbname=DBNAME,
        )
        janitor = DatabaseJanitor(
            user=executor.user,
            host=executor.host,
            port=executor.port,
            dbname=executor.template_dbname,
            as_template=True,
        )
        with janitor:
            yield executor

else:
    postgresql_proc = factories.postgresql_proc(
        executable=str(find_binaries().bindir / "pg_ctl"), port=None, dbname=DBNAME
    )

postgresql = factories.postgresql("postgresql_proc", dbname=DBNAME)


@dataclass(frozen=True)
class ProjectServer:
    """Where pytest-postgresql's server listens, with the few methods the tests use of Server."""

    host: str  # a unix socket directory or an address
    port: int
    user: str
    binaries: Binaries

    def connect_kwargs(self, dbname: str = "postgres") -> dict[str, object]:
        return {"host": self.host, "port": self.port, "user": self.user, "dbname": dbname}

    def libpq_url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{dbname}?host={self.host}&port={self.port}"


@pytest.fixture(scope="session")
def project_server(postgresql_proc: NoopExecutor) -> ProjectServer:
    return ProjectServer(
        host=str(postgresql_proc.host),
        port=int(postgresql_proc.port),
        user=str(postgresql_proc.user),
        binaries=find_binaries(),
    )


@pytest.fixture
def project_db(postgresql: object) -> str:
    """The fresh database pytest-postgresql made for this test (dropped after it)."""
    return str(postgresql.info.dbname)  # type: ignore[attr-defined]


@pytest.fixture
def project_url(project_server: ProjectServer, project_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """DATABASE_URL of that database, set in the environment as a user's .env would."""
    url = project_server.libpq_url(project_db)
    monkeypatch.setenv("DATABASE_URL", url)
    return url
