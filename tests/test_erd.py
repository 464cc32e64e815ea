"""``schema-warden erd``: the diagram of what the migrations build, in a real throwaway server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixture_project import Rev, make_project
from schema_warden.commands import erd

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS_SCHEMA = REPO_ROOT / "docs" / "schema.md"
README = REPO_ROOT / "README.md"

# An IoT schema with the shapes a diagram must get right: a self reference (sites nest),
# a composite primary and foreign key (devices by site and serial), a many-to-many link
# table (sensor_groups), a one-to-one (sensor_calibrations), an enum, and a table of
# another tool that the settings exclude (_prisma_migrations).
IOT_REVISIONS = (
    Rev(
        "0001",
        None,
        message="sites and devices",
        upgrade="""
            op.create_table(
                "sites",
                sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
                sa.Column("name", sa.String(64), nullable=False, unique=True),
                sa.Column("parent_id", sa.BigInteger, sa.ForeignKey("sites.id")),
            )
            op.create_table(
                "devices",
                sa.Column("site_id", sa.BigInteger, sa.ForeignKey("sites.id"), primary_key=True),
                sa.Column("serial", sa.String(32), primary_key=True),
                sa.Column("installed_at", sa.DateTime(timezone=True), server_default=sa.text("now()")),
            )
            op.create_table("_prisma_migrations", sa.Column("id", sa.String(36), primary_key=True))
        """,
        downgrade="""
            op.drop_table("_prisma_migrations")
            op.drop_table("devices")
            op.drop_table("sites")
        """,
    ),
    Rev(
        "0002",
        "0001",
        message="sensors and groups",
        upgrade="""
            op.create_table(
                "sensors",
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("site_id", sa.BigInteger, nullable=False),
                sa.Column("device_serial", sa.String(32), nullable=False),
                sa.Column("offset", sa.Numeric(6, 2)),
                sa.Column("unit", sa.Enum("C", "F", name="reading_unit"), nullable=False),
                sa.ForeignKeyConstraint(["site_id", "device_serial"], ["devices.site_id", "devices.serial"]),
            )
            op.create_table(
                "groups",
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("name", sa.Text, nullable=False),
            )
            op.create_table(
                "sensor_groups",
                sa.Column("sensor_id", sa.Integer, sa.ForeignKey("sensors.id"), primary_key=True),
                sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), primary_key=True),
            )
            op.create_table(
                "sensor_calibrations",
                sa.Column("sensor_id", sa.Integer, sa.ForeignKey("sensors.id"), primary_key=True),
                sa.Column("factor", sa.Float(precision=53), nullable=False),
            )
        """,
        downgrade="""
            op.drop_table("sensor_calibrations")
            op.drop_table("sensor_groups")
            op.drop_table("groups")
            op.drop_table("sensors")
            sa.Enum(name="reading_unit").drop(op.get_bind())
        """,
    ),
)

IOT_GOLDEN = """\
erDiagram
  devices {
    bigint site_id PK, FK
    varchar_32 serial PK
    timestamptz installed_at "nullable"
  }
  groups {
    integer id PK
    text name
  }
  sensor_calibrations {
    integer sensor_id PK, FK
    float8 factor
  }
  sensor_groups {
    integer sensor_id PK, FK
    integer group_id PK, FK
  }
  sensors {
    integer id PK
    bigint site_id FK
    varchar_32 device_serial FK
    numeric_6_2 offset "nullable"
    reading_unit unit
  }
  sites {
    bigint id PK
    varchar_64 name UK
    bigint parent_id FK "nullable"
  }
  devices ||--o{ sensors : "site_id, device_serial"
  groups ||--o{ sensor_groups : "group_id"
  sensors ||--o| sensor_calibrations : "sensor_id"
  sensors ||--o{ sensor_groups : "sensor_id"
  sites ||--o{ devices : "site_id"
  sites |o--o{ sites : "parent_id"
"""


@pytest.fixture(scope="module")
def iot_ini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("iot")
    return make_project(
        root,
        revisions=IOT_REVISIONS,
        pyproject='[tool.schema-warden]\nexclude-tables = ["_prisma_migrations"]\n',
    )


def test_golden_diagram_of_migrations_with_composite_key_self_reference_and_link_table(
    iot_ini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert erd.main(["--config", str(iot_ini)]) == 0
    out, err = capsys.readouterr()
    assert out == IOT_GOLDEN
    assert "_prisma_migrations" not in out and "alembic_version" not in out
    assert err == ""


def test_tables_patterns_limit_and_output_file(
    iot_ini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out" / "schema.md"
    args = ["--config", str(iot_ini), "--tables", "sensor*", "--tables", "sites", "--max-tables", "2"]
    code = erd.main([*args, "--format", "markdown", "--title", "Sensors", "-o", str(target)])
    assert code == 0
    out, err = capsys.readouterr()
    assert out == ""
    page = target.read_text()
    assert page.startswith("# Sensors\n\nThe tables at Alembic head `0002`")
    assert "```mermaid\nerDiagram\n" in page
    # sensors has two foreign keys among these tables, the others one each: ties go by name
    assert "  sensors {\n" in page and "  sensor_calibrations {\n" in page
    assert "  sensor_groups {\n" not in page and "  sites {\n" not in page
    note = "2 of 4 tables left out (limit 2 tables): sensor_groups, sites"
    assert f"_Note: {note}; draw them with --tables PATTERN or --max-tables N._" in page
    assert f"wrote {target}: 2 table(s)" in err
    assert f"note: {note}" in err
    assert list(target.parent.iterdir()) == [target]  # no temp file left behind


def test_max_tables_keeps_the_most_connected_tables_and_names_the_rest(
    iot_ini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # foreign-key degree: sensors 3, devices 2, sensor_groups 2, sites 2 (one is its self
    # reference), groups 1, sensor_calibrations 1; alphabetically the first three would be
    # devices, groups, sensor_calibrations, and the core table sensors would be cut
    assert erd.main(["--config", str(iot_ini), "--max-tables", "3"]) == 0
    out, err = capsys.readouterr()
    drawn = [line.split()[0] for line in out.splitlines() if line.endswith(" {")]
    assert drawn == ["devices", "sensor_groups", "sensors"]
    note = "3 of 6 tables left out (limit 3 tables): sites, groups, sensor_calibrations"
    assert out.splitlines()[:2] == [
        "erDiagram",
        f"%% {note}; draw them with --tables PATTERN or --max-tables N",
    ]
    assert '  devices ||--o{ sensors : "site_id, device_serial"' in out
    assert '  sensors ||--o{ sensor_groups : "sensor_id"' in out
    assert "groups ||--o{ sensor_groups" not in out  # groups is not drawn, nor its relation
    assert err.strip() == f"note: {note}; draw them with --tables PATTERN or --max-tables N"


def test_most_connected_ranks_by_foreign_key_degree_then_name(iot_ini: Path) -> None:
    schema = erd.schema_at_head(str(iot_ini))
    keys = sorted(schema.snapshot.tables)
    assert erd.fk_degrees(schema.snapshot, keys) == {
        "devices": 2,
        "groups": 1,
        "sensor_calibrations": 1,
        "sensor_groups": 2,
        "sensors": 3,
        "sites": 2,
    }
    kept, left_out = erd.most_connected(schema.snapshot, keys, 1)
    assert kept == ["sensors"]
    assert left_out[0] == "devices"


def test_no_table_matching_is_a_usage_error(iot_ini: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert erd.main(["--config", str(iot_ini), "--tables", "nothing*"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    first = err.splitlines()[0]
    assert first.startswith(
        "error: no table matches --tables nothing*: the tables at head are devices, groups,"
    )


def test_failing_migration_is_named_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = make_project(
        tmp_path,
        revisions=[Rev("0001", None, upgrade='op.execute("SELECT * FROM no_such_table")')],
    )
    assert erd.main(["--config", str(ini)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: revision 0001: upgrade failed, so there is no schema to draw: ")
    assert "no_such_table" in err.splitlines()[0]
    assert "Traceback" not in err


def test_readme_and_docs_schema_md_show_the_bundled_projects_current_diagram(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README.md and docs/schema.md (rendered by GitHub) must match what the migrations build."""
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text())
    fresh = tmp_path / "schema.md"
    config = str(REPO_ROOT / "alembic.ini")
    args = ["--config", config, "--update", str(readme), "--format", "markdown", "-o", str(fresh)]
    assert erd.main(args) == 0
    fix = "run `schema-warden erd --update README.md --format markdown -o docs/schema.md`"
    assert DOCS_SCHEMA.read_text() == fresh.read_text(), f"docs/schema.md is out of date: {fix}"
    assert README.read_text() == readme.read_text(), f"README.md's diagram is out of date: {fix}"
    assert f"unchanged {readme}" in capsys.readouterr().err
    assert "```mermaid\nerDiagram\n  temperature_readings {\n" in fresh.read_text()


def test_update_replaces_only_the_marked_block(iot_ini: Path, tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"# Intro\n\n{erd.BLOCK_START}\nold drawing\n{erd.BLOCK_END}\n\nmore text\n")
    assert erd.main(["--config", str(iot_ini), "--tables", "groups", "--update", str(page)]) == 0
    assert page.read_text() == (
        f"# Intro\n\n{erd.BLOCK_START}\n\n```mermaid\nerDiagram\n  groups {{\n    integer id PK\n"
        f"    text name\n  }}\n```\n\n{erd.BLOCK_END}\n\nmore text\n"
    )


def test_update_without_markers_changes_no_file(
    iot_ini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good.md", tmp_path / "bad.md"
    good.write_text(f"{erd.BLOCK_START}\nold\n{erd.BLOCK_END}\n")
    bad.write_text("no markers here\n")
    assert erd.main(["--config", str(iot_ini), "--update", str(good), "--update", str(bad)]) == 2
    assert good.read_text() == f"{erd.BLOCK_START}\nold\n{erd.BLOCK_END}\n"
    assert capsys.readouterr().err.startswith(f"error: {bad}: no diagram block to update: put the lines")


def test_command_line_prints_mermaid_for_the_bundled_project() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "schema_warden", "erd", "--tables", "temperature_*"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("erDiagram\n  temperature_readings {\n    bigint id PK\n")
    assert done.stderr == ""
