"""The incremental proof cache: what invalidates a proof, damage detection, concurrency, the check."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path
from textwrap import dedent
from typing import Any

import psycopg2
import pytest
from fixture_project import (
    READINGS_MODELS,
    READINGS_REVISIONS,
    Rev,
    make_project,
    readings_project,
    write_models,
    write_revision,
)
from schema_warden.cache import models as models_cache
from schema_warden.cache import proofs as cache
from schema_warden.cache.proofs import ProofCache, RevisionInput, chain_keys, context_key, seal, unseal
from schema_warden.commands import check as check_migrations
from schema_warden.project.loader import loaded_project
from schema_warden.server import postgres
from schema_warden.server.postgres import throwaway_server

REPO_ROOT = Path(__file__).resolve().parent.parent

HELPER = "fixture_app/helpers.py"
REVISIONS = (
    Rev(
        "0001",
        None,
        upgrade='op.create_table("sites", sa.Column("id", sa.Integer, primary_key=True))',
        downgrade='op.drop_table("sites")',
        message="create sites",
    ),
    Rev(
        "0002",
        "0001",
        upgrade="""
            op.add_column("sites", sa.Column("name", sa.String(32)))
            op.execute("INSERT INTO sites (name) VALUES ('north'), ('south')")
        """,
        downgrade='op.drop_column("sites", "name")',
        message="add name",
    ),
    Rev(
        "0003",
        "0002",
        upgrade="""
            from fixture_app.helpers import index_name
            op.create_index(index_name("sites", "name"), "sites", ["name"])
        """,
        downgrade="""
            from fixture_app.helpers import index_name
            op.drop_index(index_name("sites", "name"), table_name="sites")
        """,
        message="index name",
    ),
)
ORDER = ("0001", "0002", "0003")


def _inputs(*digests: str) -> list[RevisionInput]:
    parents: tuple[str, ...] = ()
    out = []
    for rev, digest in zip(ORDER, digests, strict=True):
        out.append(RevisionInput(rev, parents, digest))
        parents = (rev,)
    return out


# --- pure key computation ------------------------------------------------------------------


def test_editing_an_old_revision_changes_its_key_and_every_descendant_only() -> None:
    ctx = context_key({"env.py": b"env", "alembic.ini": b"ini"}, postgres_major=15, tool="t")
    before = chain_keys(ctx, _inputs("a", "b", "c"))
    after = chain_keys(ctx, _inputs("a", "B", "c"))
    assert before["0001"] == after["0001"]
    assert before["0002"] != after["0002"]
    assert before["0003"] != after["0003"]


@pytest.mark.parametrize(
    "change",
    [
        {"files": {"env.py": b"env2", "alembic.ini": b"ini"}},
        {"files": {"env.py": b"env", "alembic.ini": b"ini2"}},
        {"postgres_major": 16},
        {"tool": "t2"},
        {"settings": {"exclude_tables": ["x"]}},
    ],
)
def test_context_changes_invalidate_every_revision(change: dict[str, object]) -> None:
    base: dict[str, object] = {
        "files": {"env.py": b"env", "alembic.ini": b"ini"},
        "postgres_major": 15,
        "tool": "t",
    }
    old = chain_keys(context_key(**base), _inputs("a", "b", "c"))  # type: ignore[arg-type]
    new = chain_keys(context_key(**{**base, **change}), _inputs("a", "b", "c"))  # type: ignore[arg-type]
    assert all(old[r] != new[r] for r in ORDER)


def test_proven_closure_needs_every_ancestor_proven() -> None:
    revs = _inputs("a", "b", "c")
    assert cache.proven_closure(revs, ["0001", "0003"]) == ["0001"]
    assert cache.proven_closure(revs, ["0001", "0002", "0003"]) == list(ORDER)


def test_resume_only_where_the_upgraded_database_holds_exactly_the_revisions_before() -> None:
    linear = _inputs("a", "b", "c")
    assert cache.resume_index(linear, "0002") == 2
    branched = [
        RevisionInput("a", (), "1"),
        RevisionInput("b1", ("a",), "2"),
        RevisionInput("b2", ("a",), "3"),
        RevisionInput("m", ("b1", "b2"), "4"),
    ]
    assert cache.resume_index(branched, "b1") == 2
    assert cache.resume_index(branched, "b2") is None  # b1 comes before it but is not applied
    assert cache.resume_index(branched, "m") == 4


def test_sealed_entries_detect_any_damage() -> None:
    text = seal({"format": cache.FORMAT, "key": "k", "revision": "0001"})
    assert unseal(text) == {"format": cache.FORMAT, "key": "k", "revision": "0001"}
    assert unseal(text.replace("0001", "0002")) is None  # edited
    assert unseal(text[: len(text) // 2]) is None  # half written
    assert unseal(b"\xff\xfe") is None
    assert unseal("") is None


def test_versions_in_the_fingerprint_are_read_as_importlib_metadata_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib import metadata

    for name in ("alembic", "SQLAlchemy", "psycopg2-binary", "python-dotenv"):
        assert cache._dist_info_version(name) == metadata.version(name)
    assert cache._dist_info_version("no-such-distribution") is None
    site = tmp_path / "site"
    (site / "alembic-9.9.1.dist-info").mkdir(parents=True)
    (site / "alembic-9.9.1.dist-info" / "METADATA").write_text("Name: alembic\nVersion: 9.9.1\n")
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    # the first entry that has one wins
    assert cache._dist_info_version("alembic") == metadata.version("alembic") == "9.9.1"
    (site / "alembic-1.0.dist-info").mkdir()  # a stale second one: the name cannot say which
    assert cache._dist_info_version("alembic") is None
    assert cache._version("alembic") == metadata.version("alembic")
    shutil.rmtree(site)
    site.mkdir()
    (site / "alembic.egg-info").mkdir()  # no version in the name
    assert cache._dist_info_version("alembic") is None


def test_imported_modules_finds_absolute_imports() -> None:
    source = "import sqlalchemy as sa\nfrom alembic import op\n    from app.models import X\nimport a.b, c\n"
    assert cache.imported_modules(source) == ["sqlalchemy", "alembic", "app.models", "a.b", "c"]


# --- the cache on disk with a real project --------------------------------------------------


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "proj"
    make_project(root, models="sites = sa.Table('sites', metadata, sa.Column('id', sa.Integer))")
    (root / HELPER).write_text("def index_name(table, column):\n    return f'ix_{table}_{column}'\n")
    for rev in REVISIONS:
        write_revision(root, rev)
    return root


def _plan(root: Path, *, enabled: bool = True) -> tuple[ProofCache, cache.Plan]:
    with loaded_project(root / "alembic.ini") as project:
        return cache.plan_project(project, 15, enabled=enabled)


def _prove_all(root: Path) -> None:
    store, plan = _plan(root)
    store.record(plan, ORDER)


def test_recorded_proofs_are_found_again(project_dir: Path) -> None:
    store, plan = _plan(project_dir)
    assert plan.proven == ()
    store.record(plan, ORDER)
    assert _plan(project_dir)[1].proven == ORDER


def test_editing_an_old_migration_reproves_it_and_what_follows(project_dir: Path) -> None:
    _prove_all(project_dir)
    path = next((project_dir / "migrations" / "versions").glob("0002_*.py"))
    path.write_text(path.read_text().replace("'south'", "'east'"))
    plan = _plan(project_dir)[1]
    assert plan.proven == ("0001",)
    assert (plan.resume, plan.start) == ("0001", 1)  # upgrade to 0001, prove the rest


def test_editing_a_module_a_migration_imports_reproves_that_migration(project_dir: Path) -> None:
    _prove_all(project_dir)
    (project_dir / HELPER).write_text("def index_name(table, column):\n    return f'idx_{table}_{column}'\n")
    assert _plan(project_dir)[1].proven == ("0001", "0002")


@pytest.mark.parametrize("name", ["migrations/env.py", "alembic.ini"])
def test_editing_env_py_or_alembic_ini_reproves_everything(project_dir: Path, name: str) -> None:
    _prove_all(project_dir)
    path = project_dir / name
    path.write_text(path.read_text() + "\n# edited\n")
    assert _plan(project_dir)[1].proven == ()


def test_a_different_option_of_the_check_does_not_reuse_proofs(project_dir: Path) -> None:
    with loaded_project(project_dir / "alembic.ini") as project:
        store, plan = cache.plan_project(project, 15, options={"data_check": True})
        store.record(plan, ORDER)
        assert cache.plan_project(project, 15, options={"data_check": True})[1].proven == ORDER
        assert cache.plan_project(project, 15, options={"data_check": False})[1].proven == ()


def test_a_model_change_keeps_the_proofs_drift_is_checked_every_run(project_dir: Path) -> None:
    _prove_all(project_dir)
    write_models(project_dir, "sites = sa.Table('sites', metadata, sa.Column('id', sa.BigInteger))")
    assert _plan(project_dir)[1].proven == ORDER


def test_a_new_revision_keeps_the_proofs_of_its_ancestors(project_dir: Path) -> None:
    _prove_all(project_dir)
    write_revision(project_dir, Rev("0004", "0003", upgrade="pass", downgrade="pass", message="empty"))
    plan = _plan(project_dir)[1]
    assert plan.proven == ORDER
    assert set(plan.keys) == {*ORDER, "0004"}


def test_no_cache_neither_reads_nor_writes(project_dir: Path, tmp_path: Path) -> None:
    _prove_all(project_dir)
    store, plan = _plan(project_dir, enabled=False)
    assert plan.proven == () and plan.resume is None and not plan.enabled
    entries = sorted((tmp_path / "proofs" / "entries").iterdir())
    store.record(plan, ORDER)
    assert sorted((tmp_path / "proofs" / "entries").iterdir()) == entries


def test_a_damaged_or_half_written_entry_is_removed_and_proven_again(
    project_dir: Path, tmp_path: Path
) -> None:
    store, plan = _plan(project_dir)
    store.record(plan, ORDER)
    entries = tmp_path / "proofs" / "entries"
    second = entries / f"{plan.keys['0002']}.json"
    third = entries / f"{plan.keys['0003']}.json"
    second.write_text(second.read_text()[:20])  # half written
    third.write_text(third.read_text().replace('"0003"', '"0009"'))  # tampered
    store2, plan2 = _plan(project_dir)
    assert plan2.proven == ("0001",)
    assert not second.exists() and not third.exists()
    assert sorted(store2.discarded) == sorted([second.name, third.name])


def _hammer(root: str, worker: int, rounds: int) -> None:
    """One guard of many: records and reads the same keys over and over."""
    store = ProofCache(Path(root))
    keys = {f"r{i}": f"{i:064x}" for i in range(20)}
    plan = cache.Plan(keys=keys)
    for n in range(rounds):
        store.record(plan, [f"r{(n + worker + i) % 20}" for i in range(5)])
        store.proven_keys(keys.values())
    raise SystemExit(1 if store.discarded else 0)


def test_two_guards_at_once_do_not_corrupt_each_other(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hammer, args=(str(tmp_path), w, 60)) for w in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [p.exitcode for p in procs] == [0, 0]  # neither ever read a damaged entry
    store = ProofCache(tmp_path)
    keys = [f"{i:064x}" for i in range(20)]
    assert store.proven_keys(keys) == set(keys)
    assert not list((tmp_path / "entries").glob("*.tmp"))
    assert not store.discarded


# --- schema-warden check with the cache -------------------------------------------------------


def _check(ini: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str]:
    code = check_migrations.main(["--config", str(ini), *flags])
    return code, capsys.readouterr().out


def _proven_line(out: str) -> str | None:
    return next((line for line in out.splitlines() if "proven by an earlier run" in line), None)


@pytest.fixture
def ini(tmp_path: Path) -> Path:
    # tests/conftest.py points SCHEMA_WARDEN_PROOF_CACHE at tmp_path / "proofs"
    return make_project(tmp_path / "proj", models=READINGS_MODELS, revisions=READINGS_REVISIONS)


def test_second_run_skips_proven_revisions_and_still_checks_drift(
    ini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, first = _check(ini, capsys)
    assert code == 0, first
    assert _proven_line(first) is None
    code, second = _check(ini, capsys)
    assert code == 0, second
    assert "0001–0002, 2 revisions proven by an earlier run" in _proven_line(second)
    assert "round-trip: not run again: nothing after 0002, whose round trip an earlier run proved" in second
    assert "drift: the migrations build exactly what the models declare" in second


def test_no_cache_proves_everything_again(ini: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _check(ini, capsys)
    code, out = _check(ini, capsys, "--no-cache")
    assert code == 0 and _proven_line(out) is None
    assert "stairway: 0001 (" in out and "stairway: 0002 (" in out


def test_editing_an_old_migration_proves_it_again_and_finds_its_new_problem(
    ini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _check(ini, capsys)
    write_revision(ini.parent, replace(READINGS_REVISIONS[1], downgrade="op.execute('SELECT 1')"))
    code, out = _check(ini, capsys)
    assert code == 1, out
    assert "0001, 1 revision proven by an earlier run" in _proven_line(out)  # upgraded plainly
    assert "downgrade leaves column readings.device behind" in out


def test_drift_is_checked_even_when_every_revision_is_proven(
    ini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _check(ini, capsys)
    (ini.parent / "fixture_app" / "models.py").write_text(
        (ini.parent / "fixture_app" / "models.py").read_text().replace("sa.String(32)", "sa.String(64)")
    )
    code, out = _check(ini, capsys)
    assert code == 1, out
    assert _proven_line(out) is not None
    assert "drift" in out and "readings.device" in out


def test_a_damaged_proof_is_proven_again_by_the_check(
    ini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _check(ini, capsys)
    for entry in (tmp_path / "proofs" / "entries").glob("*.json"):
        entry.write_text(entry.read_text()[:-5])  # half written
    code, out = _check(ini, capsys)
    assert code == 0, out
    assert _proven_line(out) is None
    assert "stairway: 0001 (" in out and "stairway: 0002 (" in out
    code, out = _check(ini, capsys)
    assert "0001–0002, 2 revisions proven by an earlier run" in _proven_line(out)


def test_a_check_constraint_keeps_its_text_when_resuming(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Resuming replays the migrations: a restored pg_dump would re-parse the CHECK into
    another expression and the drift check would cry wolf (it did, before replay)."""
    check = "sa.CheckConstraint(\"device IN ('a', 'b')\", name=\"ck_device\"),"
    models = READINGS_MODELS.replace(
        'sa.Column("device", sa.String(32)),', f'sa.Column("device", sa.String(32)),\n    {check}'
    )
    third = Rev(
        "0003",
        "0002",
        upgrade="op.create_check_constraint('ck_device', 'readings', \"device IN ('a', 'b')\")",
        downgrade="op.drop_constraint('ck_device', 'readings', type_='check')",
        message="check device",
    )
    ini = make_project(tmp_path / "proj", models=models, revisions=[*READINGS_REVISIONS, third])
    for _ in range(2):
        code, out = _check(ini, capsys, "--no-data-check")  # generated rows would violate the CHECK
        assert code == 0, out
    assert "0001–0003, 3 revisions proven by an earlier run" in _proven_line(out)


