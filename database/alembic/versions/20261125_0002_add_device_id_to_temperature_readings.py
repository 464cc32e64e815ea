"""add device_id to temperature_readings

Nullable, so every existing reading is kept (its device_id is NULL); indexed for
per-device queries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 14:49:09.612232+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("temperature_readings", sa.Column("device_id", sa.String(length=64), nullable=True))
    # schema-warden: allow require-concurrent-index-creation -- short write lock accepted: small table
    op.create_index(
        op.f("ix_temperature_readings_device_id"), "temperature_readings", ["device_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_temperature_readings_device_id"), table_name="temperature_readings")
    op.drop_column("temperature_readings", "device_id")
