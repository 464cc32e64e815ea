"""What a guard process leaves behind: its throwaway servers' directories in /dev/shm (or the
temp dir) and their postgres processes, told apart from those of other runs on the machine.

Other guards (other test sessions) create and remove ``schema-warden-*`` directories in
/dev/shm all the time, so "new since the test began" is not enough: a directory is left over
when it stays, and no live process of another run uses it (a postgres whose parent is gone
is left over too).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

MEMORY = Path("/dev/shm")


def server_dirs(*parents: Path) -> set[Path]:
    """Every ``schema-warden-*`` directory in ``parents`` (default: /dev/shm)."""
    found: set[Path] = set()
    for parent in parents or (MEMORY,):
        with contextlib.suppress(OSError):
            found.update(p for p in parent.glob("schema-warden-*") if p.is_dir())
    return found


def _processes() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, cmdline) of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                found[int(entry.name)] = (ppid, (entry / "cmdline").read_bytes())
    return found


def _in_use(path: Path, processes: dict[int, tuple[int, bytes]]) -> bool:
    """A process of a live run uses ``path`` (its parent is alive and not init)."""
    text = str(path).encode()
    return any(text in cmd and ppid != 1 and ppid in processes for ppid, cmd in processes.values())


def orphans(paths: set[Path]) -> list[int]:
    """Processes that use one of ``paths`` and whose parent is gone."""
    processes = _processes()
    return [
        pid
        for pid, (ppid, cmd) in processes.items()
        if any(str(p).encode() in cmd for p in paths) and (ppid == 1 or ppid not in processes)
    ]


def left_over(before: set[Path], *parents: Path, settle_s: float = 1.0) -> list[Path]:
    """Directories that appeared since ``before`` and stay: not in use by a live run, at two
    looks ``settle_s`` apart (another run may be between its mkdir and its server's start)."""
    suspects = server_dirs(*parents) - before
    for _ in range(2):
        if not suspects:
            return []
        processes = _processes()
        suspects = {p for p in suspects if p.exists() and not _in_use(p, processes)}
        time.sleep(settle_s)
    return sorted(p for p in suspects if p.exists())
