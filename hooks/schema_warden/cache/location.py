"""Where the guard keeps what it remembers: one directory, settable for tests and CI."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_SUBDIR = "proofs"
PROOF_CACHE_ENV = "SCHEMA_WARDEN_PROOF_CACHE"  # tests give each test its own


def proofs_dir() -> Path:
    """``$SCHEMA_WARDEN_PROOF_CACHE``, else ``cache_dir()/proofs`` (beside the initdb'd clusters)."""
    explicit = os.environ.get(PROOF_CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    from schema_warden.server.postgres import cache_dir

    return cache_dir() / CACHE_SUBDIR
