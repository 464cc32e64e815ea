"""The speed mechanisms by name, and the switch the benchmark turns them off with.

Every mechanism that only makes a check faster (never changes its verdict) asks
``enabled(name)`` before it acts. ``SCHEMA_WARDEN_SPEED_OFF`` (comma-separated names) turns
some off, so that ``python -m bench --mechanisms`` can measure what each one saves; a
mechanism that saves too little is removed (bench/README.md). Users never need it.
"""

from __future__ import annotations

import os

ENV = "SCHEMA_WARDEN_SPEED_OFF"
MECHANISMS = {
    "proof-cache": "proofs of passing revisions reused by the next run (cache/proofs.py)",
    "cluster-archive": "the server's data directory at head kept and unpacked (cache/proofs.py)",
    "initdb-cache": "one initdb'd cluster per Postgres build, copied instead of initdb (server/postgres.py)",
    "static-cache": "the history's static facts keyed by file contents (cache/static.py)",
    "models-cache": "the models' schema keyed by the SQL they compile to (cache/models.py)",
    "two-processes": "a forked child proves the first part of a long stairway (proof/parallel.py)",
    "incremental-snapshot": "each step reads only the catalog objects it changed (schema/incremental.py)",
}


def enabled(name: str) -> bool:
    """False when the benchmark turned the mechanism ``name`` off."""
    if name not in MECHANISMS:
        raise ValueError(f"unknown speed mechanism {name!r}")
    off = os.environ.get(ENV, "")
    return name not in {part.strip() for part in off.split(",")}
