"""What the guard reads statically from revision files, remembered by their content.

``schema-warden check`` reads every revision file with ``ast`` twice over before Alembic is
even imported: the heads check (ids, imports) and the lazy revision map (ids, docstring,
whether the file is provably static). On a 300-revision history that is 0.04-0.13 s of a
1 s warm run, and the files rarely change. The facts are pure functions of a file's text,
so they are kept across runs under the SHA-256 of the text, in one sealed JSON file beside
the proofs (``proofs_dir() / "static.json"``).

Nothing is remembered unless a run activates a cache (:func:`active`); the file records the
Python version and a hash of the readers' source (project/history.py),
and any difference, damage or unknown format starts an empty cache. Writes go to a temporary
name and are renamed, so concurrent runs see a whole file or none (the last writer wins).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from schema_warden import speed
from schema_warden.cache import sealed

FILE = "static.json"
FORMAT = 1
MAX_ENTRIES = 3000  # two kinds per file: a few long histories; the oldest are dropped first
_READERS = ("project/history.py",)  # both static readers of revision files live there


def _fingerprint() -> str:
    package = Path(__file__).parent.parent
    h = hashlib.sha256(f"python={sys.version_info[:3]}".encode())
    for name in _READERS:  # a reader that moved without this list is an error, not an empty hash
        h.update(name.encode() + b"\0" + (package / name).read_bytes())
    return h.hexdigest()[:16]


class StaticCache:
    """Facts of revision files by kind and content digest; :meth:`save` writes them back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fingerprint = _fingerprint()
        self.entries: dict[str, Any] = {}
        self.dirty = False
        with contextlib.suppress(OSError):
            payload = _unseal(path.read_bytes())
            if payload is not None and payload.get("reader") == self.fingerprint:
                entries = payload.get("entries")
                if isinstance(entries, dict):
                    self.entries = entries

    @staticmethod
    def key(kind: str, data: bytes | str) -> str:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        return f"{kind}:{hashlib.sha256(raw).hexdigest()}"

    def get(self, kind: str, data: bytes | str) -> Any:
        return self.entries.get(self.key(kind, data))

    def put(self, kind: str, data: bytes | str, value: Any) -> None:
        key = self.key(kind, data)
        if self.entries.get(key) != value:
            self.entries[key] = value
            self.dirty = True

    def save(self) -> None:
        """Write the file when something was added; a failure only loses the speed-up."""
        if not self.dirty:
            return
        entries = self.entries
        if len(entries) > MAX_ENTRIES:
            entries = dict(list(entries.items())[-MAX_ENTRIES:])
        payload = {"format": FORMAT, "reader": self.fingerprint, "entries": entries}
        temp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temp.write_bytes(_seal(payload))
            os.replace(temp, self.path)
            self.dirty = False
        except OSError:
            with contextlib.suppress(OSError):
                temp.unlink()


def _seal(payload: dict[str, Any]) -> bytes:
    return sealed.seal(payload).encode()


def _unseal(data: bytes) -> dict[str, Any] | None:
    return sealed.unseal(data, FORMAT)


_active: StaticCache | None = None


@contextlib.contextmanager
def active(enabled: bool = True) -> Iterator[StaticCache | None]:
    """Remember static facts for the block (and save them at its end, also on errors)."""
    global _active
    if not enabled or not speed.enabled("static-cache"):
        yield None
        return
    from schema_warden.cache.location import proofs_dir

    cache = StaticCache(proofs_dir() / FILE)
    previous, _active = _active, cache
    try:
        yield cache
    finally:
        _active = previous
        cache.save()


def lookup(kind: str, data: bytes | str) -> Any:
    """The remembered fact, or None (no cache active, or not seen before)."""
    return None if _active is None else _active.get(kind, data)


def remember(kind: str, data: bytes | str, value: Any) -> None:
    if _active is not None:
        _active.put(kind, data, value)


def encode_ids(value: Any) -> Any:
    """Revision ids as written (None, str, tuple or list of str) in JSON, the sequence kind kept."""
    if isinstance(value, tuple):
        return {"t": list(value)}
    if isinstance(value, list):
        return {"l": list(value)}
    return value


def decode_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(value["t"]) if "t" in value else list(value["l"])
    return value
