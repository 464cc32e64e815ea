"""The IoT project's database: models as code, Alembic migrations, one CLI (manage.py)."""
