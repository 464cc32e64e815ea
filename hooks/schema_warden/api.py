"""The guard's public API: what other code (this repository's ``database/`` project, a
team's own scripts) may import. Everything else in the package may change without notice.

- the throwaway server: :func:`throwaway_server`, :func:`find_binaries`, :class:`Binaries`;
- the error family: :class:`WardenError` and its kinds, with their exit codes, and
  :func:`one_line`, how every message starts;
- schema comparison: :func:`take` (a snapshot from pg_catalog), :func:`compare` (two
  snapshots into readable changes), and the drift helpers that name what autogenerate
  found (:func:`describe_operations`, :func:`model_blind_spots`, :func:`suggest_message`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from schema_warden.errors import EnvironmentProblem, ProjectError, WardenError, one_line

if TYPE_CHECKING:
    from schema_warden.proof.drift import describe_operations, model_blind_spots, suggest_message
    from schema_warden.schema.diff import compare
    from schema_warden.schema.snapshot import take
    from schema_warden.server.postgres import INSTALL_HINT, Binaries, find_binaries, throwaway_server

# the rest is imported on first use (drift's import costs 0.12 s; a backup needs only the server)
_LAZY = {
    "describe_operations": "schema_warden.proof.drift",
    "model_blind_spots": "schema_warden.proof.drift",
    "suggest_message": "schema_warden.proof.drift",
    "compare": "schema_warden.schema.diff",
    "take": "schema_warden.schema.snapshot",
    "INSTALL_HINT": "schema_warden.server.postgres",
    "Binaries": "schema_warden.server.postgres",
    "find_binaries": "schema_warden.server.postgres",
    "throwaway_server": "schema_warden.server.postgres",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "INSTALL_HINT",
    "Binaries",
    "EnvironmentProblem",
    "ProjectError",
    "WardenError",
    "compare",
    "describe_operations",
    "find_binaries",
    "model_blind_spots",
    "one_line",
    "suggest_message",
    "take",
    "throwaway_server",
]
