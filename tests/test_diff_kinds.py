# ruff: noqa: E501  (a table of SQL statements and the lines they give)
"""Every object kind in the diff, on real Postgres: for each kind a case that adds it, one that
changes it and one that drops it. Each case builds two databases (the second one with the change
on top), snapshots both and asserts the one exact line of the diff."""

from __future__ import annotations

import uuid

import psycopg2
import pytest
from schema_warden.proof.drift import model_blind_spots
from schema_warden.render.diff import DiffReport, Side, render_json, render_markdown, render_text
from schema_warden.schema import diff, snapshot
from schema_warden.server.postgres import Server

SCHEMAS = ("public", "iot")
BASE = """
CREATE SCHEMA iot;
CREATE TABLE readings (id int PRIMARY KEY, value numeric, owner text, area box);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
"""
FN = "CREATE FUNCTION doubled(v numeric) RETURNS numeric LANGUAGE sql AS 'SELECT v * 2'"
PROC = "CREATE PROCEDURE purge(days integer) LANGUAGE sql AS 'DELETE FROM readings WHERE id < days'"
TRG = "CREATE TRIGGER trg_touch BEFORE UPDATE ON readings FOR EACH ROW EXECUTE FUNCTION touch()"
POL = "CREATE POLICY own_rows ON readings FOR SELECT TO reader USING (owner = current_user)"
DOM = "CREATE DOMAIN positive AS numeric CHECK (VALUE > 0)"
VIEW = "CREATE VIEW big AS SELECT id FROM readings WHERE value > 10"
MV = "CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n FROM readings"
PART = (
    "CREATE TABLE events (id int NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);"
    "CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')"
)
SEQ = "CREATE SEQUENCE counter INCREMENT 5 MAXVALUE 1000"
# (id, setup on both sides, what the second database does on top, the diff's one line)
CASES = [
    (
        "function-added",
        "",
        "CREATE FUNCTION doubled(v numeric) RETURNS numeric LANGUAGE sql AS 'SELECT v * 2'",
        "+ function doubled(v numeric) (returns numeric, language sql, volatile)",
    ),
    (
        "function-changed",
        "CREATE FUNCTION doubled(v numeric) RETURNS numeric LANGUAGE sql AS 'SELECT v * 2'",
        "CREATE OR REPLACE FUNCTION doubled(v numeric) RETURNS numeric LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS 'SELECT v * 3'",
        "~ function doubled(v numeric) (body changed; volatility volatile -> stable; now security definer; set none -> search_path=public)",
    ),
    (
        "function-dropped",
        "CREATE FUNCTION doubled(v numeric) RETURNS numeric LANGUAGE sql AS 'SELECT v * 2'",
        "DROP FUNCTION doubled",
        "- function doubled(v numeric) (returns numeric, language sql, volatile)",
    ),
    (
        "procedure-added",
        "",
        "CREATE PROCEDURE purge(days integer) LANGUAGE sql AS 'DELETE FROM readings WHERE id < days'",
        "+ procedure purge(IN days integer) (language sql)",
    ),
    (
        "procedure-changed",
        "CREATE PROCEDURE purge(days integer) LANGUAGE sql AS 'DELETE FROM readings WHERE id < days'",
        "CREATE OR REPLACE PROCEDURE purge(days integer) LANGUAGE sql AS 'DELETE FROM readings WHERE id <= days'",
        "~ procedure purge(IN days integer) (body changed)",
    ),
    (
        "procedure-dropped",
        "CREATE PROCEDURE purge(days integer) LANGUAGE sql AS 'DELETE FROM readings WHERE id < days'",
        "DROP PROCEDURE purge",
        "- procedure purge(IN days integer) (language sql)",
    ),
    (
        "trigger-added",
        "",
        "CREATE TRIGGER trg_touch BEFORE UPDATE ON readings FOR EACH ROW EXECUTE FUNCTION touch()",
        "+ trigger readings.trg_touch (BEFORE UPDATE for each row, executes touch())",
    ),
    (
        "trigger-changed",
        "CREATE TRIGGER trg_touch BEFORE UPDATE ON readings FOR EACH ROW EXECUTE FUNCTION touch()",
        "ALTER TABLE readings DISABLE TRIGGER trg_touch",
        "~ trigger readings.trg_touch (enabled -> disabled)",
    ),
    (
        "trigger-events-changed",
        "CREATE TRIGGER trg_touch BEFORE UPDATE ON readings FOR EACH ROW EXECUTE FUNCTION touch()",
        "DROP TRIGGER trg_touch ON readings; CREATE TRIGGER trg_touch BEFORE INSERT OR UPDATE ON readings FOR EACH ROW EXECUTE FUNCTION touch()",
        "~ trigger readings.trg_touch (BEFORE UPDATE -> BEFORE INSERT OR UPDATE)",
    ),
    (
        "trigger-dropped",
        "CREATE TRIGGER trg_touch BEFORE UPDATE ON readings FOR EACH ROW EXECUTE FUNCTION touch()",
        "DROP TRIGGER trg_touch ON readings",
        "- trigger readings.trg_touch (BEFORE UPDATE for each row, executes touch())",
    ),
    (
        "row-security-added",
        "",
        "ALTER TABLE readings ENABLE ROW LEVEL SECURITY",
        "+ row security readings (enabled)",
    ),
    (
        "row-security-changed",
        "ALTER TABLE readings ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE readings FORCE ROW LEVEL SECURITY",
        "~ row security readings (enabled -> enabled, forced)",
    ),
    (
        "row-security-dropped",
        "ALTER TABLE readings ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE readings DISABLE ROW LEVEL SECURITY",
        "- row security readings (enabled)",
    ),
    (
        "policy-added",
        "",
        "CREATE POLICY own_rows ON readings FOR SELECT TO reader USING (owner = current_user)",
        "+ policy readings.own_rows (for SELECT to reader, USING (owner = CURRENT_USER))",
    ),
    (
        "policy-changed",
        "CREATE POLICY own_rows ON readings FOR SELECT TO reader USING (owner = current_user)",
        "ALTER POLICY own_rows ON readings TO reader, app USING (owner = session_user)",
        "~ policy readings.own_rows (to reader -> reader, app; USING (owner = CURRENT_USER) -> (owner = SESSION_USER))",
    ),
    (
        "policy-dropped",
        "CREATE POLICY own_rows ON readings FOR SELECT TO reader USING (owner = current_user)",
        "DROP POLICY own_rows ON readings",
        "- policy readings.own_rows (for SELECT to reader, USING (owner = CURRENT_USER))",
    ),
    (
        "table-grant-added",
        "",
        "GRANT SELECT ON readings TO reader",
        "+ grant on table readings to reader (SELECT)",
    ),
    (
        "table-grant-changed",
        "GRANT SELECT ON readings TO reader",
        "GRANT INSERT ON readings TO reader",
        "~ grant on table readings to reader (SELECT -> INSERT, SELECT)",
    ),
    (
        "table-grant-dropped",
        "GRANT SELECT ON readings TO reader",
        "REVOKE SELECT ON readings FROM reader",
        "- grant on table readings to reader (SELECT)",
    ),
    (
        "column-grant-added",
        "",
        "GRANT UPDATE (value) ON readings TO reader",
        "+ grant on column readings.value to reader (UPDATE)",
    ),
    (
        "column-grant-changed",
        "GRANT UPDATE (value) ON readings TO reader",
        "GRANT SELECT (value) ON readings TO reader",
        "~ grant on column readings.value to reader (UPDATE -> SELECT, UPDATE)",
    ),
    (
        "column-grant-dropped",
        "GRANT UPDATE (value) ON readings TO reader",
        "REVOKE UPDATE (value) ON readings FROM reader",
        "- grant on column readings.value to reader (UPDATE)",
    ),
    (
        "sequence-grant-added",
        "CREATE SEQUENCE counter INCREMENT 5 MAXVALUE 1000",
        "GRANT USAGE ON SEQUENCE counter TO reader",
        "+ grant on sequence counter to reader (USAGE)",
    ),
    (
        "sequence-grant-changed",
        "CREATE SEQUENCE counter INCREMENT 5 MAXVALUE 1000; GRANT USAGE ON SEQUENCE counter TO reader",
        "GRANT SELECT ON SEQUENCE counter TO reader",
        "~ grant on sequence counter to reader (USAGE -> SELECT, USAGE)",
    ),
    (
        "sequence-grant-dropped",
        "CREATE SEQUENCE counter INCREMENT 5 MAXVALUE 1000; GRANT USAGE ON SEQUENCE counter TO reader",
        "REVOKE USAGE ON SEQUENCE counter FROM reader",
        "- grant on sequence counter to reader (USAGE)",
    ),
    (
        "schema-grant-added",
        "",
        "GRANT USAGE ON SCHEMA iot TO reader",
        "+ grant on schema iot to reader (USAGE)",
    ),
    (
        "schema-grant-changed",
        "GRANT USAGE ON SCHEMA iot TO reader",
        "GRANT CREATE ON SCHEMA iot TO reader",
        "~ grant on schema iot to reader (USAGE -> CREATE, USAGE)",
    ),
    (
        "schema-grant-dropped",
        "GRANT USAGE ON SCHEMA iot TO reader",
        "REVOKE USAGE ON SCHEMA iot FROM reader",
        "- grant on schema iot to reader (USAGE)",
    ),
    (
        "function-grant-added",
        "",
        "GRANT EXECUTE ON FUNCTION touch() TO reader",
        "+ grant on function touch() to reader (EXECUTE)",
    ),
    (
        "function-grant-changed",
        "",
        "REVOKE EXECUTE ON FUNCTION touch() FROM PUBLIC",
        "~ grant on function touch() to PUBLIC (EXECUTE -> none)",
    ),
    (
        "function-grant-dropped",
        "GRANT EXECUTE ON FUNCTION touch() TO reader",
        "REVOKE EXECUTE ON FUNCTION touch() FROM reader",
        "- grant on function touch() to reader (EXECUTE)",
    ),
    (
        "default-privileges-added",
        "",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO reader",
        "+ default privileges for tables created by postgres in schema public to reader (SELECT)",
    ),
    (
        "default-privileges-changed",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO reader",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT INSERT ON TABLES TO reader",
        "~ default privileges for tables created by postgres in schema public to reader (SELECT -> INSERT, SELECT)",
    ),
    (
        "default-privileges-dropped",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO reader",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM reader",
        "- default privileges for tables created by postgres in schema public to reader (SELECT)",
    ),
    (
        "domain-added",
        "",
        "CREATE DOMAIN positive AS numeric CHECK (VALUE > 0)",
        "+ domain positive (numeric, constraint positive_check CHECK ((VALUE > (0)::numeric)))",
    ),
    (
        "domain-changed",
        "CREATE DOMAIN positive AS numeric CHECK (VALUE > 0)",
        "ALTER DOMAIN positive SET NOT NULL; ALTER DOMAIN positive SET DEFAULT 1",
        "~ domain positive (now NOT NULL; default none -> 1)",
    ),
    (
        "domain-dropped",
        "CREATE DOMAIN positive AS numeric CHECK (VALUE > 0)",
        "DROP DOMAIN positive",
        "- domain positive (numeric, constraint positive_check CHECK ((VALUE > (0)::numeric)))",
    ),
    ("extension-added", "", "CREATE EXTENSION pg_trgm", "+ extension pg_trgm (version 1.6, schema public)"),
    (
        "extension-changed",
        "CREATE EXTENSION pg_trgm VERSION '1.5'",
        "ALTER EXTENSION pg_trgm UPDATE TO '1.6'",
        "~ extension pg_trgm (version 1.5 -> 1.6)",
    ),
    (
        "extension-dropped",
        "CREATE EXTENSION pg_trgm",
        "DROP EXTENSION pg_trgm",
        "- extension pg_trgm (version 1.6, schema public)",
    ),
    ("view-added", "", "CREATE VIEW big AS SELECT id FROM readings WHERE value > 10", "+ view big (view)"),
    (
        "view-changed",
        "CREATE VIEW big AS SELECT id FROM readings WHERE value > 10",
        "CREATE OR REPLACE VIEW big AS SELECT id FROM readings WHERE value > 20",
        "~ view big (definition changed)",
    ),
    (
        "view-dropped",
        "CREATE VIEW big AS SELECT id FROM readings WHERE value > 10",
        "DROP VIEW big",
        "- view big (view)",
    ),
    (
        "materialized-view-added",
        "",
        "CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n FROM readings",
        "+ view totals (materialized view)",
    ),
    (
        "materialized-view-changed",
        "CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n FROM readings",
        "DROP MATERIALIZED VIEW totals; CREATE MATERIALIZED VIEW totals AS SELECT count(id) AS n FROM readings",
        "~ view totals (definition changed)",
    ),
    (
        "materialized-view-dropped",
        "CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n FROM readings",
        "DROP MATERIALIZED VIEW totals",
        "- view totals (materialized view)",
    ),
    (
        "materialized-view-index-added",
        "CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n FROM readings",
        "CREATE UNIQUE INDEX ix_totals ON totals (n)",
        "+ index ix_totals (on totals: unique btree (n))",
    ),
    (
        "materialized-view-index-changed",
        "CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n FROM readings; CREATE UNIQUE INDEX ix_totals ON totals (n)",
        "DROP INDEX ix_totals; CREATE INDEX ix_totals ON totals (n DESC)",
        "~ index ix_totals (on totals: unique btree (n) -> on totals: btree (n DESC))",
    ),
    (
        "materialized-view-index-dropped",
        "CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n FROM readings; CREATE UNIQUE INDEX ix_totals ON totals (n)",
        "DROP INDEX ix_totals",
        "- index ix_totals (on totals: unique btree (n))",
    ),
    (
        "partition-added",
        "CREATE TABLE events (id int NOT NULL, at date NOT NULL) PARTITION BY RANGE (at)",
        "CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
        "+ table events_2026 (2 columns, partition of events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01'))",
    ),
    (
        "partition-changed",
        "CREATE TABLE events (id int NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
        "ALTER TABLE events DETACH PARTITION events_2026; ALTER TABLE events ATTACH PARTITION events_2026 FOR VALUES FROM ('2026-01-01') TO ('2026-07-01')",
        "~ table events_2026 (bound FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') -> FOR VALUES FROM ('2026-01-01') TO ('2026-07-01'))",
    ),
    (
        "partition-detached",
        "CREATE TABLE events (id int NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
        "ALTER TABLE events DETACH PARTITION events_2026",
        "~ table events_2026 (no longer a partition of events)",
    ),
    (
        "partition-dropped",
        "CREATE TABLE events (id int NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
        "DROP TABLE events_2026",
        "- table events_2026 (2 columns, partition of events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')) [destructive]",
    ),
    (
        "partitioned-table-added",
        "",
        "CREATE TABLE events (id int NOT NULL, at date NOT NULL) PARTITION BY RANGE (at)",
        "+ table events (2 columns, partitioned by RANGE (at))",
    ),
    (
        "comment-on-index-added",
        "CREATE INDEX ix_value ON readings (value)",
        "COMMENT ON INDEX ix_value IS 'for range scans'",
        "+ comment on index ix_value ('for range scans')",
    ),
    (
        "comment-on-index-changed",
        "CREATE INDEX ix_value ON readings (value); COMMENT ON INDEX ix_value IS 'for range scans'",
        "COMMENT ON INDEX ix_value IS 'for sorting'",
        "~ comment on index ix_value ('for range scans' -> 'for sorting')",
    ),
    (
        "comment-on-index-dropped",
        "CREATE INDEX ix_value ON readings (value); COMMENT ON INDEX ix_value IS 'for range scans'",
        "COMMENT ON INDEX ix_value IS NULL",
        "- comment on index ix_value ('for range scans')",
    ),
    (
        "comment-on-constraint",
        "",
        "COMMENT ON CONSTRAINT readings_pkey ON readings IS 'one row per id'",
        "+ comment on constraint readings.readings_pkey ('one row per id')",
    ),
    (
        "comment-on-function",
        "",
        "COMMENT ON FUNCTION touch() IS 'sets updated_at'",
        "+ comment on function touch() ('sets updated_at')",
    ),
    (
        "comment-on-trigger",
        "CREATE TRIGGER trg_touch BEFORE UPDATE ON readings FOR EACH ROW EXECUTE FUNCTION touch()",
        "COMMENT ON TRIGGER trg_touch ON readings IS 'keeps updated_at'",
        "+ comment on trigger readings.trg_touch ('keeps updated_at')",
    ),
    (
        "comment-on-policy",
        "CREATE POLICY own_rows ON readings FOR SELECT TO reader USING (owner = current_user)",
        "COMMENT ON POLICY own_rows ON readings IS 'readers see their rows'",
        "+ comment on policy readings.own_rows ('readers see their rows')",
    ),
    ("comment-on-schema", "", "COMMENT ON SCHEMA iot IS 'devices'", "+ comment on schema iot ('devices')"),
    (
        "comment-on-domain",
        "CREATE DOMAIN positive AS numeric CHECK (VALUE > 0)",
        "COMMENT ON DOMAIN positive IS 'above zero'",
        "+ comment on domain positive ('above zero')",
    ),
    (
        "comment-on-type",
        "CREATE TYPE mood AS ENUM ('ok')",
        "COMMENT ON TYPE mood IS 'how it feels'",
        "+ comment on type mood ('how it feels')",
    ),
    (
        "comment-on-view",
        "CREATE VIEW big AS SELECT id FROM readings WHERE value > 10",
        "COMMENT ON VIEW big IS 'large values'",
        "+ comment on view big ('large values')",
    ),
    (
        "comment-on-materialized-view",
        "CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n FROM readings",
        "COMMENT ON MATERIALIZED VIEW totals IS 'row count'",
        "+ comment on materialized view totals ('row count')",
    ),
    (
        "comment-on-sequence",
        "CREATE SEQUENCE counter INCREMENT 5 MAXVALUE 1000",
        "COMMENT ON SEQUENCE counter IS 'ticks'",
        "+ comment on sequence counter ('ticks')",
    ),
    (
        "comment-on-extension",
        "CREATE EXTENSION pg_trgm",
        "COMMENT ON EXTENSION pg_trgm IS 'fuzzy search'",
        "~ comment on extension pg_trgm ('text similarity measurement and index searching based on tr…' -> 'fuzzy search')",
    ),
    (
        "comment-on-table",
        "",
        "COMMENT ON TABLE readings IS 'sensor values'",
        "~ table readings (comment added)",
    ),
    (
        "comment-on-column",
        "",
        "COMMENT ON COLUMN readings.value IS 'in units'",
        "~ column readings.value (comment added)",
    ),
    (
        "generated-column-added",
        "",
        "ALTER TABLE readings ADD COLUMN double numeric GENERATED ALWAYS AS (value * 2) STORED",
        "+ column readings.double (numeric, nullable, generated as (value * (2)::numeric))",
    ),
    (
        "generated-column-changed",
        "ALTER TABLE readings ADD COLUMN double numeric GENERATED ALWAYS AS (value * 2) STORED",
        "ALTER TABLE readings DROP COLUMN double; ALTER TABLE readings ADD COLUMN double numeric GENERATED ALWAYS AS (value * 3) STORED",
        "~ column readings.double (generated (value * (2)::numeric) -> (value * (3)::numeric))",
    ),
    (
        "generated-column-dropped",
        "ALTER TABLE readings ADD COLUMN double numeric GENERATED ALWAYS AS (value * 2) STORED",
        "ALTER TABLE readings DROP COLUMN double",
        "- column readings.double (numeric, nullable, generated as (value * (2)::numeric)) [destructive]",
    ),
    (
        "identity-column-added",
        "",
        "ALTER TABLE readings ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY",
        "+ column readings.seq (bigint, NOT NULL, identity always)",
    ),
    (
        "identity-column-changed",
        "ALTER TABLE readings ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY",
        "ALTER TABLE readings ALTER COLUMN seq SET GENERATED BY DEFAULT",
        "~ column readings.seq (identity always -> by default)",
    ),
    (
        "identity-column-dropped",
        "ALTER TABLE readings ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY",
        "ALTER TABLE readings ALTER COLUMN seq DROP IDENTITY",
        "~ column readings.seq (identity always -> none)",
    ),
    (
        "exclusion-constraint-added",
        "",
        "ALTER TABLE readings ADD CONSTRAINT ex_area EXCLUDE USING gist (area WITH &&)",
        "+ constraint readings.ex_area (EXCLUDE USING gist (area WITH &&))",
    ),
    (
        "exclusion-constraint-changed",
        "ALTER TABLE readings ADD CONSTRAINT ex_area EXCLUDE USING gist (area WITH &&)",
        "ALTER TABLE readings DROP CONSTRAINT ex_area; ALTER TABLE readings ADD CONSTRAINT ex_area EXCLUDE USING gist (area WITH ~=)",
        "~ constraint readings.ex_area (EXCLUDE USING gist (area WITH &&) -> EXCLUDE USING gist (area WITH ~=))",
    ),
    (
        "exclusion-constraint-dropped",
        "ALTER TABLE readings ADD CONSTRAINT ex_area EXCLUDE USING gist (area WITH &&)",
        "ALTER TABLE readings DROP CONSTRAINT ex_area",
        "- constraint readings.ex_area (EXCLUDE USING gist (area WITH &&))",
    ),
    (
        "collation-added",
        "",
        'ALTER TABLE readings ALTER COLUMN owner TYPE text COLLATE "C"',
        "~ column readings.owner (collation default -> C)",
    ),
    (
        "collation-changed",
        'ALTER TABLE readings ALTER COLUMN owner TYPE text COLLATE "C"',
        'ALTER TABLE readings ALTER COLUMN owner TYPE text COLLATE "POSIX"',
        "~ column readings.owner (collation C -> POSIX)",
    ),
    (
        "collation-dropped",
        'ALTER TABLE readings ALTER COLUMN owner TYPE text COLLATE "C"',
        'ALTER TABLE readings ALTER COLUMN owner TYPE text COLLATE "default"',
        "~ column readings.owner (collation C -> default)",
    ),
    (
        "sequence-added",
        "",
        "CREATE SEQUENCE counter INCREMENT 5 MAXVALUE 1000",
        "+ sequence counter (bigint)",
    ),
    (
        "sequence-changed",
        "CREATE SEQUENCE counter INCREMENT 5 MAXVALUE 1000",
        "ALTER SEQUENCE counter INCREMENT 10 MAXVALUE 2000 CYCLE; ALTER SEQUENCE counter OWNED BY readings.id",
        "~ sequence counter (owned by none -> readings.id; increment 5 -> 10; max value 1000 -> 2000; now cycles)",
    ),
    (
        "sequence-dropped",
        "CREATE SEQUENCE counter INCREMENT 5 MAXVALUE 1000",
        "DROP SEQUENCE counter",
        "- sequence counter (bigint)",
    ),
    ("schema-added", "DROP SCHEMA iot", "CREATE SCHEMA iot", "+ schema iot"),
    ("schema-dropped", "", "DROP SCHEMA iot", "- schema iot"),
]
# what SQLAlchemy models can declare: the only kinds drift may report (the rest: MODEL_BLIND_KINDS)
MODEL_KINDS = {"table", "column", "index", "constraint", "enum", "domain", "sequence", "schema"}


