"""A revision map whose modules are imported on first use: built from the files' literal ids
(read statically), imported as Alembic imports them when a step needs one."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from schema_warden.errors import ProjectError
from schema_warden.project.frames import import_failure, relative
from schema_warden.project.history import StaticRevision, _compiled_docstring, static_revision


def lazy_revision_map(script: Any, root: Path, prepend_sys_path: Iterable[str] = ()) -> bool:
    """Give ``script`` (a ScriptDirectory) a revision map of lazily imported revisions.

    True when done; False (the map untouched: Alembic imports every file) when a file is not
    statically readable, for ``sourceless`` projects, or when Alembic's file rules changed.
    """
    try:
        from alembic.script import Script
        from alembic.script import base as script_base
        from alembic.script.revision import RevisionMap

        source_rule = script_base._only_source_rev_file
        list_dir = Script._list_py_dir
        locations = script._version_locations
    except (ImportError, AttributeError):
        return False
    if script.sourceless:
        return False
    found: list[StaticRevision | Path] = []  # a revision, or a file listed twice (warned about)
    seen: set[Path] = set()
    for location in (loc for loc in locations if loc.exists()):
        for file_path in list_dir(script, location):
            real = file_path.resolve()
            if real in seen:
                found.append(real)
                continue
            seen.add(real)
            if not source_rule.match(real.name):
                continue
            static = static_revision(real)
            if static is None:
                return False
            found.append(static)
    prepend = list(prepend_sys_path)

    def load() -> Iterator[Any]:
        from alembic import util

        for item in found:  # in Alembic's order, its warnings in between
            if isinstance(item, StaticRevision):
                yield _lazy_script_class()(item, root, prepend)
            else:
                util.warn(f"File {item} loaded twice! ignoring. Please ensure version_locations is unique.")

    script.revision_map = RevisionMap(load)
    return True


@functools.cache
def _lazy_script_class() -> type:
    """alembic's Script with the module imported on first use (alembic imported only when needed)."""
    from alembic import util
    from alembic.script import Script
    from alembic.script.revision import Revision

    class LazyScript(Script):
        def __init__(self, static: StaticRevision, root: Path, prepend: list[str]) -> None:
            self._static = static
            self._root = root
            self._prepend = prepend
            self._module: Any = None
            self.path = static.path
            Revision.__init__(
                self,
                static.revision,
                static.down_revision,
                branch_labels=util.to_tuple(static.branch_labels, default=()),
                dependencies=util.to_tuple(static.depends_on, default=()),
            )

        @property  # type: ignore[override]
        def module(self) -> Any:
            if self._module is None:
                self._module = _import_revision(self._static, self._root, self._prepend)
            return self._module

        @module.setter
        def module(self, value: Any) -> None:
            self._module = value

        @property
        def module_loaded(self) -> bool:
            return self._module is not None

        @property
        def longdoc(self) -> str:
            if self._module is not None:
                return str(super().longdoc)
            doc = _compiled_docstring(self._static.docstring, self.path)
            return doc.strip() if doc else ""

    return LazyScript


def _import_revision(static: StaticRevision, root: Path, prepend: list[str]) -> Any:
    """Import a revision file as Alembic does (its module naming, prepend_sys_path), no bytecode."""
    from alembic.util import load_python_file

    path = Path(static.path)
    missing = [entry for entry in prepend if entry not in sys.path]
    sys.path[:0] = missing
    saved_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        module = load_python_file(path.parent, path.name)
    except Exception as err:
        raise import_failure(err, root) from None
    finally:
        sys.dont_write_bytecode = saved_bytecode
        for entry in missing:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)
    imported = (
        getattr(module, "revision", None),
        getattr(module, "down_revision", None),
        getattr(module, "branch_labels", None),
        getattr(module, "depends_on", None),
    )
    if imported != (static.revision, static.down_revision, static.branch_labels, static.depends_on):
        raise ProjectError(
            f"{relative(path, root)}: its revision ids changed when it was imported: assign revision, "
            "down_revision, branch_labels and depends_on once, as plain literals"
        )
    return module
