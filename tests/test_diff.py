"""diff.compare on snapshots built from dataclasses: pure logic, no server."""

from __future__ import annotations

import dataclasses

import pytest
from schema_warden.schema.diff import Change, compare, index_shape, is_widening, normalise_default
from schema_warden.schema.snapshot import Column, Constraint, EnumType, Index, Sequence, Snapshot, Table, View


def col(
    name: str, type_: str = "text", nullable: bool = True, default: str | None = None, **kw: object
) -> Column:
    return Column(name, type_, nullable, default, **kw)  # type: ignore[arg-type]


def base() -> Snapshot:
    readings = Table(
        "public",
        "readings",
        (
            col("id", "bigint", False, identity="by default"),
            col("value", "numeric(6,2)", False),
            col("unit", "character varying(1)", False, "'C'::character varying"),
            col("recorded_at", "timestamp with time zone", False, "now()"),
        ),
    )
    version = Table("public", "alembic_version", (col("version_num", "character varying(32)", False),))
    return Snapshot(
        tables={"readings": readings, "alembic_version": version},
        indexes={
            "pk_readings": Index(
                "public", "readings", "pk_readings",
                "CREATE UNIQUE INDEX pk_readings ON public.readings USING btree (id)",
                True, True, "pk_readings",
            ),
            "ix_readings_recorded_at": Index(
                "public", "readings", "ix_readings_recorded_at",
                "CREATE INDEX ix_readings_recorded_at ON public.readings USING btree (recorded_at)",
                False, False, None, ("recorded_at",),
            ),
        },
        constraints={
            "readings.pk_readings": Constraint(
                "public", "readings", "pk_readings", "primary key", "PRIMARY KEY (id)", ("id",)
            ),
            "readings.ck_readings_unit": Constraint(
                "public", "readings", "ck_readings_unit", "check",
                "CHECK (((unit)::text = ANY ((ARRAY['C'::character varying])::text[])))",
                ("unit",),
            ),
        },
        enums={"kind": EnumType("public", "kind", ("a", "b", "c"))},
        sequences={
            "readings_id_seq": Sequence("public", "readings_id_seq", "bigint", "readings.id", identity=True),
        },
        views={"recent": View("public", "recent", " SELECT readings.id FROM readings;", False)},
    )  # fmt: skip


def with_table(snap: Snapshot, table: Table) -> Snapshot:
    return dataclasses.replace(snap, tables={**snap.tables, table.name: table})


def with_column(snap: Snapshot, table: str, column: Column) -> Snapshot:
    old = snap.tables[table]
    cols = tuple(column if c.name == column.name else c for c in old.columns)
    if column.name not in {c.name for c in old.columns}:
        cols += (column,)
    return with_table(snap, dataclasses.replace(old, columns=cols))


def without_column(snap: Snapshot, table: str, name: str) -> Snapshot:
    old = snap.tables[table]
    return with_table(snap, dataclasses.replace(old, columns=tuple(c for c in old.columns if c.name != name)))


def summary(changes: list[Change]) -> list[tuple[str, str, str, bool]]:
    return [(c.kind, c.action, c.name, c.destructive) for c in changes]


def test_identical_snapshots_have_no_changes() -> None:
    assert compare(base(), base()) == []


def test_column_order_is_ignored() -> None:
    snap = base()
    table = snap.tables["readings"]
    reordered = with_table(snap, dataclasses.replace(table, columns=tuple(reversed(table.columns))))
    assert compare(snap, reordered) == []


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("now()", "CURRENT_TIMESTAMP"),
        ("transaction_timestamp()", "now()"),
        ("'C'::character varying", "'C'::text"),
        ("'C'::bpchar", "'C'::character varying"),
        ("timezone('utc'::text, CURRENT_TIMESTAMP)", "timezone('utc'::text, now())"),
    ],
)
def test_defaults_that_store_the_same_value_are_equal(a: str, b: str) -> None:
    type_ = "character varying(1)" if a.startswith("'") else "timestamp with time zone"
    before = with_column(base(), "readings", col("x", type_, True, a))
    after = with_column(base(), "readings", col("x", type_, True, b))
    assert compare(before, after) == []


