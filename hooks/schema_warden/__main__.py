from __future__ import annotations

from schema_warden.cli import entry

entry()