def test_two_checks_at_once_share_the_cache_safely(ini: Path, tmp_path: Path) -> None:
    env = {**os.environ, "SCHEMA_WARDEN_PROOF_CACHE": str(tmp_path / "proofs")}
    argv = [sys.executable, "-m", "schema_warden", "check", "--config", str(ini)]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    after = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "0001–0002, 2 revisions proven by an earlier run" in after.stdout
    [saved] = _clusters(tmp_path)  # both saved head 0002: one entry, whole
    assert cache.file_digest(saved / cache.CLUSTER_ARCHIVE) == _entry(saved)["files"]
    assert [p.name for p in saved.parent.iterdir() if p.name.startswith(".")] == []
    models = tmp_path / "proofs" / models_cache.SUBDIR  # the same models: one entry, whole
    [remembered] = list(models.iterdir())
    assert remembered.suffix == ".json" and unseal(remembered.read_bytes()) is not None


# --- saved data directories: warm runs start at the last proven head ---------------------------


def _marked_project(root: Path, marker: Path) -> Path:
    """READINGS with upgrades that append to ``marker`` (outside the database): it shows which
    upgrades ran, so a test can tell a replay from a start at a saved data directory."""
    revisions = [
        replace(rev, upgrade=f"open({str(marker)!r}, 'a').write('up {rev.id}\\n')\n" + dedent(rev.upgrade))
        for rev in READINGS_REVISIONS
    ]
    return make_project(root, models=READINGS_MODELS, revisions=revisions)


