"""schema-warden: the guard that keeps an Alembic project's PostgreSQL schema honest."""

from __future__ import annotations

__version__ = "0.1.0"
