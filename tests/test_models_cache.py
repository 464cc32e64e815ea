"""The drift check's models side: built from one compiled script, remembered by that script."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from schema_warden.cache import models as models_cache
from schema_warden.proof import drift
from schema_warden.schema.diff import compare
from schema_warden.server.postgres import Server
from sqlalchemy.dialects import postgresql

SCHEMAS = ("public", "audit")


def rich_metadata() -> sa.MetaData:
    """What create_all has to get right: shared enums, FK cycles, identity, generated columns,
    percent signs, comments, partial and expression indexes, a second schema."""
    md = sa.MetaData(naming_convention={"ix": "ix_%(table_name)s_%(column_0_name)s"})
    state = sa.Enum("new", "done", name="state")
    sites = sa.Table(
        "sites",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("sites.id")),
        sa.Column("main_device_id", sa.Integer),
        sa.Column("name", sa.String(64), nullable=False, server_default=sa.text("'100%'")),
        sa.Column("state", state, nullable=False, server_default="new"),
        sa.CheckConstraint("name LIKE '%_%'", name="ck_sites_name"),
        comment="where devices hang",
    )
    devices = sa.Table(
        "devices",
        md,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("site_id", sa.Integer, sa.ForeignKey("sites.id", ondelete="CASCADE"), index=True),
        sa.Column("serial", sa.String(32), nullable=False, comment="as printed"),
        sa.Column("state", state),
        sa.Column("tags", postgresql.ARRAY(sa.Text), server_default="{}"),
        sa.Column("payload", postgresql.JSONB, server_default=sa.text("'{}'::jsonb")),
        sa.Column("serial_upper", sa.String(32), sa.Computed("upper(serial)", persisted=True)),
        sa.UniqueConstraint("site_id", "serial", name="uq_devices_site_serial"),
    )
    sa.ForeignKeyConstraint(
        ["main_device_id"], ["devices.id"], name="fk_sites_main_device", use_alter=True, table=sites
    )
    sa.Index("ix_devices_lower_serial", sa.func.lower(devices.c.serial))
    sa.Index("ix_devices_active", devices.c.site_id, postgresql_where=devices.c.state == "new")
    for name in ("a", "b", "c", "d", "e"):
        sa.Table("many", md, sa.Column(name, sa.Integer, index=True), extend_existing=True)
    sa.Table(
        "events",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("device_id", sa.BigInteger, sa.ForeignKey("devices.id")),
        sa.Column("note", sa.Text, server_default="50% off"),
        schema="audit",
    )
    return md


@pytest.fixture
def dialect(pg_server: Server) -> Iterator[Any]:
    engine = sa.create_engine(pg_server.url("postgres"), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        yield connection.dialect
    engine.dispose()


def _project(exclude: tuple[str, ...] = ()) -> Any:
    """What models_side reads of a project: its settings (no database stand-in)."""
    return SimpleNamespace(settings=SimpleNamespace(schemas=SCHEMAS, exclude_tables=exclude))


def test_the_script_builds_exactly_what_create_all_builds(pg_server: Server, dialect: Any) -> None:
    md = rich_metadata()
    project = _project()
    plain = drift.models_side(pg_server, project, md, drift.Prelude(), "mc_plain")
    script = drift.models_side(pg_server, project, md, drift.Prelude(), "mc_script", dialect=dialect)
    assert plain.error is None and script.error is None
    assert plain.snapshot is not None and script.snapshot is not None
    assert "audit.events" in script.snapshot.tables and "fk_sites_main_device" in str(script.snapshot)
    assert script.snapshot.tables["sites"].column("name").default == "'100%'::character varying"
    assert compare(plain.snapshot, script.snapshot) == []
    assert script.snapshot == plain.snapshot


def test_the_same_models_always_give_the_same_script(dialect: Any) -> None:
    """create_all emits a table's indexes in set order, which changes between processes."""
    first = drift.models_ddl(rich_metadata(), dialect)
    assert first is not None and first == drift.models_ddl(rich_metadata(), dialect)
    code = (
        "import sys; sys.path[:0] = [sys.argv[1]]\n"
        "from sqlalchemy.dialects import postgresql\n"
        "from test_models_cache import rich_metadata\n"
        "from schema_warden.proof.drift import models_ddl\n"
        "print(repr(models_ddl(rich_metadata(), postgresql.psycopg2.dialect())))\n"
    )
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", code, str(Path(__file__).parent)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        outputs.add(result.stdout)
    assert len(outputs) == 1


