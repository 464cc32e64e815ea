"""Turn errors from Alembic, SQLAlchemy and user migrations into one readable line."""

from __future__ import annotations

import re


def describe_unexpected(err: BaseException) -> tuple[str, int]:
    """(one-line message, exit code) for an exception manage.py did not raise itself."""
    from alembic.util import CommandError
    from sqlalchemy import exc

    if isinstance(err, CommandError):
        return _one_line(str(err)), 2
    if isinstance(err, exc.OperationalError):
        return f"database error: {_one_line(str(err.orig or err))}", 3
    if isinstance(err, exc.DBAPIError):
        return f"SQL failed: {_one_line(str(err.orig or err))}", 1
    if isinstance(err, SyntaxError):
        return f"syntax error in {err.filename}, line {err.lineno}: {err.msg}", 2
    return f"{type(err).__name__}: {_one_line(str(err))}", 1


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().splitlines()[0] if text.strip() else text)
