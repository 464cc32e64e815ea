"""Find and load an Alembic project exactly as Alembic does (alembic.ini, settings, revision
files, env.py) and run its env.py fenced in to the throwaway server. Imports schema, cache
readers and errors; never server or commands."""
