"""The errors of manage.py, and one readable line for the ones Alembic and SQLAlchemy raise.

Every error carries an ``exit_code`` (manage.py's contract: 1 problem found or migration
failed, 2 usage or configuration error, 3 database or tool unreachable). Nothing here ever
prints the password of DATABASE_URL: :func:`scrub` removes it from any text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from schema_warden.api import WardenError, one_line


class ManageError(WardenError):
    """A failure of manage.py a person can act on: the guard's error family, with manage.py's
    exit codes; ``str(err)`` is the one-line message."""

    exit_code = 1


class ConfigError(ManageError):
    """DATABASE_URL missing or malformed."""

    exit_code = 2


class DatabaseUnreachable(ManageError):
    """Cannot connect (wrong password, unknown host, refused, timeout)."""

    exit_code = 3


class EmptyMigration(ManageError):
    """Autogenerate found nothing to migrate."""

    exit_code = 1


class MigrationError(ManageError):
    """A migration raised: its revision is named, its transaction rolled back."""

    exit_code = 1


def secrets_of(url: str | None) -> set[str]:
    """The password of a URL, as written and percent-decoded (both may show up in a message).

    Tolerant on purpose: a malformed URL (no scheme, a bad port) still has its password found.
    """
    if not url:
        return set()
    url = url.strip()
    rest = url.partition("://")[2] or url
    netloc = re.split(r"[/?]", rest, maxsplit=1)[0]
    found: set[str] = set()
    if "@" in netloc:
        userinfo = netloc.rpartition("@")[0]
        if ":" in userinfo:
            found.add(userinfo.split(":", 1)[1])
    for match in re.finditer(r"(?:[?&])password=([^&]*)", url):
        found.add(match.group(1))
    found |= {unquote(s) for s in found}
    return {s for s in found if s}


def scrub(text: str, url: str | None = None) -> str:
    """Replace the password of ``url`` (default: DATABASE_URL) with ``***`` (see :func:`mask_secrets`)."""
    return mask_secrets(text, secrets_of(url if url is not None else os.environ.get("DATABASE_URL")))


# a URL in a message; trailing punctuation belongs to the sentence, not to the URL
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>).,;:]")


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``***`` for each secret: in a URL its password field only, elsewhere where it is a whole word.

    A short password also occurs inside other words: ``p`` in ``postgresql`` and in
    ``ep-cool-pooler``. So the password is masked where it is a field (``user:***@``,
    ``password=***``), and in the rest of the text only where no letter or digit touches it;
    the other parts of a URL are left as they are.
    """
    forms = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not forms:
        return text
    for secret in forms:
        text = text.replace(f":{secret}@", ":***@")
        text = re.sub(rf"(?i)([?&]password=){re.escape(secret)}(?=[&#\s'\"]|$)", r"\g<1>***", text)
    words = re.compile("|".join(_whole_word(secret) for secret in forms))
    pieces: list[str] = []
    last = 0
    for url in _URL_IN_TEXT.finditer(text):
        pieces += [words.sub("***", text[last : url.start()]), url.group()]
        last = url.end()
    pieces.append(words.sub("***", text[last:]))
    return "".join(pieces)


def _whole_word(secret: str) -> str:
    left = r"(?<!\w)" if re.match(r"\w", secret[0]) else ""
    right = r"(?!\w)" if re.match(r"\w", secret[-1]) else ""
    return left + re.escape(secret) + right


def _driver_message(err: BaseException) -> str:
    orig = getattr(err, "orig", None)
    return one_line(str(orig if orig is not None else err))


def _line_in(err: BaseException, path: str) -> int | None:
    """The last line of ``path`` in the traceback of ``err`` (where a migration file failed)."""
    line = None
    tb = err.__traceback__
    while tb is not None:
        if os.path.abspath(tb.tb_frame.f_code.co_filename) == os.path.abspath(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def describe_step_failure(step: Any, err: BaseException) -> MigrationError:
    """A migration step (Alembic's RevisionStep) raised ``err``: name the revision, file and cause."""
    from sqlalchemy import exc

    script = getattr(step, "revision", None)
    rev = getattr(script, "revision", "?")
    path = getattr(script, "path", None)
    where = f"revision {rev}"
    if path:
        line = _line_in(err, path)
        where += f" ({_display_path(path)}{f', line {line}' if line else ''})"
    what = f"{step.name} {_revs(step.from_revisions_no_deps)} -> {_revs(step.to_revisions_no_deps)}"
    if isinstance(err, exc.DBAPIError):
        cause = _driver_message(err)
    else:
        cause = f"{type(err).__name__}: {one_line(str(err))}"
    detail = ""
    statement = getattr(err, "statement", None)
    if statement:
        sql = re.sub(r"\s+", " ", str(statement)).strip()
        detail = f"  SQL: {sql[:300]}{' ...' if len(sql) > 300 else ''}"
    return MigrationError(
        f"{where} failed during {what}: {cause}; the transaction was rolled back, "
        "fix the migration and run the command again",
        detail=detail,
    )


def _revs(revs: Any) -> str:
    return ", ".join(revs) if revs else "<base>"


def _display_path(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def describe_unexpected(err: BaseException) -> tuple[str, int]:
    """(one-line message, exit code) for an exception manage.py did not raise itself."""
    from alembic.util import CommandError
    from sqlalchemy import exc

    if isinstance(err, CommandError):
        message = one_line(str(err))
        if "not up to date" in message:
            message += " (run python database/manage.py db-upgrade first)"
        return message, 2
    if isinstance(err, exc.OperationalError):
        return f"database error: {_driver_message(err)}", 3
    if isinstance(err, exc.DBAPIError):
        return f"SQL failed: {_driver_message(err)}", 1
    if isinstance(err, SyntaxError):
        return f"syntax error in {err.filename}, line {err.lineno}: {err.msg}", 2
    if isinstance(err, ImportError):
        return f"cannot import the project's code: {one_line(str(err))}", 2
    return f"{type(err).__name__}: {one_line(str(err))}", 1
