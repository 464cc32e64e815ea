"""The project's code may not end the guard's process: ``sys.exit()`` and ``os._exit()`` in
env.py, a model module or a migration become an exception the guard reports.

``sys.exit()`` raises SystemExit, which the guard catches where the project's code runs.
``os._exit()`` ends the process at once (no cleanup, no report, the throwaway server's files
left in /dev/shm), so while :func:`exits_raise` is active it is replaced by a function that
raises :class:`ExitCalled` (a SystemExit: every handler of SystemExit sees it too). The
guard's own ends of a process (a forked worker's last call) use :data:`real_exit`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

real_exit = os._exit  # the guard's own way out of a forked child: never the replacement

_lock = threading.Lock()
_depth = [0]


class ExitCalled(SystemExit):
    """The project's code called ``os._exit(status)``."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status

    def __str__(self) -> str:
        return f"os._exit({self.status}) called: the guard does not let the project end its process"


def _raising_exit(status: int) -> NoReturn:
    raise ExitCalled(status)


@contextlib.contextmanager
def exits_raise() -> Iterator[None]:
    """``os._exit`` raises :class:`ExitCalled` within the block (nested blocks allowed)."""
    with _lock:
        _depth[0] += 1
        os._exit = _raising_exit
    try:
        yield
    finally:
        with _lock:
            _depth[0] -= 1
            if _depth[0] == 0:
                os._exit = real_exit


def exit_text(err: SystemExit) -> str:
    """``called sys.exit(0) ...`` / ``called os._exit(3) ...``: an exit as a message reads it."""
    if isinstance(err, ExitCalled):
        call = f"os._exit({err.status})"
    else:
        call = "sys.exit(" + ("" if err.code is None else repr(err.code)) + ")"
    return f"called {call}: the guard does not let the project end its process (remove the call)"


def culprit(err: BaseException, root: Path, env_py: Path | None, revisions: list[Any]) -> str:
    """What in the project raised ``err``: ``revision 0002 (versions/0002_x.py)``, ``env.py``
    or ``a module of the project`` (the innermost of the project's frames decides)."""
    import traceback

    from schema_warden.project.frames import is_user_frame, relative

    by_path = {str(Path(r.path).resolve()): r for r in revisions}
    env = str(env_py.resolve()) if env_py is not None else None
    frames = [f.filename for f in traceback.extract_tb(err.__traceback__) if is_user_frame(f.filename, root)]
    for filename in reversed(frames):
        resolved = str(Path(filename).resolve())
        if resolved in by_path:
            revision = by_path[resolved]
            return f"revision {revision.revision} ({relative(revision.path, root)})"
        if env_py is not None and resolved == env:
            return relative(env_py, root)
    if frames:
        return relative(frames[-1], root)
    return "the project's code"
