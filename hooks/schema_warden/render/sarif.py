"""SARIF 2.1.0 (the format GitHub code scanning reads). Pure: plain data in, a string out.

One run, the tool ``schema-warden`` with its rules; each result at a file and line of the
repository (``uriBaseId`` ``%SRCROOT%``). A finding accepted by an allow comment stays in
the log as a result with an in-source suppression, so code scanning shows it as dismissed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
VERSION = "2.1.0"
INFORMATION_URI = "https://pypi.org/project/schema-warden/"
LEVELS = ("error", "warning", "note", "none")


@dataclass(frozen=True)
class RuleInfo:
    id: str
    short: str  # what it looks for
    full: str  # why it matters and the safe way
    doc: str | None = None  # the page explaining it, relative to the repository root


@dataclass(frozen=True)
class Result:
    rule: str
    level: str  # one of LEVELS
    message: str
    file: str  # relative to the repository root, forward slashes
    line: int = 1
    suppressed: str | None = None  # the justification of an in-source suppression


def level(severity: str) -> str:
    """SARIF's level for a finding's severity (error, warning) or a check status (fail, note)."""
    return {"error": "error", "fail": "error", "warning": "warning", "note": "note"}.get(severity, "note")


def _rule(rule: RuleInfo) -> dict[str, object]:
    entry: dict[str, object] = {
        "id": rule.id,
        "name": "".join(part.capitalize() for part in rule.id.split("-")),
        "shortDescription": {"text": rule.short},
        "fullDescription": {"text": rule.full},
    }
    if rule.doc is not None:
        entry["help"] = {
            "text": f"{rule.full}\nSee {rule.doc}",
            "markdown": f"{rule.full}\n\nSee [{rule.doc}]({rule.doc}).",
        }
        entry["properties"] = {"documentation": rule.doc}
    return entry


def _result(result: Result, index: dict[str, int]) -> dict[str, object]:
    if result.level not in LEVELS:
        raise ValueError(f"SARIF level must be one of {LEVELS}, not {result.level!r}")
    entry: dict[str, object] = {
        "ruleId": result.rule,
        "level": result.level,
        "message": {"text": result.message},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": result.file, "uriBaseId": "%SRCROOT%"},
                    "region": {"startLine": max(1, result.line)},
                }
            }
        ],
    }
    if result.rule in index:
        entry["ruleIndex"] = index[result.rule]
    if result.suppressed is not None:
        entry["suppressions"] = [{"kind": "inSource", "justification": result.suppressed}]
    return entry


def log(rules: Sequence[RuleInfo], results: Sequence[Result], *, version: str) -> str:
    """The SARIF log of one run, as JSON text."""
    known = list({rule.id: rule for rule in rules}.values())
    for result in results:  # every result's rule is described, also one made up on the way
        if result.rule not in {rule.id for rule in known}:
            known.append(RuleInfo(result.rule, result.rule, result.rule))
    index = {rule.id: position for position, rule in enumerate(known)}
    document = {
        "$schema": SCHEMA,
        "version": VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "schema-warden",
                        "version": version,
                        "informationUri": INFORMATION_URI,
                        "rules": [_rule(rule) for rule in known],
                    }
                },
                "results": [_result(result, index) for result in results],
                "columnKind": "unicodeCodePoints",
            }
        ],
    }
    return json.dumps(document, indent=2) + "\n"