def test_no_script_for_a_listener_that_needs_the_database_create_all_runs_then(
    pg_server: Server, dialect: Any
) -> None:
    md = sa.MetaData()
    table = sa.Table("t", md, sa.Column("id", sa.Integer, primary_key=True))

    @sa.event.listens_for(table, "after_create")
    def seed(target: Any, connection: Any, **_kw: Any) -> None:
        count = connection.execute(sa.text("SELECT count(*) FROM t")).scalar()
        connection.execute(sa.text("COMMENT ON TABLE t IS :c").bindparams(c=f"rows: {count}"))

    assert drift.models_ddl(md, dialect) is None
    side = drift.models_side(
        pg_server, _project(), md, drift.Prelude(), "mc_listener", dialect=dialect, use_cache=True
    )
    assert side.snapshot is not None and side.snapshot.tables["t"].comment == "rows: 0"
    assert not (models_cache._root()).exists()  # nothing keyed: no script


def _built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the models databases built from here on."""
    built: list[str] = []
    original = drift.build_models_database

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(args[4] if len(args) > 4 else kwargs.get("name", drift.MODELS_DB))
        return original(*args, **kwargs)

    monkeypatch.setattr(drift, "build_models_database", counting)
    return built


def test_the_models_side_is_remembered_by_its_script(
    pg_server: Server, dialect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = _built(monkeypatch)
    project = _project()

    def side(md: sa.MetaData, **kw: Any) -> Any:
        return drift.models_side(pg_server, project, md, drift.Prelude(), "mc_cached", dialect=dialect, **kw)

    first = side(rich_metadata(), use_cache=True)
    again = side(rich_metadata(), use_cache=True)
    assert built == ["mc_cached"]  # the second one came from the cache
    assert again.snapshot == first.snapshot and again.prelude == first.prelude

    changed = rich_metadata()
    sa.Table("many", changed, sa.Column("f", sa.Integer), extend_existing=True)
    assert "f" in [c.name for c in side(changed, use_cache=True).snapshot.tables["many"].columns]
    assert built == ["mc_cached", "mc_cached"]

    other = drift.models_side(
        pg_server, _project(("many",)), rich_metadata(), drift.Prelude(), "mc_cached", dialect=dialect
    )
    assert "many" not in other.snapshot.tables  # settings are part of the key (and no cache: built)
    side(rich_metadata())  # use_cache=False: built, whatever is remembered
    assert len(built) == 4


def test_a_damaged_entry_is_deleted_and_the_side_built_again(
    pg_server: Server, dialect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = _built(monkeypatch)
    first = drift.models_side(
        pg_server, _project(), rich_metadata(), drift.Prelude(), "mc_dmg", dialect=dialect, use_cache=True
    )
    [entry] = list(models_cache._root().glob("*.json"))
    text = entry.read_text()
    entry.write_text(text.replace('"sites"', '"sitez"', 1))  # content changed, checksum not
    again = drift.models_side(
        pg_server, _project(), rich_metadata(), drift.Prelude(), "mc_dmg", dialect=dialect, use_cache=True
    )
    assert built == ["mc_dmg", "mc_dmg"] and again.snapshot == first.snapshot
    assert entry.read_text() != text.replace('"sites"', '"sitez"', 1)  # written again, whole
    entry.write_bytes(b"\x00garbage")
    drift.models_side(
        pg_server, _project(), rich_metadata(), drift.Prelude(), "mc_dmg", dialect=dialect, use_cache=True
    )
    assert len(built) == 3


def test_at_most_max_entries_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from schema_warden.schema.snapshot import Snapshot

    monkeypatch.setattr(models_cache, "MAX_ENTRIES", 3)
    keys = [
        models_cache.key([f"CREATE TABLE t{i} ()"], build="b", prelude=(), schemas=SCHEMAS, exclude_tables=())
        for i in range(5)
    ]
    for number, entry_key in enumerate(keys):
        models_cache.remember(entry_key, Snapshot())
        path = models_cache._root() / f"{entry_key}.json"
        os.utime(path, (1_000_000 + number, 1_000_000 + number))
    assert sorted(p.stem for p in models_cache._root().glob("*.json")) == sorted(keys[2:])
    assert models_cache.lookup(keys[0]) is None and models_cache.lookup(keys[4]) == Snapshot()


def test_a_failing_script_falls_back_to_create_all_and_its_error(pg_server: Server, dialect: Any) -> None:
    md = sa.MetaData()
    sa.Table("t", md, sa.Column("id", sa.Integer), sa.CheckConstraint("no_such_function(id)", name="ck"))
    side = drift.models_side(
        pg_server, _project(), md, drift.Prelude(), "mc_fail", dialect=dialect, use_cache=True
    )
    assert side.snapshot is None and side.error is not None
    assert side.error.startswith(
        "at check constraint ck of table t: function no_such_function(integer) does not exist"
    )
    assert not list(models_cache._root().glob("*.json"))


def test_check_remembers_the_models_and_still_sees_a_model_changed_since(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fixture_project import READINGS_MODELS, readings_project, write_models
    from schema_warden.commands import check as check_migrations

    ini = readings_project(tmp_path / "project")
    assert check_migrations.main(["--config", str(ini)]) == 0
    assert len(list(models_cache._root().glob("*.json"))) == 1
    assert check_migrations.main(["--config", str(ini)]) == 0
    assert len(list(models_cache._root().glob("*.json"))) == 1  # the same models: found again
    capsys.readouterr()

    models = READINGS_MODELS.replace(
        'sa.Column("device", sa.String(32)),',
        'sa.Column("device", sa.String(32)),\n    sa.Column("rssi", sa.Integer),',
    )
    write_models(tmp_path / "project", models)
    assert check_migrations.main(["--config", str(ini)]) == 1
    out = capsys.readouterr().out
    assert "+ column readings.rssi (integer, nullable)" in out


def test_what_the_models_database_is_given_first_is_part_of_the_key(
    pg_server: Server, dialect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same models on a database given other extensions, schemas or types first are
    another side: an opclass index builds with pg_trgm and fails without it."""
    built = _built(monkeypatch)
    md = sa.MetaData()
    items = sa.Table("items", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.Text))
    sa.Index("ix_items_trgm", items.c.name, postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"})
    with_trgm = drift.Prelude(extensions=(("pg_trgm", "public", "1.6"),))

    def side(prelude: Any) -> Any:
        return drift.models_side(
            pg_server, _project(), md, prelude, "mc_prelude", dialect=dialect, use_cache=True
        )

    first = side(with_trgm)
    assert first.error is None and "ix_items_trgm" in str(first.snapshot)
    assert any("pg_trgm" in s for s in first.prelude)
    assert side(with_trgm).snapshot == first.snapshot and built == ["mc_prelude"]  # found again
    bare = side(drift.Prelude())
    assert len(built) == 3  # not found: built (the script, then create_all for its words)
    assert bare.snapshot is None
    assert bare.error is not None and bare.error.startswith("at index ix_items_trgm on table items: ")
    typed = drift.Prelude(types=(("kind", "CREATE TYPE public.kind AS ENUM ('a')"),))
    assert drift.prelude_sql(typed, ()) != drift.prelude_sql(drift.Prelude(), ())
    keys = {
        models_cache.key(
            ["CREATE TABLE t ()"], build="b", prelude=drift.prelude_sql(p, ()), schemas=(), exclude_tables=()
        )
        for p in (drift.Prelude(), with_trgm, typed)
    }
    assert len(keys) == 3


def test_types_the_models_create_are_not_given_first() -> None:
    md = sa.MetaData()
    sa.Table(
        "t",
        md,
        sa.Column("own", sa.Enum("x", name="own")),
        sa.Column("theirs", postgresql.ENUM("y", name="theirs", create_type=False)),
        sa.Column("many", postgresql.ARRAY(sa.Enum("z", name="listed"))),
    )
    assert drift.types_the_models_create(md) == {"own", "listed"}
    prelude = drift.Prelude(
        types=(
            ("own", "CREATE TYPE public.own AS ENUM ('x')"),
            ("theirs", "CREATE TYPE public.theirs AS ENUM ('y')"),
        )
    )
    assert drift.prelude_sql(prelude, ("public",), drift.types_the_models_create(md)) == (
        'CREATE SCHEMA IF NOT EXISTS "public"',
        "CREATE TYPE public.theirs AS ENUM ('y')",
    )
