"""Backup files on disk: names, the temp name, the sha256 file, the JSON manifest, retention.

A backup ``backup_20261125T030000Z.sql`` (plain) or ``.dump`` (custom) has two companions:
``<name>.sha256`` (``sha256sum -c`` reads it) and ``<name>.json`` (the manifest). While it is
being written it is ``.backup_....partial``, which never looks like a backup.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from schema_warden.api import EnvironmentProblem, ProjectError, WardenError

EXTENSIONS = {"plain": ".sql", "custom": ".dump"}
BACKUP_RE = re.compile(r"^backup_(\d{8}T\d{6}Z)\.(sql|dump)$")
MANIFEST_VERSION = 1
_CUSTOM_MAGIC = b"PGDMP"


class ChecksumMismatch(WardenError):
    """The file is not what its .sha256 says (exit 1)."""

    exit_code = 1


def backup_name(when: datetime, fmt: str) -> str:
    """``backup_<UTC YYYYMMDDTHHMMSSZ>.sql`` (plain) or ``.dump`` (custom)."""
    stamp = when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"backup_{stamp}{EXTENSIONS[fmt]}"


def partial_name(name: str) -> str:
    return f".{name}.partial"


def checksum_path(backup: Path) -> Path:
    return backup.with_name(backup.name + ".sha256")


def manifest_path(backup: Path) -> Path:
    return backup.with_name(backup.name + ".json")


def detect_format(path: Path) -> str:
    """custom when the file starts with pg_dump's archive magic, else plain."""
    with open(path, "rb") as fh:
        return "custom" if fh.read(len(_CUSTOM_MAGIC)) == _CUSTOM_MAGIC else "plain"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_line(digest: str, name: str) -> str:
    """The ``sha256sum`` format: digest, two spaces, file name."""
    return f"{digest}  {name}\n"


def parse_checksum(text: str, name: str) -> str | None:
    """The digest recorded for ``name`` in a sha256sum file (None when absent)."""
    for line in text.splitlines():
        match = re.match(r"^([0-9a-fA-F]{64}) [ *](.+)$", line.strip())
        if match and Path(match.group(2)).name == name:
            return match.group(1).lower()
    return None


def verify_checksum(backup: Path) -> str:
    """Check ``backup`` against its .sha256: missing file -> exit 2, mismatch -> exit 1."""
    sums = checksum_path(backup)
    if not sums.is_file():
        raise ProjectError(
            f"no checksum file {sums} beside the backup: db-restore restores only checked files "
            "(the .sha256 comes with every backup and artifact)"
        )
    expected = parse_checksum(sums.read_text(errors="replace"), backup.name)
    if expected is None:
        raise ProjectError(f"{sums} has no sha256 line for {backup.name}: it belongs to another backup")
    actual = sha256_of(backup)
    if actual != expected:
        raise ChecksumMismatch(
            f"checksum mismatch: {backup} has sha256 {actual[:16]}..., {sums.name} says "
            f"{expected[:16]}...: the file is damaged or was changed; restore another backup"
        )
    return actual


@dataclass(frozen=True)
class Manifest:
    """What ``<backup>.json`` records. Stable keys: documented in README (Backups)."""

    file: str
    format: str
    created_at: str  # ISO 8601 UTC
    database_url: str  # masked
    server_version: str
    pg_dump_version: str
    alembic_revisions: list[str]
    tables: dict[str, int]  # "schema.table" -> exact row count in the dump's snapshot
    size_bytes: int
    sha256: str
    duration_seconds: float
    snapshot: bool  # row counts read in the dump's own snapshot
    verified: bool = False
    verify_seconds: float | None = None
    manifest_version: int = MANIFEST_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        if not data["extra"]:
            del data["extra"]
        return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def read_manifest(backup: Path) -> dict[str, Any] | None:
    """The manifest beside ``backup`` as plain data, or None when there is none."""
    path = manifest_path(backup)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ProjectError(f"manifest {path} is not readable JSON: {err}") from None
    return data if isinstance(data, dict) else None


def write_atomically(path: Path, text: str) -> None:
    """Write ``path`` through a hidden temp file and a rename: never half a file."""
    tmp = path.with_name(partial_name(path.name))
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def publish(partial: Path, final: Path) -> None:
    """Rename the finished temp file to its backup name, never replacing an existing file."""
    try:
        os.link(partial, final)
    except FileExistsError:
        raise ProjectError(
            f"{final} already exists: another backup started in the same second; run again"
        ) from None
    except OSError:  # a filesystem without hard links
        if final.exists():
            raise ProjectError(f"{final} already exists: run again") from None
        os.replace(partial, final)
        return
    partial.unlink()


def list_backups(directory: Path) -> list[Path]:
    """Backups in ``directory``, oldest first (by the UTC stamp in the name)."""
    found = [p for p in directory.iterdir() if BACKUP_RE.match(p.name) and p.is_file()]
    return sorted(found, key=lambda p: (BACKUP_RE.match(p.name).group(1), p.name))  # type: ignore[union-attr]


def expired(names: Sequence[str], keep: int) -> list[str]:
    """The backups to delete so that the newest ``keep`` remain (pure: names in, names out)."""
    ordered = sorted((n for n in names if BACKUP_RE.match(n)), key=lambda n: (n[7:23], n))
    return ordered[:-keep] if keep > 0 else ordered


def remove_backups(directory: Path, names: Iterable[str]) -> list[str]:
    """Delete backups with their .sha256 and .json; returns the backup names removed."""
    removed = []
    for name in names:
        backup = directory / name
        for path in (checksum_path(backup), manifest_path(backup), backup):
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as err:
                raise EnvironmentProblem(f"cannot delete old backup file {path}: {err.strerror}") from None
        removed.append(name)
    return removed


def prepare_output_dir(path: Path) -> Path:
    """Create the output directory if needed; a file in its place is a usage error."""
    if path.exists() and not path.is_dir():
        raise ProjectError(f"--output-dir {path} is a file, not a directory: pick a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EnvironmentProblem(f"cannot create the output directory {path}: {err.strerror}") from None
    return path


def utc_iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def table_summary(tables: Mapping[str, int]) -> str:
    return f"{len(tables)} tables, {sum(tables.values())} rows"