def _ups(marker: Path) -> list[str]:
    return marker.read_text().split() if marker.exists() else []


def _json_check(ini: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, list[dict]]:
    code = check_migrations.main(["--config", str(ini), "--format", "json", *flags])
    return code, json.loads(capsys.readouterr().out)["checks"]


def _clusters(tmp_path: Path) -> list[Path]:
    root = tmp_path / "proofs" / "clusters"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _entry(path: Path) -> dict:
    payload = unseal((path / cache.CLUSTER_FILE).read_bytes())
    assert payload is not None
    return payload


@pytest.fixture
def marked(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "ups.txt"
    return _marked_project(tmp_path / "proj", marker), marker


@pytest.fixture
def save_every_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run started from a saved revision saves its head even one revision later."""
    monkeypatch.setattr(check_migrations, "SAVE_AFTER", 1)


def test_a_run_one_revision_past_the_saved_one_proves_it_in_place_and_saves_nothing(
    marked: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini, marker = marked
    _json_check(ini, capsys)  # saves 0002
    [saved] = _clusters(tmp_path)
    archive = (saved / cache.CLUSTER_ARCHIVE).read_bytes()
    write_revision(ini.parent, _marked_rev(marker, "0003", "0002"))
    ups = len(_ups(marker))
    code, checks = _json_check(ini, capsys)
    assert code == 0, checks
    assert [c["revision"] for c in checks if c["revision"]] == ["0003"]
    assert set(_ups(marker)[ups:]) == {"up", "0003"}  # 0001 and 0002 were not replayed
    # one revision past the saved one: a save (about 0.15 s) would cost more than its replay
    assert _clusters(tmp_path) == [saved] and (saved / cache.CLUSTER_ARCHIVE).read_bytes() == archive

    ups = len(_ups(marker))
    code, again = _json_check(ini, capsys)  # nothing to prove: 0003 replayed plainly from 0002
    assert code == 0, again
    assert "0001–0003, 3 revisions proven by an earlier run" in again[0]["message"]
    assert _ups(marker)[ups:] == ["up", "0003"]


def test_a_passing_run_saves_the_head_and_the_next_run_replays_nothing(
    marked: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini, marker = marked
    code, cold = _json_check(ini, capsys)
    assert code == 0, cold
    [saved] = _clusters(tmp_path)
    assert _entry(saved)["revision"] == "0002" and _entry(saved)["database"] == "postgres"
    with tarfile.open(saved / cache.CLUSTER_ARCHIVE) as archive:
        assert "./PG_VERSION" in archive.getnames() and "./postmaster.pid" not in archive.getnames()
    ups = len(_ups(marker))
    assert ups >= 4  # the stairway ran both upgrades (twice each, and the round trip)

    code, warm = _json_check(ini, capsys)
    assert code == 0, warm
    assert len(_ups(marker)) == ups  # started at 0002: no upgrade ran again
    assert _clusters(tmp_path) == [saved]

    shutil.rmtree(saved)  # the same run without the saved data directory: replays 0001, 0002
    code, replayed = _json_check(ini, capsys)
    assert code == 0 and replayed == warm  # the same checks, the same messages
    assert _ups(marker)[ups:] == ["up", "0001", "up", "0002"]


def test_a_server_started_early_from_the_initdb_cluster_gives_way_to_a_saved_head(
    marked: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a guess (a history the static reading cannot order) the server starts from the
    initdb'd cluster while Alembic imports; Alembic's plan then finds a saved head: that one
    is used and the early server stopped."""
    ini, marker = marked
    assert _json_check(ini, capsys)[0] == 0  # saves 0002
    started: list[Any] = []
    launch_plain = check_migrations._launch_plain

    def spy(binaries: Any) -> Any:
        launched = launch_plain(binaries)
        started.append(launched.server.socket_dir)
        return launched

    monkeypatch.setattr(check_migrations, "_guess_plan", lambda *args: None)
    monkeypatch.setattr(check_migrations, "_launch_plain", spy)
    ups = len(_ups(marker))
    code, warm = _json_check(ini, capsys)
    assert code == 0, warm
    assert len(_ups(marker)) == ups  # started at the saved 0002: nothing replayed
    assert "0001–0002, 2 revisions proven by an earlier run" in warm[0]["message"]
    [workdir] = started
    assert not workdir.exists()  # the early server was stopped and removed


def test_a_new_revision_is_proven_on_top_and_its_head_saved_pristine(
    marked: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], save_every_run: None
) -> None:
    ini, marker = marked
    _json_check(ini, capsys)
    third = Rev(
        "0003",
        "0002",
        upgrade=f"open({str(marker)!r}, 'a').write('up 0003\\n')\n"
        "op.execute(\"INSERT INTO readings (value, device) VALUES (1.5, 'seed')\")",
        downgrade="op.execute(\"DELETE FROM readings WHERE device = 'seed'\")",
        message="seed a reading",
    )
    write_revision(ini.parent, third)
    ups = len(_ups(marker))
    code, checks = _json_check(ini, capsys)
    assert code == 0, checks
    assert "0001–0002, 2 revisions proven by an earlier run" in checks[0]["message"]
    assert [c["revision"] for c in checks if c["revision"]] == ["0003"]
    assert set(_ups(marker)[ups:]) == {"up", "0003"}  # 0001 and 0002 were not replayed
    entries = {_entry(p)["revision"]: p for p in _clusters(tmp_path)}
    assert set(entries) == {"0002", "0003"}

    # the saved head holds what a plain upgrade gives: no rows of the data check's stairway
    with throwaway_server(cluster=entries["0003"] / cache.CLUSTER_ARCHIVE) as server:
        conn = psycopg2.connect(**server.connect_kwargs())
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT device FROM readings")
                assert cur.fetchall() == [("seed",)]  # the data migration's row only
                cur.execute("SELECT version_num FROM alembic_version")
                assert cur.fetchall() == [("0003",)]
                cur.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")
                assert cur.fetchall() == [("postgres",)]
        finally:
            conn.close()

    ups = len(_ups(marker))
    code, again = _json_check(ini, capsys)
    assert code == 0 and len(_ups(marker)) == ups
    assert "0001–0003, 3 revisions proven by an earlier run" in again[0]["message"]


