from __future__ import annotations

from hooks.cli import entry

entry()
