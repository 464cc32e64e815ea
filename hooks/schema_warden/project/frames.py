"""Errors in the project's code as a person reads them: its own frames only, paths relative
to the project."""

from __future__ import annotations

import contextlib
import os
import traceback
from pathlib import Path

from schema_warden.errors import ProjectError, one_line
from schema_warden.project.imports import is_under

# --- errors in the project's code, trimmed to the project's own frames --------------------


def is_user_frame(filename: str, root: Path) -> bool:
    return is_under(filename, [root]) and "site-packages" not in filename


def user_traceback(err: BaseException, root: Path) -> str:
    """The traceback of ``err`` with only the project's frames (paths relative to ``root``)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if is_user_frame(f.filename, root)]
    lines = []
    for frame in frames:
        lines.append(f'  File "{relative(frame.filename, root)}", line {frame.lineno}, in {frame.name}')
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    lines.append(f"{type(err).__name__}: {one_line(str(err))}")
    return "\n".join(lines)


def relative(path: str | os.PathLike[str], root: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).resolve().relative_to(root))
    return str(path)


def syntax_error(err: SyntaxError, root: Path, what: str) -> ProjectError:
    where = relative(err.filename or "?", root)
    return ProjectError(
        f"{where}:{err.lineno}: syntax error in {what}: {err.msg}: fix the file",
        detail=(err.text or "").rstrip(),
    )


def user_frame_files(err: BaseException) -> list[str]:
    return [f.filename for f in traceback.extract_tb(err.__traceback__)]


def import_failure(err: Exception, root: Path) -> ProjectError:
    """The ProjectError for a revision file that does not import (the file named first)."""
    if isinstance(err, SyntaxError):
        return syntax_error(err, root, "migration")
    frames = [f for f in user_frame_files(err) if is_user_frame(f, root)]
    where = relative(frames[0], root) if frames else "a migration file"
    return ProjectError(
        f"{where} failed to import: {type(err).__name__}: {one_line(str(err))}",
        detail=user_traceback(err, root),
    )
