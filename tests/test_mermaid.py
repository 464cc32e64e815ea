"""render/mermaid.py: snapshots drawn as Mermaid erDiagrams (pure; no server).

The last tests run the diagrams through Mermaid's own parser (tests/mermaid_check, npm
packages installed there on first use) and compare what Mermaid understood with what we
meant to draw. They are skipped only when Node.js is absent.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from schema_warden.render import mermaid
from schema_warden.schema.diff import Change, compare
from schema_warden.schema.snapshot import Column, Constraint, Index, Snapshot, Table, View

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECK_DIR = Path(__file__).resolve().parent / "mermaid_check"


# --- building snapshots by hand ----------------------------------------------------------


def col(name: str, type_: str = "integer", nullable: bool = False, default: str | None = None) -> Column:
    return Column(name=name, type=type_, nullable=nullable, default=default)


def table(name: str, *columns: Column) -> Table:
    return Table(schema="public", name=name, columns=columns)


def pk(tbl: str, *columns: str) -> Constraint:
    return Constraint(
        "public", tbl, f"pk_{tbl}", "primary key", f"PRIMARY KEY ({', '.join(columns)})", columns
    )


def unique(tbl: str, *columns: str) -> Constraint:
    name = f"uq_{tbl}_{'_'.join(columns)}"
    return Constraint("public", tbl, name, "unique", f"UNIQUE ({', '.join(columns)})", columns)


def fk(tbl: str, columns: tuple[str, ...], ref: str, ref_columns: tuple[str, ...]) -> Constraint:
    name = f"fk_{tbl}_{'_'.join(columns)}_{ref}"
    definition = f"FOREIGN KEY ({', '.join(columns)}) REFERENCES {ref}({', '.join(ref_columns)})"
    return Constraint("public", tbl, name, "foreign key", definition, columns, ref, ref_columns)


def snap(tables: list[Table], constraints: list[Constraint], indexes: list[Index] = ()) -> Snapshot:
    return Snapshot(
        tables={t.name if t.schema == "public" else f"{t.schema}.{t.name}": t for t in tables},
        constraints={f"{c.table}.{c.name}": c for c in constraints},
        indexes={i.name: i for i in indexes},
    )


# Sites nest (self reference); a device is keyed by (site, serial) and sensors point at it
# with a composite foreign key; sensors and groups are many-to-many through a link table;
# a calibration is one-to-one with its sensor; Alembic's version table is never drawn.
IOT = snap(
    [
        table(
            "sites",
            col("id", "bigint"),
            col("name", "character varying(64)"),
            col("parent_id", "bigint", True),
        ),
        table(
            "devices",
            col("site_id", "bigint"),
            col("serial", "character varying(32)"),
            col("installed_at", "timestamp with time zone", True, "now()"),
        ),
        table(
            "sensors",
            col("id"),
            col("site_id", "bigint"),
            col("device_serial", "character varying(32)"),
            col("offset", "numeric(6,2)", True),
            col("unit", "reading_unit"),
            col("tags", "text[]", True),
        ),
        table("groups", col("id"), col("name", "text")),
        table("sensor_groups", col("sensor_id"), col("group_id")),
        table(
            "sensor_calibrations",
            col("sensor_id"),
            col("factor", "double precision"),
            col("at", "timestamp(3) without time zone", True),
        ),
        table("alembic_version", col("version_num", "character varying(32)")),
    ],
    [
        pk("sites", "id"),
        unique("sites", "name"),
        fk("sites", ("parent_id",), "sites", ("id",)),
        pk("devices", "site_id", "serial"),
        fk("devices", ("site_id",), "sites", ("id",)),
        pk("sensors", "id"),
        fk("sensors", ("site_id", "device_serial"), "devices", ("site_id", "serial")),
        pk("groups", "id"),
        pk("sensor_groups", "sensor_id", "group_id"),
        fk("sensor_groups", ("sensor_id",), "sensors", ("id",)),
        fk("sensor_groups", ("group_id",), "groups", ("id",)),
        pk("sensor_calibrations", "sensor_id"),
        fk("sensor_calibrations", ("sensor_id",), "sensors", ("id",)),
        pk("alembic_version", "version_num"),
    ],
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
    timestamp_3 at "nullable"
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
    text[] tags "nullable"
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


def test_golden_composite_foreign_key_self_reference_and_link_table() -> None:
    diagram = mermaid.draw(IOT)
    assert diagram.mermaid == IOT_GOLDEN
    assert "alembic_version" not in diagram.tables
    assert diagram.left_out == ()
    assert diagram.note() is None


@pytest.mark.parametrize(
    ("pg_type", "label"),
    [
        ("character varying(64)", "varchar_64"),
        ("character varying", "varchar"),
        ("character(1)", "char_1"),
        ("numeric(6,2)", "numeric_6_2"),
        ("numeric", "numeric"),
        ("timestamp with time zone", "timestamptz"),
        ("timestamp without time zone", "timestamp"),
        ("timestamp(3) with time zone", "timestamptz_3"),
        ("time(0) without time zone", "time_0"),
        ("time with time zone", "timetz"),
        ("double precision", "float8"),
        ("bit varying(8)", "varbit_8"),
        ("integer[]", "integer[]"),
        ("character varying(16)[]", "varchar_16[]"),
        ("interval day to second", "interval_day_to_second"),
        ("other.mood", "other_mood"),
        ('"Mood"', "Mood"),
        ("jsonb", "jsonb"),
        ("pk", "t_pk"),
    ],
)
def test_type_label_is_one_mermaid_word(pg_type: str, label: str) -> None:
    assert mermaid.type_label(pg_type) == label


def test_names_mermaid_would_misread_are_quoted_or_rewritten() -> None:
    assert mermaid.entity_name("readings") == "readings"
    assert mermaid.entity_name("end") == '"end"'  # a Mermaid key word
    assert mermaid.entity_name("Class") == '"Class"'
    assert mermaid.entity_name("other.devices") == '"other.devices"'
    assert mermaid.attribute_name("pk") == "pk_"
    assert mermaid.attribute_name("1st") == "_1st"
    assert mermaid.attribute_name("max temp") == "max_temp"


CHILDREN = ("required", "optional", "one_to_one", "by_index")


def test_cardinality_follows_nullability_and_uniqueness() -> None:
    schema = snap(
        [
            table("devices", col("id")),
            table("required", col("id"), col("device_id")),
            table("optional", col("id"), col("device_id", nullable=True)),
            table("one_to_one", col("id"), col("device_id")),
            table("by_index", col("id"), col("device_id", nullable=True)),
        ],
        [pk(t, "id") for t in ("devices", "required", "optional", "one_to_one", "by_index")]
        + [
            fk(t, ("device_id",), "devices", ("id",))
            for t in ("required", "optional", "one_to_one", "by_index")
        ]
        + [unique("one_to_one", "device_id")],
        [
            Index(
                "public",
                "by_index",
                "ix_by_index_device_id",
                "CREATE UNIQUE INDEX ix_by_index_device_id ON public.by_index USING btree (device_id)",
                unique=True,
                primary=False,
            )
        ],
    )
    lines = [line.strip() for line in mermaid.draw(schema).mermaid.splitlines() if "--" in line]
    assert lines == [
        'devices |o--o| by_index : "device_id"',
        'devices ||--o| one_to_one : "device_id"',
        'devices |o--o{ optional : "device_id"',
        'devices ||--o{ required : "device_id"',
    ]


def test_partial_unique_index_does_not_make_a_column_unique() -> None:
    schema = snap(
        [table("t", col("id"), col("code", "text"))],
        [pk("t", "id")],
        [
            Index(
                "public",
                "t",
                "uq_live",
                "CREATE UNIQUE INDEX uq_live ON public.t USING btree (code) WHERE (code <> ''::text)",
                unique=True,
                primary=False,
            )
        ],
    )
    assert "    text code\n" in mermaid.draw(schema).mermaid


def test_tables_patterns_filter_and_relations_to_undrawn_tables_are_left_out() -> None:
    diagram = mermaid.draw(IOT, tables=["sensor*", "groups"])
    assert diagram.tables == ("groups", "sensor_calibrations", "sensor_groups", "sensors")
    assert "devices ||--o{" not in diagram.mermaid
    assert 'groups ||--o{ sensor_groups : "group_id"' in diagram.mermaid
    assert "    varchar_32 device_serial FK\n" in diagram.mermaid  # still a foreign key


def test_limit_draws_first_tables_and_notes_the_rest() -> None:
    diagram = mermaid.draw(IOT, max_tables=2)
    assert diagram.tables == ("devices", "groups")
    assert diagram.left_out == ("sensor_calibrations", "sensor_groups", "sensors", "sites")
    note = diagram.note()
    assert note is not None
    assert note.startswith("4 of 6 tables left out (limit 2 tables): sensor_calibrations, sensor_groups,")
    assert "--tables PATTERN" in note
    assert f"%% {note}\n" in diagram.mermaid
    page = mermaid.markdown(diagram, title="Schema")
    assert page.startswith("# Schema\n\n```mermaid\nerDiagram\n")
    assert page.endswith(f"```\n\n_Note: {note}._\n")


# --- the diff diagram --------------------------------------------------------------------

BEFORE = snap(
    [
        table("devices", col("id"), col("name", "text")),
        table(
            "readings",
            col("id"),
            col("device_id"),
            col("legacy", "text", True),
            col("unit", "character varying(1)", True),
            col("value", "double precision"),
        ),
        table("alerts", col("id"), col("reading_id")),
        table("firmware", col("id"), col("device_id"), col("version", "text")),
        table("old_log", col("id"), col("message", "text")),
        table("unrelated", col("id")),
    ],
    [
        pk("devices", "id"),
        pk("readings", "id"),
        fk("readings", ("device_id",), "devices", ("id",)),
        pk("alerts", "id"),
        fk("alerts", ("reading_id",), "readings", ("id",)),
        pk("firmware", "id"),
        fk("firmware", ("device_id",), "devices", ("id",)),
        pk("old_log", "id"),
        pk("unrelated", "id"),
    ],
)
AFTER = snap(
    [
        table("devices", col("id"), col("name", "text")),
        table(
            "readings",
            col("id"),
            col("device_id"),
            col("unit", "text"),
            col("value", "double precision"),
            col("humidity", "real", True),
        ),
        table("alerts", col("id"), col("reading_id")),
        table("firmware", col("id"), col("device_id"), col("version", "text")),
        table("sites", col("id"), col("name", "text")),
        table("unrelated", col("id")),
    ],
    [
        pk("devices", "id"),
        pk("readings", "id"),
        fk("readings", ("device_id",), "devices", ("id",)),
        pk("alerts", "id"),
        fk("alerts", ("reading_id",), "readings", ("id",)),
        pk("firmware", "id"),
        fk("firmware", ("device_id",), "devices", ("id",)),
        pk("sites", "id"),
        pk("unrelated", "id"),
    ],
)
_ATTRIBUTE = re.compile(
    r'^    (?P<type>\S+) (?P<name>\S+)(?: (?P<keys>[A-Z, ]+?))?(?: "(?P<comment>[^"]*)")?$'
)
_DIFF_MARK = re.compile(r"^(added|removed|changed(: .*)?)$")


def _entities(text: str) -> dict[str, dict[str, str]]:
    """{table: {column: comment}} of our own Mermaid output."""
    entities: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("  ") and line.endswith(" {"):
            current = entities.setdefault(line.strip()[:-2].strip('"'), {})
        elif current is not None and line.startswith("    "):
            match = _ATTRIBUTE.match(line)
            assert match, line
            current[match["name"]] = match["comment"] or ""
    return entities


def _mermaid_of(block: str) -> str:
    return block.split("```mermaid\n", 1)[1].split("```", 1)[0]


def test_diff_diagram_marks_exactly_the_changed_columns() -> None:
    changes = compare(BEFORE, AFTER)
    block = mermaid.diff_diagram(BEFORE, AFTER, changes, max_chars=None)
    assert block is not None
    assert block.startswith("<details><summary>ER diagram of the touched tables</summary>\n\n```mermaid\n")
    entities = _entities(_mermaid_of(block))
    marked = {
        (tbl, column, comment.split(", ")[0])
        for tbl, columns in entities.items()
        for column, comment in columns.items()
        if _DIFF_MARK.match(comment.split(", ")[0])
    }
    assert marked == {
        ("readings", "humidity", "added"),
        ("readings", "legacy", "removed"),
        ("readings", "unit", "changed: varchar_1 to text"),
        ("old_log", "id", "removed"),
        ("old_log", "message", "removed"),
        ("sites", "id", "added"),
        ("sites", "name", "added"),
    }
    # the changed column's comment says all that changed (it lost its nullability too)
    assert entities["readings"]["unit"] == "changed: varchar_1 to text, now NOT NULL"
    # touched tables in full, neighbours (one foreign key away) with key columns only,
    # tables with no link to the change not at all
    assert set(entities) == {"readings", "old_log", "sites", "devices", "alerts"}
    assert list(entities["readings"]) == ["id", "device_id", "unit", "value", "humidity", "legacy"]
    assert entities["devices"] == {"id": ""}
    assert entities["alerts"] == {"id": "", "reading_id": ""}


def test_diff_diagram_marks_foreign_keys_added_and_removed() -> None:
    after = snap(
        list(AFTER.tables.values()),
        [c for c in AFTER.constraints.values() if c.table != "firmware" or c.type != "foreign key"]
        + [fk("sites", ("id",), "devices", ("id",))],
    )
    changes = compare(AFTER, after)
    block = mermaid.diff_diagram(AFTER, after, changes)
    assert block is not None
    assert 'devices ||--o{ firmware : "device_id (removed)"' in block
    assert 'devices ||--o| sites : "id (added)"' in block
    assert _entities(_mermaid_of(block))["firmware"]["device_id"] == ""  # no column changed


def test_diff_diagram_skips_neighbours_the_snapshots_leave_out() -> None:
    # readings points at a table excluded from the snapshots (exclude-tables)
    after = snap(
        list(AFTER.tables.values()),
        [*AFTER.constraints.values(), fk("readings", ("id",), "_prisma_migrations", ("id",))],
    )
    block = mermaid.diff_diagram(BEFORE, after, compare(BEFORE, after))
    assert block is not None
    assert "_prisma_migrations" not in block
    assert "readings {" in block


def test_diff_diagram_is_none_when_no_table_is_touched() -> None:
    assert mermaid.diff_diagram(AFTER, AFTER, [], max_chars=None) is None
    view = View("public", "v", "SELECT 1", False)
    with_view = Snapshot(tables=AFTER.tables, constraints=AFTER.constraints, views={"v": view})
    changes = compare(AFTER, with_view)
    assert [c.kind for c in changes] == ["view"]
    assert mermaid.diff_diagram(AFTER, with_view, changes, max_chars=None) is None


def test_diff_diagram_gives_way_to_a_note_when_the_comment_has_no_room() -> None:
    changes = compare(BEFORE, AFTER)
    block = mermaid.diff_diagram(BEFORE, AFTER, changes, max_chars=None)
    assert block is not None
    assert mermaid.diff_diagram(BEFORE, AFTER, changes, max_chars=len(block)) == block
    note = mermaid.diff_diagram(BEFORE, AFTER, changes, max_chars=len(block) - 1)
    assert note == (
        "_ER diagram of the touched tables left out: it would take this comment past GitHub's "
        "65,536-character limit._\n"
    )
    assert mermaid.diff_diagram(BEFORE, AFTER, changes, max_chars=len(note) - 1) is None


def test_changed_mark_of_a_column_change_built_by_hand() -> None:
    change = Change(
        "column",
        "changed",
        "readings.unit",
        "readings",
        "character varying(1) -> text",
        False,
        before=col("unit", "character varying(1)", True, "'C'::character varying"),
        after=col("unit", "text", True, "'C'::text"),
    )
    block = mermaid.diff_diagram(BEFORE, AFTER, [change])
    assert block is not None
    # the default is the same value in both ('C'), so only the type is named
    assert '    text unit "changed: varchar_1 to text"\n' in block


# --- Mermaid's own parser ----------------------------------------------------------------


@pytest.fixture(scope="module")
def mermaid_parser():
    """Run tests/mermaid_check/check.mjs on files; npm installs its packages on first use."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: the Mermaid syntax check runs Mermaid's parser under node")
    if not (CHECK_DIR / "node_modules" / "mermaid" / "package.json").is_file():
        npm = shutil.which("npm")
        assert npm is not None, "node is installed but npm is not: install npm to run the Mermaid check"
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CHECK_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"npm ci in {CHECK_DIR} failed:\n{done.stderr}"

    def parse(files: list[Path]) -> tuple[int, list[dict]]:
        done = subprocess.run(
            [node, str(CHECK_DIR / "check.mjs"), *map(str, files)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode in (0, 1), done.stderr
        return done.returncode, json.loads(done.stdout)

    return parse


def _expected(text: str) -> dict[str, list[tuple[str, str, list[str], str]]]:
    """What our text means, line by line: {entity: [(type, name, keys, comment)]}."""
    expected: dict[str, list[tuple[str, str, list[str], str]]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("  ") and line.endswith(" {"):
            current = expected.setdefault(line.strip()[:-2].strip('"'), [])
        elif current is not None and line.startswith("    "):
            match = _ATTRIBUTE.match(line)
            assert match, line
            keys = [k.strip() for k in match["keys"].split(",")] if match["keys"] else []
            current.append((match["type"], match["name"], keys, match["comment"] or ""))
    return expected


def test_mermaid_parser_reads_every_diagram_as_meant(mermaid_parser, tmp_path: Path) -> None:
    tricky = snap(
        [
            table("end", col("id"), col("pk", "text"), col("1st", "numeric(10,0)", True)),
            Table("other", "devices", (col("id"), col("end_id"))),
            table("class", col("id"), col("class", "interval day to second")),
        ],
        [
            pk("end", "id"),
            pk("class", "id"),
            Constraint("other", "other.devices", "pk", "primary key", "PRIMARY KEY (id)", ("id",)),
            Constraint("other", "other.devices", "fk", "foreign key", "FK", ("end_id",), "end", ("id",)),
        ],
    )
    diff = mermaid.diff_diagram(BEFORE, AFTER, compare(BEFORE, AFTER))
    assert diff is not None
    texts = {
        "iot.mmd": IOT_GOLDEN,
        "tricky.mmd": mermaid.draw(tricky).mermaid,
        "limited.mmd": mermaid.draw(IOT, max_tables=2).mermaid,
        "diff.md": diff,
    }
    files = []
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
        files.append(tmp_path / name)
    files += [REPO_ROOT / "docs" / "schema.md", REPO_ROOT / "README.md"]
    code, results = mermaid_parser(files)
    failures = [f"{Path(r['file']).name}: {r['error']}" for r in results if not r["ok"]]
    assert code == 0 and not failures, failures
    # every ```mermaid block of README.md parses (its other examples too); test_erd keeps
    # the schema diagram in it current
    assert {Path(r["file"]).name for r in results} == {f.name for f in files}
    by_file = {Path(r["file"]).name: r for r in results if r["file"] != str(REPO_ROOT / "README.md")}
    for name, text in texts.items():
        source = _mermaid_of(text) if name.endswith(".md") else text
        parsed = by_file[name]
        assert parsed["type"] == "er"
        understood = {
            entity: [(a["type"], a["name"], a["keys"], a["comment"]) for a in attrs]
            for entity, attrs in parsed["entities"].items()
        }
        assert understood == _expected(source), name
    iot = {
        (r["from"], r["fromCard"], r["toCard"], r["to"], r["label"])
        for r in by_file["iot.mmd"]["relationships"]
    }
    assert iot == {
        ("devices", "ONLY_ONE", "ZERO_OR_MORE", "sensors", "site_id, device_serial"),
        ("groups", "ONLY_ONE", "ZERO_OR_MORE", "sensor_groups", "group_id"),
        ("sensors", "ONLY_ONE", "ZERO_OR_ONE", "sensor_calibrations", "sensor_id"),
        ("sensors", "ONLY_ONE", "ZERO_OR_MORE", "sensor_groups", "sensor_id"),
        ("sites", "ONLY_ONE", "ZERO_OR_MORE", "devices", "site_id"),
        ("sites", "ZERO_OR_ONE", "ZERO_OR_MORE", "sites", "parent_id"),
    }
    assert set(by_file["tricky.mmd"]["entities"]) == {"end", "other.devices", "class"}
    assert by_file["schema.md"]["entities"], "docs/schema.md draws no table"


def test_mermaid_parser_rejects_a_broken_diagram(mermaid_parser, tmp_path: Path) -> None:
    # what an unquoted key word would do: proves the check can fail
    broken = tmp_path / "broken.mmd"
    broken.write_text("erDiagram\n  end {\n    integer id PK\n  }\n")
    code, results = mermaid_parser([broken])
    assert code == 1
    assert results[0]["ok"] is False and "error" in results[0]["error"].lower()