def _change_a_byte(entry: Path) -> None:
    """A byte of the saved files changes (a disk error, a user's accident)."""
    archive = entry / cache.CLUSTER_ARCHIVE
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))


def _delete_the_archive(entry: Path) -> None:
    (entry / cache.CLUSTER_ARCHIVE).unlink()


def _reseal(entry: Path, **changes: str) -> None:
    payload = {**_entry(entry), **changes}
    (entry / cache.CLUSTER_FILE).write_text(seal(payload))


def _change_snapshot_digest(entry: Path) -> None:
    _reseal(entry, snapshot="0" * 64)


def _change_version_row(entry: Path) -> None:
    """An entry whose files are intact (digest recomputed) but whose database is not at 0002."""
    archive = entry / cache.CLUSTER_ARCHIVE
    edited = entry.parent / "edited.tar"
    with throwaway_server(cluster=archive) as server:
        server.execute("UPDATE alembic_version SET version_num = '0001'")
        files = server.save_data_dir(edited)
    edited.replace(archive)
    _reseal(entry, files=files)


def _garble_the_entry_file(entry: Path) -> None:
    (entry / cache.CLUSTER_FILE).write_text("{")


@pytest.mark.parametrize(
    "damage",
    [
        _change_a_byte,
        _delete_the_archive,
        _change_snapshot_digest,
        _change_version_row,
        _garble_the_entry_file,
    ],
    ids=["byte-changed", "archive-deleted", "snapshot-digest", "version-row", "entry-file"],
)
def test_a_damaged_saved_head_is_detected_deleted_and_the_run_replays(
    marked: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: object
) -> None:
    ini, marker = marked
    _json_check(ini, capsys)
    code, warm = _json_check(ini, capsys)
    assert code == 0
    [saved] = _clusters(tmp_path)
    before = _entry(saved)
    damage(saved)  # type: ignore[operator]
    ups = len(_ups(marker))
    code, checks = _json_check(ini, capsys)
    assert code == 0 and checks == warm  # the same results
    assert _ups(marker)[ups:] == ["up", "0001", "up", "0002"]  # replayed from base instead
    [again] = _clusters(tmp_path)  # saved again by the passing run, intact
    after = _entry(again)
    assert {**after, "files": ""} == {**before, "files": ""}  # the same head, schema and database
    assert cache.file_digest(again / cache.CLUSTER_ARCHIVE) == after["files"]