@pytest.fixture(scope="module")
def roles(pg_server: Server) -> None:
    pg_server.execute(
        "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'reader') THEN CREATE ROLE reader; END IF;"
        " IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app') THEN CREATE ROLE app; END IF; END$$"
    )


def snapshot_of(server: Server, sql: str) -> snapshot.Snapshot:
    name = f"t_{uuid.uuid4().hex[:12]}"
    server.create_database(name)
    try:
        connection = psycopg2.connect(**server.connect_kwargs(name))
        try:
            connection.autocommit = True
            with connection.cursor() as cur:
                cur.execute(sql)
            return snapshot.take(connection, schemas=SCHEMAS)
        finally:
            connection.close()
    finally:
        server.drop_database(name)


@pytest.mark.parametrize(("setup", "change", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_kind_added_changed_dropped_is_one_exact_line(
    pg_server: Server, roles: None, setup: str, change: str, line: str
) -> None:
    before = snapshot_of(pg_server, BASE + setup)
    after = snapshot_of(pg_server, BASE + setup + ";\n" + change)
    changes = diff.compare(before, after)
    assert [c.line() for c in changes] == [line]
    # and back: the reverse diff is one line too (what a downgrade that forgets it is told)
    assert len(diff.compare(after, before)) == 1
    [c] = changes
    if c.kind not in MODEL_KINDS:  # what models cannot declare is never drift
        assert model_blind_spots(changes) == []


def test_every_format_shows_the_line(pg_server: Server, roles: None) -> None:
    before = snapshot_of(pg_server, BASE)
    after = snapshot_of(pg_server, BASE + ";" + POL + "; GRANT SELECT ON readings TO reader")
    report = DiffReport(Side("origin/main"), Side("working tree"), tuple(diff.compare(before, after)))
    text = render_text(report)
    assert "  + policy readings.own_rows (for SELECT to reader, USING (owner = CURRENT_USER))" in text
    assert "  + grant on table readings to reader (SELECT)" in text
    markdown = render_markdown(report)
    assert (
        "| ➕ | `readings.own_rows` | policy added: for SELECT to reader, USING (owner = CURRENT_USER) |"
        in markdown
    )
    assert "| ➕ | `on table readings to reader` | grant added: SELECT |" in markdown
    assert '"line": "+ grant on table readings to reader (SELECT)"' in render_json(report)


def test_extension_objects_are_never_user_objects(pg_server: Server) -> None:
    after = snapshot_of(pg_server, "CREATE EXTENSION pg_trgm; CREATE EXTENSION citext")
    assert set(after.extensions) == {"pg_trgm", "citext"}
    # pg_trgm brings functions and citext a type, in public: none of them is listed
    assert after.functions == {} and after.domains == {} and after.enums == {}
    # PG 15: public's USAGE for PUBLIC is a grant on top of its owner's default
    assert list(after.grants) == ["on schema public to PUBLIC"]


def test_cloned_partition_triggers_and_internal_triggers_are_left_out(pg_server: Server) -> None:
    snap = snapshot_of(
        pg_server,
        BASE
        + PART
        + "; CREATE TRIGGER trg_events BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION touch();"
        + "CREATE TABLE notes (reading_id int REFERENCES readings (id))",
    )
    assert list(snap.triggers) == ["events.trg_events"]


def test_snapshot_with_every_kind_round_trips_through_json(pg_server: Server, roles: None) -> None:
    sql = ";".join(
        [BASE, FN, PROC, TRG, POL, DOM, VIEW, MV, PART, SEQ, "CREATE EXTENSION pg_trgm",
         "ALTER TABLE readings ENABLE ROW LEVEL SECURITY", "GRANT SELECT ON readings TO reader",
         "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO app", "COMMENT ON FUNCTION touch() IS 'x'"]
    )  # fmt: skip
    snap = snapshot_of(pg_server, sql)
    assert snapshot.Snapshot.from_json(snap.to_json()) == snap
    assert "for tables created by postgres to app" in snap.grants