@pytest.mark.parametrize(
    ("type_", "a", "b", "equal"),
    [
        ("integer", "'-1'::integer", "-1", True),
        ("bigint", "'7'::bigint", "7", True),
        ("smallint", "(1)::smallint", "1", True),
        ("integer", "0", "1", False),
        ("numeric(6,2)", "'0'::numeric", "0.00", True),
        ("numeric(6,2)", "0", "0.00", True),
        ("numeric(6,2)", "1.5", "1.50", True),
        ("numeric(6,2)", "1.5", "1.25", False),
        ("numeric", "1.5", "1.50", False),
        ("double precision", "'1.5'::double precision", "1.5", True),
        ("text", "'0'::text", "0", False),
    ],
)
def test_numeric_defaults_compare_by_value(type_: str, a: str, b: str, equal: bool) -> None:
    assert (normalise_default(a, type_) == normalise_default(b, type_)) is equal


def test_default_normalisation_keeps_real_differences() -> None:
    # a literal that spells a function name is text, not a call
    assert normalise_default("'CURRENT_TIMESTAMP'::text", "text") == "'CURRENT_TIMESTAMP'"
    assert normalise_default("CURRENT_TIMESTAMP(3)", "timestamp(3) with time zone") == "CURRENT_TIMESTAMP(3)"
    assert normalise_default("statement_timestamp()", "timestamp with time zone") != "now()"
    assert normalise_default("LOCALTIMESTAMP", "timestamp with time zone") == "LOCALTIMESTAMP"
    assert normalise_default("LOCALTIMESTAMP", "timestamp without time zone") == "now()"
    # a padded bpchar literal loses its blanks in a varchar: not the same value
    assert normalise_default("'C '::bpchar", "character varying(2)") != normalise_default(
        "'C '::character varying", "character varying(2)"
    )
    # a string cast on a non-string column is left alone
    assert normalise_default("'1'::text", "integer") == "'1'::text"
    assert normalise_default("ARRAY[]::text[]", "text[]") == normalise_default("'{}'::text[]", "text[]")
    assert normalise_default(None, "text") is None


def test_ignored_tables_are_invisible() -> None:
    snap = base()
    changed = without_column(with_column(snap, "alembic_version", col("x")), "alembic_version", "version_num")
    assert compare(snap, changed) == []
    assert summary(compare(snap, changed, ignore_tables=())) == [
        ("column", "removed", "alembic_version.version_num", True),
        ("column", "added", "alembic_version.x", False),
    ]
    no_version = dataclasses.replace(snap, tables={"readings": snap.tables["readings"]})
    assert compare(snap, no_version) == []
    assert compare(snap, changed, ignore_tables="alembic_version") == []  # one name, not letters


def test_added_and_removed_columns() -> None:
    snap = base()
    added = compare(snap, with_column(snap, "readings", col("humidity", "double precision")))
    assert summary(added) == [("column", "added", "readings.humidity", False)]
    assert added[0].line() == "+ column readings.humidity (double precision, nullable)"
    assert added[0].before is None and added[0].after == col("humidity", "double precision")

    removed = compare(snap, without_column(snap, "readings", "unit"))
    assert summary(removed) == [("column", "removed", "readings.unit", True)]
    assert removed[0].line() == (
        "- column readings.unit (character varying(1), NOT NULL, default 'C'::character varying)"
        " [destructive]"
    )


