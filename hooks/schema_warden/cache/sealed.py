"""The one format of everything the guard keeps on disk: a sealed JSON record.

The SHA-256 of the JSON body on the first line, then the body. A record is read only when
the digest matches the bytes that follow (checked without serializing again: 600 entries
load in a few milliseconds); anything else (half written, edited, another format, not
UTF-8) reads as None and the caller rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def seal(payload: Mapping[str, object]) -> str:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest() + "\n" + body


def unseal(data: str | bytes, format: object = None) -> dict[str, Any] | None:
    """The payload of a sealed record, or None when it is damaged in any way; ``format``: the
    payload's ``format`` field must equal it (when given)."""
    raw = data.encode() if isinstance(data, str) else data
    digest, _, body = raw.partition(b"\n")
    if not body or hashlib.sha256(body).hexdigest().encode() != digest:
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    if format is not None and payload.get("format") != format:
        return None
    return payload
