"""Shared fixtures: one real throwaway PostgreSQL server per test session, a fresh database per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from schema_warden.server.postgres import Server, throwaway_server

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _verify_incremental_snapshots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every snapshot any check of any test takes (in this process or a child guard) is also
    read whole and compared (schema/incremental.py); a difference fails the session."""
    log = tmp_path_factory.mktemp("incremental") / "differences.log"
    saved = {
        name: os.environ.get(name)
        for name in ("SCHEMA_WARDEN_VERIFY_INCREMENTAL", "SCHEMA_WARDEN_VERIFY_INCREMENTAL_LOG")
    }
    os.environ["SCHEMA_WARDEN_VERIFY_INCREMENTAL"] = "1"
    os.environ["SCHEMA_WARDEN_VERIFY_INCREMENTAL_LOG"] = str(log)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if log.exists() and log.read_text().strip():
        pytest.fail("incremental snapshots differed from whole ones:\n" + log.read_text()[:4000])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """The session's server (started through server/postgres.py, like the guard's).

    In /dev/shm when it has room: a fresh database per test costs 15 ms there, 110 ms on disk.
    """
    with throwaway_server(memory=True) as server:
        yield server


@pytest.fixture
def fresh_db(pg_server: Server) -> Iterator[str]:
    """Name of an empty database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.create_database(name)
    try:
        yield name
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def database_url(pg_server: Server, fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """DATABASE_URL (libpq form, as a user writes it) of a fresh empty database, set in the env."""
    url = pg_server.libpq_url(fresh_db)
    monkeypatch.setenv("DATABASE_URL", url)
    return url


@pytest.fixture(autouse=True)
def _own_proof_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no proofs cached (cache/proofs.py); the initdb'd cluster stays shared."""
    monkeypatch.setenv("SCHEMA_WARDEN_PROOF_CACHE", str(tmp_path / "proofs"))


@pytest.fixture(autouse=True)
def _no_user_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's own DATABASE_URL, from the environment or from .env."""
    if "DATABASE_URL" in os.environ:
        monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setattr("database.config.ENV_FILES", ())


@pytest.fixture
def short_tmpdir() -> Iterator[Path]:
    """A TMPDIR for a child guard, short enough for a unix socket, reachable by the server user."""
    path = Path(tempfile.mkdtemp(prefix="sw-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
