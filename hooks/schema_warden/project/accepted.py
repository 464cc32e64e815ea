"""Accepted findings: what an old history already has, so that only new problems fail.

A project adopting the guard may have problems in revisions that are applied everywhere
and cannot be changed any more (a lossy downgrade from years ago). ``schema-warden check
--accept`` writes the current findings to ``schema-warden-accepted.toml`` (or the
``accepted-findings`` setting), each with its check, revision, message and a fingerprint
of the three. Later runs turn a finding whose fingerprint is listed into a note, and list
entries that no longer occur as stale. Pure apart from reading and writing that one file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from schema_warden.errors import ProjectError
from schema_warden.render.report import FAIL, NOTE, CheckResult

DEFAULT_FILE = "schema-warden-accepted.toml"
NAME = "accepted"


@dataclass(frozen=True)
class Accepted:
    check: str
    revision: str | None
    message: str
    fingerprint: str


def fingerprint(result: CheckResult) -> str:
    """Stable across runs and machines: the check, the revision and the one-line message."""
    text = "\0".join((result.name, result.revision or "", " ".join(result.message.split())))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read(path: Path) -> list[Accepted]:
    """The accepted findings in ``path``; none when it does not exist."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ProjectError(
            f"{path}: cannot read the accepted findings: {err}: fix or delete the file"
        ) from None
    found = []
    for entry in data.get("finding", []):
        if not isinstance(entry, dict) or not isinstance(entry.get("fingerprint"), str):
            raise ProjectError(f"{path}: every [[finding]] needs a fingerprint: run check --accept again")
        found.append(
            Accepted(
                str(entry.get("check", "")),
                entry.get("revision") if isinstance(entry.get("revision"), str) else None,
                str(entry.get("message", "")),
                entry["fingerprint"],
            )
        )
    return found


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a TOML basic string


def render(findings: Iterable[CheckResult]) -> str:
    lines = [
        "# Findings accepted as history: schema-warden check reports them as notes, not failures.",
        "# Written by `schema-warden check --accept`; delete an entry to make it fail again.",
    ]
    for result in findings:
        lines += ["", "[[finding]]", f"check = {_quoted(result.name)}"]
        if result.revision is not None:
            lines.append(f"revision = {_quoted(result.revision)}")
        lines += [f"message = {_quoted(result.message)}", f"fingerprint = {_quoted(fingerprint(result))}"]
    return "\n".join(lines) + "\n"


def write(path: Path, findings: Sequence[CheckResult]) -> None:
    """Write the file whole or not at all (a temporary file renamed into place)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as err:
        raise ProjectError(f"cannot write {path}: {err}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(render(findings))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply(checks: Sequence[CheckResult], accepted: Sequence[Accepted], where: str) -> list[CheckResult]:
    """Listed failures become notes; listed entries that no longer occur are named as stale."""
    if not accepted:
        return list(checks)
    known = {a.fingerprint for a in accepted}
    seen: set[str] = set()
    out = []
    for result in checks:
        mark = fingerprint(result) if result.status == FAIL else None
        if mark is not None and mark in known:
            seen.add(mark)
            out.append(replace(result, status=NOTE, message=f"accepted ({where}): {result.message}"))
        else:
            out.append(result)
    for entry in accepted:
        if entry.fingerprint not in seen:
            what = f"{entry.check} {entry.revision}" if entry.revision else entry.check
            out.append(
                CheckResult(
                    NAME,
                    NOTE,
                    f"stale entry in {where}: {what} no longer finds {entry.message!r}: remove it",
                    entry.revision,
                )
            )
    return out
