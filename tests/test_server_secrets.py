"""Nothing secret reaches the guard's children, and the throwaway server takes only its own password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
from fixture_project import READINGS_MODELS, Rev, make_project
from schema_warden.commands import check as check_migrations
from schema_warden.server import postgres
from schema_warden.server.postgres import find_binaries, throwaway_server

SECRETS = {
    "DATABASE_URL": "postgresql://app:hunter2-url@db.example.com/prod",
    "POSTGRES_PASSWORD": "hunter2-password",
    "SENTRY_URL": "https://key@sentry.example.com/1",
    "GITHUB_TOKEN": "ghp_hunter2token",
    "AWS_SECRET_ACCESS_KEY": "hunter2secret",
    "PGPASSWORD": "hunter2-pg",
    "PGHOST": "db.example.com",
}
ALLOWED = {"PATH", "LANG", "TZ", "TMPDIR", "HOME", "LC_ALL"}


def _secret_free(env: dict[str, str]) -> None:
    leaked = {k for k in env if k in SECRETS or k.startswith("PG") or k.endswith("_URL")}
    leaked |= {k for k in env if any(w in k for w in ("PASSWORD", "SECRET", "TOKEN"))}
    assert not leaked, f"secret variables reached a child: {sorted(leaked)}"
    assert not any("hunter2" in v for v in env.values())
    assert set(env) - ALLOWED <= {k for k in env if k.startswith("LC_")}, sorted(env)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)


def test_child_env_is_an_allow_list(secret_env: None) -> None:
    _secret_free(postgres.child_env())
    _secret_free(postgres._server_env())
    assert postgres.child_env()["PATH"] == os.environ["PATH"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_the_running_server_has_no_secret_in_its_environment(secret_env: None) -> None:
    with throwaway_server() as server:
        _secret_free(_environ(server.pid))


def test_a_connection_without_the_password_is_refused() -> None:
    with throwaway_server() as server:
        assert server.passfile is not None and oct(server.passfile.stat().st_mode & 0o777) == "0o600"
        assert server.password not in server.libpq_url() and str(server.passfile) in server.libpq_url()
        assert server.password not in repr(server)
        kwargs = {**server.connect_kwargs(), "passfile": os.devnull}
        del kwargs["password"]
        with pytest.raises(psycopg2.OperationalError, match="password"):
            psycopg2.connect(**kwargs).close()
        # another process, as it would come from the account the server runs as: no passfile
        psql = subprocess.run(
            [
                *(server.binaries.path("psql"), "-w", "-h", str(server.socket_dir), "-p", str(server.port)),
                *("-U", "postgres", "-d", "postgres", "-c", "SELECT 1"),
            ],
            capture_output=True,
            text=True,
            env=postgres.child_env(),
        )
        assert psql.returncode != 0 and "password" in psql.stderr
        # the guard's own connections (connect_kwargs, url, libpq_url in a child) work
        psycopg2.connect(**server.connect_kwargs()).close()
        ok = subprocess.run(
            [server.binaries.path("psql"), "-d", server.libpq_url(), "-Atc", "SELECT 1"],
            capture_output=True,
            text=True,
            env=postgres.child_env(),
        )
        assert ok.stdout.strip() == "1", ok.stderr
    # gone with the server: its line, or the whole file when no other server of ours runs
    assert not server.passfile.exists() or str(server.socket_dir) not in server.passfile.read_text()


def test_the_password_is_new_at_every_start() -> None:
    binaries = find_binaries()
    with throwaway_server(binaries=binaries) as one, throwaway_server(binaries=binaries) as two:
        assert one.passfile == two.passfile  # one passfile a process, a line a server
        lines = one.passfile.read_text().splitlines()
        ours = [line for line in lines if line.startswith((f"{one.socket_dir}:", f"{two.socket_dir}:"))]
        assert len({line.rsplit(":", 1)[1] for line in ours}) == 2
        psycopg2.connect(**one.connect_kwargs()).close()
        psycopg2.connect(**two.connect_kwargs()).close()


READER = """
    OUT = {out!r}
    import json, os
    from pathlib import Path
    bind = op.get_bind()
    backend = bind.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    stat = Path(f"/proc/{backend}/stat").read_text()
    postmaster = int(stat.rsplit(")", 1)[1].split()[1])
    raw = Path(f"/proc/{postmaster}/environ").read_bytes().decode()
    env = dict(i.split("=", 1) for i in raw.split("\\0") if "=" in i)
    Path(OUT).write_text(json.dumps({"pid": postmaster, "env": env}))
    op.create_table("readings", sa.Column("id", sa.Integer, primary_key=True), sa.Column("value", sa.Float))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_during_a_check_the_server_environment_holds_no_secret(
    tmp_path: Path, secret_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "environ.json"
    ini = make_project(
        tmp_path / "proj",
        models=READINGS_MODELS,
        revisions=[
            Rev(
                "0001",
                None,
                upgrade=READER.replace("{out!r}", repr(str(out))),
                downgrade='op.drop_table("readings")',
                message="create readings",
            )
        ],
    )
    code = check_migrations.main(["--config", str(ini), "--no-cache"])
    captured = capsys.readouterr()
    assert code in (0, 1) and "ok   stairway: 0001" in captured.out, captured.out + captured.err
    seen = json.loads(out.read_text())
    _secret_free(seen["env"])
    assert seen["env"].get("LC_ALL") == "C"


def test_a_passfile_left_by_a_killed_guard_is_swept() -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    left = Path(postgres.tempfile.mkdtemp(prefix=f"{postgres._PASS_PREFIX}{int(dead.stdout)}-"))
    (left / "pgpass").write_text("x:1:*:postgres:secret\n")
    mine = Path(postgres.tempfile.mkdtemp(prefix=f"{postgres._PASS_PREFIX}{os.getpid()}-"))
    try:
        postgres.sweep_stale_dirs()
        assert not left.exists() and mine.exists()
    finally:
        postgres.shutil.rmtree(left, ignore_errors=True)
        postgres.shutil.rmtree(mine, ignore_errors=True)