def test_no_cache_neither_uses_nor_saves_data_directories(
    marked: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini, marker = marked
    code, _ = _json_check(ini, capsys, "--no-cache")
    assert code == 0 and _clusters(tmp_path) == []
    _json_check(ini, capsys)
    [saved] = _clusters(tmp_path)
    stamp = (saved / cache.CLUSTER_FILE).stat().st_mtime_ns
    ups = len(_ups(marker))
    code, checks = _json_check(ini, capsys, "--no-cache")
    assert code == 0
    assert _ups(marker)[ups:].count("0001") >= 2  # the whole stairway ran again
    assert not any("proven by an earlier run" in c["message"] for c in checks)
    assert _clusters(tmp_path) == [saved]
    assert (saved / cache.CLUSTER_FILE).stat().st_mtime_ns == stamp


def test_a_failing_run_saves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drifting = READINGS_MODELS + '\nsa.Table("extra", metadata, sa.Column("id", sa.Integer))\n'
    ini = make_project(tmp_path / "proj", models=drifting, revisions=READINGS_REVISIONS)
    code, _ = _json_check(ini, capsys)
    assert code == 1 and _clusters(tmp_path) == []


def _save_many(root: str, worker: int, rounds: int) -> None:
    """One guard of many: saves data directories under its own keys and reads the others'."""
    clusters = cache.ClusterCache("build", Path(root))
    bad = 0
    for n in range(rounds):
        key = f"{worker}-{n}"
        with throwaway_server() as server:
            clusters.save(
                server,
                revision=key,
                key=key,
                database="postgres",
                version_table='"alembic_version"',
                snapshot="s",
            )
        for other in (f"{1 - worker}-{n}", f"{1 - worker}-{n - 1}"):
            path = clusters.path_for(other)
            entry = clusters._read(path, other, other) if path.is_dir() else None
            if entry is not None:
                with clusters.reading(entry) as reading:
                    pass
                # read under the shared lock: whole, or already evicted (then no digest at all)
                bad += reading.check.digest is not None and not reading.intact
    raise SystemExit(1 if bad else 0)


def test_two_guards_saving_at_once_keep_whole_entries_only(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_save_many, args=(str(tmp_path / "c"), w, 3)) for w in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    kept = [p for p in (tmp_path / "c").iterdir() if p.name != "lock"]
    assert len(kept) == cache.MAX_CLUSTERS  # the oldest were evicted; no staging, no trash
    for path in kept:
        payload = unseal((path / cache.CLUSTER_FILE).read_bytes())
        assert payload is not None and cache.file_digest(path / cache.CLUSTER_ARCHIVE) == payload["files"]


def test_an_interrupted_save_leaves_no_entry_no_staging_and_no_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clusters = cache.ClusterCache("build", tmp_path / "c")

    def interrupted(_source: Path, out: object, _digest: object) -> None:
        out.write(b"half an archive")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(postgres, "_tar_to", interrupted)
    with pytest.raises(KeyboardInterrupt), throwaway_server() as server:
        workdir = server.socket_dir
        clusters.save(server, revision="r", key="k", database="postgres", version_table="v", snapshot="s")
    assert [p.name for p in (tmp_path / "c").iterdir() if p.name != "lock"] == []
    assert not workdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)


