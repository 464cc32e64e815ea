"""Smoke run of the benchmark: the generated history is a valid, consistent project, and the
schema-warden part of the benchmark runs once on a 5-revision history (the full benchmark,
``python -m bench``, is not part of the timed tests)."""

from __future__ import annotations

import sys
from pathlib import Path

from schema_warden.server.postgres import Server

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # bench/ is not installed: it lives beside the tests
    sys.path.insert(0, str(REPO_ROOT))

from bench import generate, run  # noqa: E402


def _alembic(project: Path, server: Server, database: str, *steps: tuple[str, str]) -> list[object]:
    """Run Alembic commands in-process on ``database``; returns autogenerate's diffs at the end."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from schema_warden.project.imports import isolated_imports
    from sqlalchemy import create_engine, pool

    engine = create_engine(server.url(database), poolclass=pool.NullPool)
    try:
        with isolated_imports(project), engine.connect() as connection:
            cfg = Config(str(project / "alembic.ini"))
            cfg.attributes["connection"] = connection
            cfg.attributes["configure_logger"] = False
            for verb, target in steps:
                getattr(command, verb)(cfg, target)
            connection.commit()
            sys.path.insert(0, str(project))
            from fleet.models import Base  # the generated project's models

            ctx = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def test_generated_history_is_deterministic_and_realistic() -> None:
    small, large = generate.build(50), generate.build(300)
    assert [r.render() for r in small.revisions] == [r.render() for r in large.revisions[:50]]
    text = "\n".join(r.render() for r in large.revisions)
    for operation in (
        "op.create_table",
        "op.add_column",
        "op.create_index",
        "op.create_foreign_key",
        "UPDATE",
    ):
        assert operation in text
    assert "INSERT INTO" in text and "op.alter_column" in text and "op.drop_column" in text
    assert all(r.downgrade for r in large.revisions)  # every revision has a downgrade


def test_generated_project_round_trips_and_matches_its_models(
    tmp_path: Path, pg_server: Server, fresh_db: str
) -> None:
    project = tmp_path / "history"
    generate.generate(project, 12)
    assert len(list((project / "migrations" / "versions").glob("*.py"))) == 12
    steps = (("upgrade", "head"), ("downgrade", "base"), ("upgrade", "head"))
    assert _alembic(project, pg_server, fresh_db, *steps) == []  # models match head


def test_append_and_remove_a_revision(tmp_path: Path) -> None:
    project = tmp_path / "history"
    generate.generate(project, 5)
    models = (project / "fleet" / "models.py").read_text()
    added = generate.append_revision(project, 5, variant=3)
    assert "extra_3" in added.read_text() and "extra_3" in (project / "fleet" / "models.py").read_text()
    generate.remove_revision(project, 5, added)
    assert not added.exists()
    assert (project / "fleet" / "models.py").read_text() == models


def test_benchmark_guard_part_runs_once(tmp_path: Path) -> None:
    project = tmp_path / "history"
    generate.generate(project, 5)
    env = run._clean_env(XDG_CACHE_HOME=str(tmp_path / "xdg"))
    guard = run._guard_argv()
    results: dict[int, dict[str, run.Timing]] = {5: {}}
    for key, verb in (("c", "check"), ("f", "heads")):
        elapsed, failure = run._run_timed([run.Command([*guard, verb], project, env)])
        assert failure is None, failure
        results[5][key] = run.Timing([elapsed])
    text = run.render(results, {"cpu": "test"}, 1)
    assert "| c  schema-warden check, cold" in text
    assert "| f  schema-warden heads |" in text
    assert "- cpu: test" in text
