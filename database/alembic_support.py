"""Alembic for people: what autogenerate compares, and plain progress lines.

env.py and manage.py share these: which objects autogenerate sees (``include_object``), the
comparison options, and :func:`progress`, which shows Alembic's "Running upgrade ..." lines
without the logging format and remembers which revision is running when one fails. Readable
lines for autogenerate's diffs come from :func:`schema_warden.api.describe_operations`.
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
