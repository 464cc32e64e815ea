"""Alembic for people: readable autogenerate diffs (no raw Python reprs), plain progress lines.

env.py and manage.py share these: which objects autogenerate sees (``include_object``), the
comparison options, and :func:`progress`, which shows Alembic's "Running upgrade ..." lines
without the logging format and remembers which revision is running when one fails.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from database.config import excluded_tables


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Autogenerate never sees tables of other tools (``[tool.schema-warden] exclude-tables``)."""
    excluded = excluded_tables()
    if type_ == "table" and name in excluded:
        return False
    table = getattr(obj, "table", None)
    return not (table is not None and getattr(table, "name", None) in excluded)


def drift_context_options() -> dict[str, Any]:
    return {
        "compare_type": True,
        "compare_server_default": True,
        "include_object": include_object,
    }


def _column(col: Any) -> str:
    nullable = "nullable" if col.nullable else "NOT NULL"
    return f"{col.type}, {nullable}"


def describe_diff(diff: Any) -> str:
    """One autogenerate diff tuple -> one line a person reads."""
    if isinstance(diff, list):  # modify_* come grouped per column
        return "; ".join(describe_diff(d) for d in diff)
    kind = diff[0]
    if kind == "add_table":
        return f"+ add table {diff[1].name}"
    if kind == "remove_table":
        return f"- drop table {diff[1].name}"
    if kind == "add_column":
        return f"+ add column {diff[2]}.{diff[3].name} ({_column(diff[3])})"
    if kind == "remove_column":
        return f"- drop column {diff[2]}.{diff[3].name}"
    if kind in ("add_index", "remove_index"):
        index = diff[1]
        cols = ", ".join(str(getattr(c, "name", c)) for c in index.expressions)
        sign = "+ add" if kind == "add_index" else "- drop"
        return f"{sign} index {index.name} on {index.table.name} ({cols})"
    if kind in ("add_constraint", "remove_constraint"):
        cons = diff[1]
        sign = "+ add" if kind == "add_constraint" else "- drop"
        return f"{sign} constraint {cons.name} on {cons.table.name}"
    if kind in ("add_fk", "remove_fk"):
        fk = diff[1]
        sign = "+ add" if kind == "add_fk" else "- drop"
        return f"{sign} foreign key {fk.name} on {fk.parent.name}"
    if kind == "modify_type":
        return f"~ change type of {diff[2]}.{diff[3]}: {diff[5]} -> {diff[6]}"
    if kind == "modify_nullable":
        now = "nullable" if diff[6] else "NOT NULL"
        return f"~ make {diff[2]}.{diff[3]} {now}"
    if kind == "modify_default":
        old = getattr(diff[5], "arg", diff[5])
        new = getattr(diff[6], "arg", diff[6])
        return f"~ change default of {diff[2]}.{diff[3]}: {_text(old)} -> {_text(new)}"
    if kind == "modify_comment":
        return f"~ change comment of {diff[2]}.{diff[3]}"
    return f"~ {kind}"


def _text(value: Any) -> str:
    if value is None:
        return "none"
    return str(getattr(value, "text", value))


def describe_diffs(diffs: list[Any]) -> list[str]:
    return [describe_diff(d) for d in diffs]


class Progress(logging.Handler):
    """Alembic's lines a person reads, plainly: each migration step, autogenerate's findings, warnings.

    ``step`` is the migration step that ran last (the one to name when a command fails).
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.step: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "Running %s" and record.args:
            step = record.args[0] if isinstance(record.args, tuple) else record.args
            self.step = step
            text = f"Running {step_line(step)}"
        else:
            text = record.getMessage()
            if record.levelno < logging.WARNING and not text.startswith("Detected "):
                return  # "Context impl ...", "setting up autogenerate plugin ...": noise
        with contextlib.suppress(Exception):
            self.stream.write(text + "\n")
            self.stream.flush()


def step_line(step: Any) -> str:
    """``upgrade 0001 -> 0002, add device_id`` (Alembic's wording, ``<base>`` instead of nothing)."""
    try:
        frm = ", ".join(step.from_revisions_no_deps) or "<base>"
        to = ", ".join(step.to_revisions_no_deps) or "<base>"
    except AttributeError:
        return str(step)
    doc = f", {step.doc}" if getattr(step, "doc", None) else ""
    return f"{step.name} {frm} -> {to}{doc}"


@contextlib.contextmanager
def progress(stream: TextIO | None = None) -> Iterator[Progress]:
    """While active, Alembic's progress goes to ``stream`` (default stderr) as plain lines."""
    handler = Progress(stream or sys.stderr)
    logger = logging.getLogger("alembic")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
