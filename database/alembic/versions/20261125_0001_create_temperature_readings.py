"""create temperature_readings

Revision ID: 0001
Revises:
Create Date: 2026-11-25 14:49:08.816089+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "temperature_readings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("temperature", sa.Numeric(precision=6, scale=2), nullable=False),
        sa.Column("unit", sa.String(length=1), server_default="C", nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("unit IN ('C', 'F', 'K')", name=op.f("ck_temperature_readings_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_temperature_readings")),
    )
    op.create_index(
        op.f("ix_temperature_readings_recorded_at"), "temperature_readings", ["recorded_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_temperature_readings_recorded_at"), table_name="temperature_readings")
    op.drop_table("temperature_readings")