@pytest.mark.parametrize(
    ("before", "after", "widening"),
    [
        ("integer", "bigint", True),
        ("smallint", "integer", True),
        ("bigint", "integer", False),
        ("integer", "numeric", True),
        ("integer", "numeric(12,2)", True),
        ("integer", "numeric(10,2)", False),
        ("integer", "double precision", True),
        ("bigint", "double precision", False),
        ("real", "double precision", True),
        ("double precision", "real", False),
        ("numeric(6,2)", "numeric(8,2)", True),
        ("numeric(6,2)", "numeric(6,3)", False),
        ("numeric(6,2)", "numeric(5,1)", False),
        ("numeric(6,2)", "numeric", True),
        ("numeric", "numeric(20,4)", False),
        ("character varying(32)", "character varying(64)", True),
        ("character varying(64)", "character varying(32)", False),
        ("character varying(32)", "text", True),
        ("character varying", "text", True),
        ("text", "character varying", True),
        ("text", "character varying(255)", False),
        ("character(1)", "character varying(1)", True),
        ("character(2)", "character(1)", False),
        ("integer[]", "bigint[]", True),
        ("integer[]", "bigint", False),
        ("timestamp(3) with time zone", "timestamp with time zone", True),
        ("timestamp with time zone", "timestamp(3) with time zone", False),
        ("timestamp without time zone", "timestamp with time zone", False),
        ("json", "jsonb", False),
        ("text", "integer", False),
        ("mood", "text", False),
        ('"Mood"', "text", False),
    ],
)
def test_type_widening(before: str, after: str, widening: bool) -> None:
    assert is_widening(before, after) is widening


def test_column_change_lists_every_difference_in_one_line() -> None:
    snap = base()
    after = with_column(snap, "readings", col("unit", "text", True, None))
    changes = compare(snap, after)
    assert summary(changes) == [("column", "changed", "readings.unit", False)]
    assert changes[0].detail == (
        "character varying(1) -> text; now nullable; default 'C'::character varying -> none"
    )
    assert changes[0].line().startswith("~ column readings.unit (")


def test_narrowing_type_is_destructive() -> None:
    snap = base()
    changes = compare(snap, with_column(snap, "readings", col("value", "numeric(4,2)", False)))
    assert summary(changes) == [("column", "changed", "readings.value", True)]
    assert changes[0].line().endswith("[destructive]")


def test_identity_change_hides_the_implicit_sequence() -> None:
    snap = base()
    after = with_column(snap, "readings", col("id", "bigint", False, identity="always"))
    assert summary(compare(snap, after)) == [("column", "changed", "readings.id", False)]
    seq = dataclasses.replace(snap.sequences["readings_id_seq"], start=100)
    assert compare(snap, dataclasses.replace(snap, sequences={"readings_id_seq": seq})) == []


def test_table_added_and_removed() -> None:
    snap = base()
    devices = Table(
        "public", "devices", (col("id", "integer", False, "nextval('devices_id_seq'::regclass)"),)
    )
    after = dataclasses.replace(
        with_table(snap, devices),
        constraints={
            **snap.constraints,
            "devices.pk_devices": Constraint(
                "public", "devices", "pk_devices", "primary key", "PRIMARY KEY (id)", ("id",)
            ),
        },
        sequences={
            **snap.sequences,
            "devices_id_seq": Sequence("public", "devices_id_seq", "integer", "devices.id"),
        },
    )
    added = compare(snap, after)
    assert summary(added) == [("table", "added", "devices", False)]
    assert added[0].line() == "+ table devices (1 column, PK id)"
    removed = compare(after, snap)
    assert summary(removed) == [("table", "removed", "devices", True)]
    assert removed[0].line() == "- table devices (1 column, PK id) [destructive]"


def test_index_compared_by_shape_and_renames_paired() -> None:
    snap = base()
    idx = snap.indexes["ix_readings_recorded_at"]
    changed_def = dataclasses.replace(
        idx, definition=idx.definition.replace("(recorded_at)", "(recorded_at DESC)")
    )
    changes = compare(snap, dataclasses.replace(snap, indexes={**snap.indexes, idx.name: changed_def}))
    assert summary(changes) == [("index", "changed", "ix_readings_recorded_at", False)]
    assert "btree (recorded_at) -> " in changes[0].detail

    renamed = dataclasses.replace(
        idx, name="ix_when", definition=idx.definition.replace("ix_readings_recorded_at", "ix_when")
    )
    indexes = {k: v for k, v in snap.indexes.items() if k != idx.name} | {"ix_when": renamed}
    changes = compare(snap, dataclasses.replace(snap, indexes=indexes))
    assert summary(changes) == [("index", "changed", "ix_when", False)]
    assert changes[0].detail == "renamed from ix_readings_recorded_at"


