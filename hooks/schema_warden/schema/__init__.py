"""A schema as plain data: the snapshot read from pg_catalog, and the pure diff of two
snapshots. Imports nothing of the guard but errors."""
