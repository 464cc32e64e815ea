"""The project's own modules imported fresh for a block and forgotten after, so that two
versions of one project (or many fixture projects) load in one process."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

_GUARD_PACKAGE = __name__.split(".")[0]


# --- imports of the project's own modules ---------------------------------------------


def _top_level_names(directories: Iterable[Path]) -> set[str]:
    names: set[str] = set()
    for directory in directories:
        with contextlib.suppress(OSError):
            for entry in directory.iterdir():
                if entry.suffix == ".py" and entry.stem.isidentifier():
                    names.add(entry.stem)
                elif entry.is_dir() and entry.name.isidentifier():
                    names.add(entry.name)
    names.discard(_GUARD_PACKAGE)
    return names


def _prefixes(roots: Iterable[Path]) -> tuple[str, ...]:
    found: list[str] = []
    for root in roots:
        for text in (os.path.abspath(root), os.path.realpath(root)):
            found.append(text.rstrip(os.sep) + os.sep)
    return tuple(dict.fromkeys(found))


def is_under(path: str | None, roots: Iterable[Path]) -> bool:
    """Path prefix test without touching the disk (called for every loaded module)."""
    if not path:
        return False
    return os.path.abspath(path).startswith(_prefixes(roots))


def _installed_prefixes() -> tuple[str, ...]:
    import sysconfig

    paths = sysconfig.get_paths()
    dirs = {paths.get(key, "") for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(os.path.join(os.path.abspath(d), "") for d in dirs if d)


def _installed(path: str, prefixes: tuple[str, ...]) -> bool:
    """Installed code (stdlib, site-packages, a virtualenv inside the project): never the project's."""
    return "site-packages" in path or "dist-packages" in path or path.startswith(prefixes)


def _project_modules(names: set[str], roots: list[Path]) -> list[str]:
    prefixes = _prefixes(roots)
    installed = _installed_prefixes()
    found = []
    for name, module in list(sys.modules.items()):
        top = name.split(".")[0]
        if top == _GUARD_PACKAGE:
            continue
        path = getattr(module, "__file__", None)
        if path is None:  # namespace packages (no __init__.py) of the project, by name
            if top in names and list(getattr(module, "__path__", [])):
                found.append(name)
            continue
        path = os.path.abspath(path)
        if _installed(path, installed):
            continue
        if top in names or path.startswith(prefixes):
            found.append(name)
    return found


@contextlib.contextmanager
def isolated_imports(root: Path, extra_paths: Iterable[Path] = ()) -> Iterator[None]:
    """Import the project's modules fresh inside the block and forget them after.

    Modules that the project could shadow (its top-level names, e.g. ``database`` or
    ``app``) are set aside for the block and put back after, and ``sys.path`` is restored,
    so two versions of one project, or many fixture projects, load in one process.

    No bytecode is written meanwhile: a .pyc is trusted by its source's mtime (whole
    seconds) and size, so a model edited within the second of an earlier load (same size:
    ``String(32)`` -> ``String(64)``) would be read stale; and the guard leaves no
    ``__pycache__`` in the user's tree.
    """
    roots = [Path(root).resolve(), *(Path(p).resolve() for p in extra_paths)]
    names = _top_level_names(roots)
    saved_path = list(sys.path)
    saved_modules = {name: sys.modules.pop(name) for name in _project_modules(names, roots)}
    saved_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        yield
    finally:
        sys.dont_write_bytecode = saved_bytecode
        for name in _project_modules(names, roots):
            sys.modules.pop(name, None)
        sys.modules.update(saved_modules)
        sys.path[:] = saved_path