def test_index_shape_drops_only_the_name() -> None:
    assert index_shape('CREATE UNIQUE INDEX "odd ""name""" ON public.t USING btree (a)') == (
        "CREATE UNIQUE INDEX ON public.t USING btree (a)"
    )
    assert index_shape("CREATE INDEX ix ON ONLY public.t USING btree (a)") == (
        "CREATE INDEX ON ONLY public.t USING btree (a)"
    )


def test_constraint_changes() -> None:
    snap = base()
    ck = snap.constraints["readings.ck_readings_unit"]
    looser = dataclasses.replace(ck, definition="CHECK ((unit IS NOT NULL))")
    changes = compare(
        snap, dataclasses.replace(snap, constraints={**snap.constraints, "readings.ck_readings_unit": looser})
    )
    assert summary(changes) == [("constraint", "changed", "readings.ck_readings_unit", False)]
    gone = {k: v for k, v in snap.constraints.items() if k != "readings.ck_readings_unit"}
    assert summary(compare(snap, dataclasses.replace(snap, constraints=gone))) == [
        ("constraint", "removed", "readings.ck_readings_unit", False)
    ]


@pytest.mark.parametrize(
    ("labels", "detail", "destructive"),
    [
        (("a", "b", "c", "d"), "added 'd'", False),
        (("a", "c"), "removed 'b'", True),
        (("a", "c", "b"), "order 'a', 'b', 'c' -> 'a', 'c', 'b'", False),
        (("x", "a", "b"), "added 'x'; removed 'c'", True),
    ],
)
def test_enum_label_changes(labels: tuple[str, ...], detail: str, destructive: bool) -> None:
    snap = base()
    after = dataclasses.replace(snap, enums={"kind": EnumType("public", "kind", labels)})
    changes = compare(snap, after)
    assert summary(changes) == [("enum", "changed", "kind", destructive)]
    assert changes[0].detail == detail


def test_views_and_ordering() -> None:
    snap = base()
    after = without_column(
        dataclasses.replace(
            snap,
            views={"recent": View("public", "recent", " SELECT 1;", True)},
            enums={},
        ),
        "readings",
        "unit",
    )
    changes = compare(snap, after)
    assert summary(changes) == [
        ("column", "removed", "readings.unit", True),
        ("enum", "removed", "kind", False),
        ("view", "changed", "recent", False),
    ]
    assert changes[2].detail == "view -> materialized view; definition changed"
    dropped = compare(snap, dataclasses.replace(snap, views={}))
    assert summary(dropped) == [("view", "removed", "recent", False)]


def test_dropped_column_folds_what_postgres_drops_with_it() -> None:
    snap = base()
    changes = compare(snap, dataclasses.replace(without_column(snap, "readings", "recorded_at"), indexes={}))
    assert summary(changes) == [("column", "removed", "readings.recorded_at", True)]
    assert changes[0].detail.endswith("; drops index ix_readings_recorded_at")
    # the same index dropped on its own is a change of its own
    alone = compare(snap, dataclasses.replace(snap, indexes={"pk_readings": snap.indexes["pk_readings"]}))
    assert summary(alone) == [("index", "removed", "ix_readings_recorded_at", False)]
    only_pk = {"readings.pk_readings": snap.constraints["readings.pk_readings"]}
    after = without_column(dataclasses.replace(snap, constraints=only_pk), "readings", "unit")
    unit_gone = compare(snap, after)
    assert [c.line() for c in unit_gone] == [
        "- column readings.unit (character varying(1), NOT NULL, default 'C'::character varying;"
        " drops constraint ck_readings_unit) [destructive]"
    ]


def test_from_dict_reads_older_and_newer_caches() -> None:
    data = base().to_dict()
    del data["tables"]["readings"]["columns"][0]["collation"]  # written before the field existed
    data["views"]["recent"]["owner"] = "app"  # written by a newer version
    assert Snapshot.from_dict(data) == base()
