"""The drift check's models side, remembered by the SQL that builds it.

Every run compares the migrated schema with the models. The models' side of that comparison
is the snapshot of an empty database after ``metadata.create_all``: 0.15-0.25 s on a
57-table schema (a database, 140 statements, a catalog query, a drop), the longest step of
a warm run. That snapshot is a pure function of

- the SQL ``create_all`` sends, compiled from the models *of this run* without a database
  (schema_warden.proof.drift.models_ddl): a changed model changes the text;
- the Postgres build, the statements the empty database is given first (the prelude: the
  schemas, extensions and types of the migrated database, proof/drift.py prelude_sql), and
  the settings the snapshot honours (schemas, excluded tables);
- the guard's code and versions (schema_warden.cache.proofs.guard_fingerprint, which covers the snapshot's
  catalog query) and the code that builds the side (proof/drift.py, this module).

So it is kept under the SHA-256 of all of these, in ``proofs_dir() / "models"``: one sealed
JSON file per key (checksum checked on each read: a damaged file is deleted and the side is
built again), written to a temporary name and renamed, at most :data:`MAX_ENTRIES` (least
recently used removed first). The comparison itself is made on every run; only the empty
database's build is skipped. ``--no-cache`` bypasses it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from schema_warden.schema.snapshot import Snapshot

SUBDIR = "models"
MAX_ENTRIES = 8  # a few branches' models; each file is the JSON of one snapshot (~60 kB at 57 tables)
FORMAT = 2  # 2: keyed by the prelude's statements, not the extensions' names


def key(
    statements: Sequence[str],
    *,
    build: str,
    prelude: Sequence[str],
    schemas: Sequence[str],
    exclude_tables: Sequence[str],
) -> str:
    """The key of the models side that ``statements`` build (pure)."""
    from schema_warden.cache.proofs import guard_fingerprint

    parts = {
        "format": FORMAT,
        "guard": guard_fingerprint(),
        "builder": _builder_fingerprint(),
        "build": build,
        "prelude": list(prelude),
        "schemas": list(schemas),
        "exclude_tables": sorted(exclude_tables),
        "statements": list(statements),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def _builder_fingerprint() -> str:
    """A hash of the code that builds the models' side (proof/drift.py, this module): a
    changed builder never trusts a snapshot an older one made."""
    package = Path(__file__).parent.parent
    h = hashlib.sha256()
    for name in ("proof/drift.py", "cache/models.py"):
        with contextlib.suppress(OSError):
            h.update(name.encode() + b"\0" + (package / name).read_bytes())
    return h.hexdigest()[:16]


def _root() -> Path:
    from schema_warden.cache.proofs import proofs_dir

    return proofs_dir() / SUBDIR


def lookup(entry_key: str) -> Snapshot | None:
    """The snapshot remembered under ``entry_key``; None when absent or damaged (then deleted)."""
    from schema_warden.cache.proofs import unseal

    path = _root() / f"{entry_key}.json"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    payload = unseal(data)
    snapshot = None
    if payload is not None and payload.get("key") == entry_key:
        with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
            snapshot = Snapshot.from_dict(payload["snapshot"])
    if snapshot is None:
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used: removed last
    return snapshot


def remember(entry_key: str, snapshot: Snapshot) -> None:
    """Keep ``snapshot`` under ``entry_key``; a full disk only loses the speed-up."""
    from schema_warden.cache.proofs import FORMAT as SEAL_FORMAT
    from schema_warden.cache.proofs import seal

    root = _root()
    temp = root / f".{entry_key}.{uuid.uuid4().hex}"
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp.write_text(seal({"format": SEAL_FORMAT, "key": entry_key, "snapshot": snapshot.to_dict()}))
        os.replace(temp, root / f"{entry_key}.json")
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()
        return
    _evict(root)


def _evict(root: Path) -> None:
    entries = []
    for path in root.glob("*.json"):
        with contextlib.suppress(OSError):
            entries.append((path.stat().st_mtime, path))
    entries.sort(reverse=True)
    for _mtime, path in entries[MAX_ENTRIES:]:
        with contextlib.suppress(OSError):
            path.unlink()
