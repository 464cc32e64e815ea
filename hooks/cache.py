"""Incremental proof cache (work in progress)."""

from __future__ import annotations

CACHE_SUBDIR = "proofs"
