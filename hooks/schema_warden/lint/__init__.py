"""Lint rules over one revision's SQL: pure, one rule a function, no I/O."""