def test_a_save_that_fails_changes_nothing_in_the_result(
    marked: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ini, _marker = marked
    shown: list[str] = []

    def full_disk(_source: Path, _out: object, _digest: object) -> None:
        shown.append(capsys.readouterr().out)  # the report is out before the save starts
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(postgres, "_tar_to", full_disk)
    code = check_migrations.main(["--config", str(ini)])
    assert code == 0
    assert len(shown) == 1 and "drift: the migrations build exactly what the models declare" in shown[0]
    clusters = tmp_path / "proofs" / "clusters"
    assert [p.name for p in clusters.iterdir() if p.name != "lock"] == []


def _marked_rev(marker: Path, rev: str, down: str) -> Rev:
    return Rev(
        rev,
        down,
        upgrade=f"open({str(marker)!r}, 'a').write('up {rev}\\n')\n"
        f"op.execute(\"INSERT INTO readings (value, device) VALUES (1.5, 'seed{rev}')\")",
        downgrade=f"op.execute(\"DELETE FROM readings WHERE device = 'seed{rev}'\")",
        message=f"seed {rev}",
    )


def test_an_older_saved_revision_is_upgraded_plainly_to_the_last_proven_one(
    marked: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], save_every_run: None
) -> None:
    ini, marker = marked
    _json_check(ini, capsys)  # saves 0002
    write_revision(ini.parent, _marked_rev(marker, "0003", "0002"))
    _json_check(ini, capsys)  # proves 0003 from 0002, saves 0003
    entries = {_entry(p)["revision"]: p for p in _clusters(tmp_path)}
    shutil.rmtree(entries["0003"])  # only 0002 is saved now; 0003 is proven
    write_revision(ini.parent, _marked_rev(marker, "0004", "0003"))
    ups = len(_ups(marker))
    code, checks = _json_check(ini, capsys)
    assert code == 0, checks
    assert "0001–0003, 3 revisions proven by an earlier run" in checks[0]["message"]
    ran = _ups(marker)[ups:]
    assert ran[:2] == ["up", "0003"] and set(ran[2:]) == {"up", "0004"}  # 0002 -> 0003 plainly, then 0004
    assert {_entry(p)["revision"] for p in _clusters(tmp_path)} == {"0002", "0004"}
    saved = next(p for p in _clusters(tmp_path) if _entry(p)["revision"] == "0004")
    with throwaway_server(cluster=saved / cache.CLUSTER_ARCHIVE) as server:
        conn = psycopg2.connect(**server.connect_kwargs())
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT device FROM readings ORDER BY device")
                assert cur.fetchall() == [("seed0003",), ("seed0004",)]  # no generated rows
        finally:
            conn.close()

    # nothing left to prove, only 0002 saved: 0002 -> 0004 plainly in "postgres", 0004 saved again
    shutil.rmtree(saved)
    ups = len(_ups(marker))
    code, again = _json_check(ini, capsys)
    assert code == 0, again
    assert "0001–0004, 4 revisions proven by an earlier run" in again[0]["message"]
    assert _ups(marker)[ups:] == ["up", "0003", "up", "0004"]
    assert {_entry(p)["revision"] for p in _clusters(tmp_path)} == {"0002", "0004"}
    ups = len(_ups(marker))
    code, warm = _json_check(ini, capsys)
    assert code == 0 and warm == again and len(_ups(marker)) == ups


