"""Our own 25 migration cases for the lint: each an Alembic upgrade() body on the tables of
BASE (readings and devices exist and hold rows), and whether it is a real problem on a live
database. Every case but the lock_timeout ones sets lock_timeout first, so that each case is
about one thing.

Used by tests/test_trace.py (lint --trace), tests/test_lint_migrations.py (offline) and
the comparison with squawk in the report of issue 21.
"""

from __future__ import annotations

BASE = """\
op.create_table(
    "devices",
    sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
)
op.create_table(
    "readings",
    sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
    sa.Column("device_id", sa.BigInteger(), nullable=True),
    sa.Column("count", sa.Integer(), nullable=True),
    sa.Column("unit", sa.String(32), nullable=True),
    sa.Column("legacy", sa.Text(), nullable=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
)
op.create_index("ix_readings_recorded_at", "readings", ["recorded_at"])
op.execute("INSERT INTO devices DEFAULT VALUES")
op.execute("INSERT INTO readings (device_id, count, unit) SELECT 1, g, 'C' FROM generate_series(1, 100) g")
"""

TIMEOUT = "op.execute(\"SET lock_timeout = '2s'\")\n"
AUTOCOMMIT = "with op.get_context().autocommit_block():\n"

# (case id, upgrade body, a real problem?)
CASES: list[tuple[str, str, bool]] = [
    ("drop-column", TIMEOUT + 'op.drop_column("readings", "legacy")', True),
    ("rename-column", TIMEOUT + 'op.alter_column("readings", "unit", new_column_name="unit_code")', True),
    ("rename-table", TIMEOUT + 'op.rename_table("readings", "measurements")', True),
    ("int-to-bigint", TIMEOUT + 'op.alter_column("readings", "count", type_=sa.BigInteger())', True),
    (
        "widen-varchar",
        TIMEOUT + 'op.alter_column("readings", "unit", type_=sa.String(64), existing_type=sa.String(32))',
        False,
    ),
    (
        "add-required-column",
        TIMEOUT + 'op.add_column("readings", sa.Column("site", sa.Text(), nullable=False))',
        True,
    ),
    (
        "add-column-constant-default",
        TIMEOUT
        + 'op.add_column("readings", sa.Column("site", sa.Text(), server_default="main", nullable=False))',
        False,
    ),
    (
        "add-column-volatile-default",
        TIMEOUT
        + 'op.add_column("readings", sa.Column("uid", sa.Uuid(),\n'
        + '              server_default=sa.text("gen_random_uuid()")))',
        True,
    ),
    ("set-not-null", TIMEOUT + 'op.alter_column("readings", "device_id", nullable=False)', True),
    (
        "set-not-null-after-valid-check",
        TIMEOUT
        + 'op.create_check_constraint("ck_dev", "readings", "device_id IS NOT NULL",\n'
        + "                            postgresql_not_valid=True)\n"
        + AUTOCOMMIT
        + '    op.execute("ALTER TABLE readings VALIDATE CONSTRAINT ck_dev")\n'
        + 'op.alter_column("readings", "device_id", nullable=False)\n'
        + 'op.drop_constraint("ck_dev", "readings")',
        False,
    ),
    (
        "validate-in-the-adding-transaction",
        TIMEOUT
        + 'op.create_check_constraint("ck_count", "readings", "count >= 0", postgresql_not_valid=True)\n'
        + 'op.execute("ALTER TABLE readings VALIDATE CONSTRAINT ck_count")',
        True,
    ),
    ("create-index", TIMEOUT + 'op.create_index("ix_unit", "readings", ["unit"])', True),
    (
        "create-index-concurrently",
        TIMEOUT
        + AUTOCOMMIT
        + '    op.create_index("ix_unit", "readings", ["unit"], postgresql_concurrently=True)',
        False,
    ),
    (
        "concurrently-in-transaction",
        TIMEOUT + 'op.create_index("ix_unit", "readings", ["unit"], postgresql_concurrently=True)',
        True,
    ),
    ("drop-index", TIMEOUT + 'op.drop_index("ix_readings_recorded_at", table_name="readings")', True),
    (
        "drop-index-concurrently",
        TIMEOUT
        + AUTOCOMMIT
        + '    op.drop_index("ix_readings_recorded_at", table_name="readings", postgresql_concurrently=True)',
        False,
    ),
    (
        "foreign-key",
        TIMEOUT + 'op.create_foreign_key("fk_dev", "readings", "devices", ["device_id"], ["id"])',
        True,
    ),
    (
        "foreign-key-not-valid",
        TIMEOUT
        + 'op.create_foreign_key("fk_dev", "readings", "devices", ["device_id"], ["id"],\n'
        + "                      postgresql_not_valid=True)",
        False,
    ),
    ("check-constraint", TIMEOUT + 'op.create_check_constraint("ck_count", "readings", "count >= 0")', True),
    (
        "unique-constraint",
        TIMEOUT + 'op.create_unique_constraint("uq_r", "readings", ["device_id", "recorded_at"])',
        True,
    ),
    ("truncate", TIMEOUT + 'op.execute("TRUNCATE readings")', True),
    ("no-lock-timeout", 'op.add_column("readings", sa.Column("note", sa.Text(), nullable=True))', True),
    (
        "with-lock-timeout",
        TIMEOUT + 'op.add_column("readings", sa.Column("note", sa.Text(), nullable=True))',
        False,
    ),
    (
        "new-table-with-index",
        'op.create_table("sites", sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),\n'
        '                sa.Column("name", sa.Text()))\n'
        'op.create_index("ix_sites_name", "sites", ["name"])',
        False,
    ),
    (
        "get-bind-batched-backfill",
        TIMEOUT
        + "bind = op.get_bind()\n"
        + 'top = bind.execute(sa.text("SELECT max(id) FROM readings")).scalar() or 0\n'
        + "for start in range(0, top + 1, 1000):\n"
        + '    bind.execute(sa.text("UPDATE readings SET legacy = unit WHERE id >= :a AND id < :b"),\n'
        + '                 {"a": start, "b": start + 1000})',
        False,
    ),
]