def _server_dirs() -> set[Path]:
    places = (Path(tempfile.gettempdir()), Path("/dev/shm"))
    return {p for place in places if place.is_dir() for p in place.glob("schema-warden-*") if p.is_dir()}


def test_the_server_started_early_from_the_static_reading_is_the_one_the_plan_wants(
    marked: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ini, marker = marked
    code, cold = _json_check(ini, capsys)  # saves 0002
    assert code == 0, cold
    launches: list[str] = []
    real_launch = check_migrations._launch

    def launch(binaries: object, clusters: object, entry: cache.ClusterEntry) -> object:
        launches.append(entry.revision)
        return real_launch(binaries, clusters, entry)

    monkeypatch.setattr(check_migrations, "_launch", launch)
    ups = len(_ups(marker))
    code, warm = _json_check(ini, capsys)
    assert code == 0 and launches == ["0002"]  # started once, before Alembic was imported
    assert len(_ups(marker)) == ups

    # a static reading that disagrees with Alembic's (another key): that server is stopped
    # unused and the entry of the real plan is started, with the same results
    real_early = cache.early_plan

    def wrong(*args: object, **kwargs: object) -> cache.Plan | None:
        plan = real_early(*args, **kwargs)  # type: ignore[arg-type]
        assert plan is not None
        return replace(plan, keys={**plan.keys, "0001": "0" * 64})

    monkeypatch.setattr(cache, "early_plan", wrong)
    launches.clear()
    before = _server_dirs()
    code, again = _json_check(ini, capsys)
    assert code == 0 and again == warm
    assert launches == ["0002", "0002"]
    assert len(_ups(marker)) == ups  # still no replay
    assert _server_dirs() <= before  # the unused server is gone with its files


def test_the_static_reading_plans_what_alembic_plans(tmp_path: Path) -> None:
    from schema_warden.commands.heads import parse_revision_file, revision_paths, version_dirs
    from schema_warden.project.settings import find_config

    for ini in (REPO_ROOT / "alembic.ini", readings_project(tmp_path)):
        settings = find_config(ini)
        _script, dirs, _paths, recursive = version_dirs(settings.alembic_config)
        files = [parse_revision_file(p, ini.parent) for p in revision_paths(dirs, recursive)]
        guess = cache.early_plan(settings, files, 15, options={"data_check": True})
        with loaded_project(ini, lazy=True) as project:
            _store, plan = cache.plan_project(project, 15, options={"data_check": True})
            # the same search roots: the real plan takes the early plan's code digests
            assert guess is not None and guess.roots == tuple(str(r) for r in cache._search_roots(project))
            _store, reused = cache.plan_project(project, 15, options={"data_check": True}, known=guess)
            wrong = replace(guess, digests=dict.fromkeys(guess.digests, "0" * 64))
            _store, poisoned = cache.plan_project(project, 15, options={"data_check": True}, known=wrong)
        assert guess.keys == plan.keys == reused.keys and len(plan.keys) >= 2
        assert poisoned.keys != plan.keys  # proof that the digests were taken, not recomputed


def test_only_a_line_of_revisions_is_ordered_statically() -> None:
    from schema_warden.commands.heads import RevisionFile

    def rev(rid: str, *down: str) -> RevisionFile:
        return RevisionFile(Path(f"{rid}.py"), rid, tuple(down), (), ())

    line = [rev("c", "b"), rev("a"), rev("b", "a")]
    assert [f.revision for f in cache.linear_order(line) or []] == ["a", "b", "c"]
    assert cache.linear_order([rev("a"), rev("b", "a"), rev("c", "a")]) is None  # a branch
    assert cache.linear_order([rev("a"), rev("b"), rev("m", "a", "b")]) is None  # a merge
    assert cache.linear_order([rev("a"), rev("b", "x")]) is None  # a dangling parent


def test_real_path_is_realpath_for_files_links_and_linked_directories(tmp_path: Path) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "0001_x.py"
    target.write_text("x = 1\n")
    (tmp_path / "linked").symlink_to(real_dir)
    (real_dir / "alias.py").symlink_to(target)
    for path in (
        target,
        tmp_path / "linked" / "0001_x.py",
        real_dir / "alias.py",
        tmp_path / "linked" / "alias.py",
    ):
        assert cache.real_path(path) == os.path.realpath(path) == str(target)
    relative = os.path.relpath(target)
    assert cache.real_path(relative) == str(target)


# --- the key is every input: files the revisions read, and the project itself ---------------

SQL_REVISIONS = (
    READINGS_REVISIONS[0],
    Rev(
        "0002",
        "0001",
        upgrade="""
            from pathlib import Path
            op.execute(Path(__file__).with_name("0002.sql").read_text())
        """,
        downgrade='op.drop_column("readings", "device")',
        message="add device",
        filename="0002_add_device.py",
    ),
)
GOOD_SQL = "ALTER TABLE readings ADD COLUMN device varchar(32);\n"
BAD_SQL = "ALTER TABLE readings ADD COLUMN device nonsense_type;\n"


def _sql_project(root: Path) -> Path:
    ini = make_project(root, models=READINGS_MODELS, revisions=SQL_REVISIONS)
    (root / "migrations" / "versions" / "0002.sql").write_text(GOOD_SQL)
    return ini


def _break_sql(root: Path) -> None:
    (root / "migrations" / "versions" / "0002.sql").write_text(BAD_SQL)


def test_a_revision_that_reads_sql_beside_it_is_proven_again_when_the_sql_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini = _sql_project(tmp_path / "proj")
    code, cold = _check(ini, capsys)
    assert code == 0, cold
    code, warm = _check(ini, capsys)
    assert code == 0 and _proven_line(warm), warm  # the run that first saw the SQL keyed it
    _break_sql(tmp_path / "proj")
    code, broken = _check(ini, capsys)
    assert code == 1, broken
    assert "nonsense_type" in broken


def test_two_copies_of_a_project_do_not_share_proofs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _sql_project(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    _break_sql(tmp_path / "b")
    code, first = _check(good, capsys)
    assert code == 0, first
    code, second = _check(tmp_path / "b" / "alembic.ini", capsys)
    assert code == 1, second


def test_reads_are_recorded_under_the_root_only_and_not_python(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "sub").mkdir(parents=True)
    for name in ("sub/data.sql", "mod.py", "alembic.ini", "outside.txt"):
        (root / name).write_text("x")
    (tmp_path / "elsewhere.sql").write_text("x")
    cache.watch(root)
    for name in ("sub/data.sql", "mod.py", "alembic.ini"):
        (root / name).read_text()
    (tmp_path / "elsewhere.sql").read_text()
    with open(root / "written.log", "w") as fh:
        fh.write("not an input")
    assert cache.watched(root) == ["sub/data.sql"]
