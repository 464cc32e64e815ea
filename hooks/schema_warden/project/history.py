"""The migration history read statically: where the revision files are (alembic.ini's
script_location and version_locations, as Alembic resolves them) and what each declares
(its ids, read with ``ast``; never imported). No Alembic import, no project code run."""

from __future__ import annotations

import ast
import configparser
import contextlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schema_warden.cache import static as static_cache
from schema_warden.errors import ProjectError
from schema_warden.project.frames import relative


@dataclass(frozen=True)
class RevisionFile:
    """What a revision file declares, read statically."""

    path: Path
    revision: str | None
    down_revisions: tuple[str, ...]
    depends_on: tuple[str, ...]
    imports: tuple[str, ...]  # top-level module names
    error: str | None = None  # syntax error "file:line: message"


def _literal_ids(node: ast.expr | None) -> tuple[str, ...] | None:
    if node is None:
        return ()
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def parse_revision_file(path: Path, root: Path) -> RevisionFile:
    """Read ``revision``/``down_revision``/``depends_on`` and imports without running the file."""
    try:
        source = path.read_text(encoding="utf-8")
        known = static_cache.lookup("heads", source)  # read before, in an earlier run
        if known is not None:
            revision_id, down_ids, depends_ids, imported = known
            return RevisionFile(path, revision_id, tuple(down_ids), tuple(depends_ids), tuple(imported))
        tree = parse_source(source, str(path))  # parsed once per run (open_project reuses it)
    except SyntaxError as err:  # a NUL byte gives no line number
        where = relative(path, root) + (f":{err.lineno}" if err.lineno else "")
        return RevisionFile(
            path, None, (), (), (), error=f"{where}: syntax error in migration: {err.msg}: fix the file"
        )
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return RevisionFile(path, None, (), (), (), error=f"{relative(path, root)}: cannot read: {err}")
    values: dict[str, ast.expr] = {}
    imports: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    values[target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            values[node.target.id] = node.value
        elif isinstance(node, ast.Import):
            imports.extend(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imports.append(node.module.split(".")[0])
    revision = _literal_ids(values.get("revision"))
    down = _literal_ids(values.get("down_revision"))
    depends = _literal_ids(values.get("depends_on"))
    if "revision" not in values or not revision or down is None or depends is None:
        where = relative(path, root)
        return RevisionFile(
            path,
            None,
            (),
            (),
            tuple(imports),
            error=f"{where}: revision and down_revision must be plain string literals (or None)",
        )
    found = RevisionFile(path, revision[0], down, depends, tuple(dict.fromkeys(imports)))
    static_cache.remember("heads", source, [found.revision, list(down), list(depends), list(found.imports)])
    return found


def _interpolate(value: str, here: Path) -> str:
    return value.replace("%(here)s", str(here)).replace("%%", "%")


def _split_locations(value: str, separator: str) -> list[str]:
    if separator == "os":
        return [v for v in value.split(os.pathsep) if v.strip()]
    if separator in ("space", "newline"):
        return value.split()
    if separator in (":", ";"):
        return [v for v in value.split(separator) if v.strip()]
    return [v for v in value.replace(",", " ").split() if v]


def read_ini(ini: Path) -> configparser.ConfigParser:
    """alembic.ini parsed as Alembic reads it (no interpolation here); one line naming the
    file for anything it cannot be: unreadable, not UTF-8, not an ini, no [alembic]."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        data = ini.read_bytes()
        parser.read_string(data.decode("utf-8"), source=str(ini))
    except OSError as err:
        raise ProjectError(f"{ini}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ProjectError(
            f"{ini}: not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}): save the file as UTF-8"
        ) from None
    except configparser.Error as err:
        raise ProjectError(f"{ini}: not a valid ini file: {str(err).splitlines()[0]}") from None
    if not parser.has_section("alembic"):
        raise ProjectError(
            f"{ini}: no [alembic] section: pass the project's alembic.ini (`alembic init` writes one)"
        )
    return parser


def version_dirs(ini: Path, extra: Iterable[Path] = ()) -> tuple[Path, list[Path], list[Path], bool]:
    """(script dir, version dirs, prepend_sys_path dirs, recursive) from alembic.ini, without Alembic.

    ``extra``: the ``version-locations`` setting, for an env.py that picks its versions
    directory at run time (looked in as well, after the ini's)."""
    parser = read_ini(ini)
    here = ini.parent

    def option(name: str) -> str:
        return _interpolate(parser.get("alembic", name, fallback="").strip(), here)

    location = option("script_location")
    if not location:
        raise ProjectError(f"{ini}: no script_location in section [alembic]: add the migrations directory")
    script_dir = Path(location)
    if ":" in location and not script_dir.exists():  # "package:path" resource form
        package, *parts = location.split(":")  # as Alembic: every later token is a path part
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(package)
            if spec and spec.submodule_search_locations:
                script_dir = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not script_dir.is_absolute():
        script_dir = here / script_dir  # Alembic resolves relative to the working directory too
    if not script_dir.is_dir():
        raw = parser.get("alembic", "script_location", fallback="").strip()
        template = " (an unrendered template placeholder)" if "{" in raw else ""
        raise ProjectError(
            f"{ini.name}: script_location {raw!r}{template} does not exist ({script_dir}): "
            "fix script_location in alembic.ini"
        )
    separator = option("path_separator") or option("version_path_separator") or "legacy"
    locations = option("version_locations")
    dirs = (
        [Path(p) if Path(p).is_absolute() else here / p for p in _split_locations(locations, separator)]
        if locations
        else [script_dir / "versions"]
    )
    prepend = option("prepend_sys_path")
    paths = [Path(p) if Path(p).is_absolute() else here / p for p in _split_locations(prepend, separator)]
    recursive = option("recursive_version_locations").lower() in ("true", "1", "yes")
    dirs = list(dict.fromkeys([*dirs, *extra]))
    return script_dir, dirs, paths, recursive


def revision_paths(dirs: Iterable[Path], recursive: bool) -> list[Path]:
    found: list[Path] = []
    for directory in dirs:
        if not directory.is_dir():
            continue
        pattern = "**/*.py" if recursive else "*.py"
        for path in sorted(directory.glob(pattern)):
            if path.name == "__init__.py" or path.name.startswith(".#"):
                continue
            found.append(path)
    return found


# --- revision files read statically for the lazy revision map (provably what importing gives) ---

# --- revision files read statically, modules imported on first use ------------------------

_ID_NAMES = ("revision", "down_revision", "branch_labels", "depends_on")
# anything that could set a module attribute other than by a plain top-level assignment
# (or answer getattr for a missing one): such a file is loaded eagerly, as Alembic does.
# The words are looked for as substrings first (fast), then as whole words.
_DYNAMIC_HINTS = (
    "global",  # also globals
    "nonlocal",
    "locals",
    "vars",
    "setattr",
    "exec",
    "eval",
    "__import__",
    "__getattr__",
    "__dict__",
    "modules",  # sys.modules
    "import_module",
    "__builtins__",
)
_DYNAMIC = re.compile(r"\b(?:" + "|".join(_DYNAMIC_HINTS) + r"|globals)\b")
_parsed: dict[str, ast.Module] = {}
_PARSED_MAX = 4096


def parse_source(source: str, filename: str) -> ast.Module:
    """``ast.parse`` of a file's text, remembered by the text (parsed once per run).

    The trees are shared: read them, never change them. SyntaxError as ``ast.parse``.
    """
    tree = _parsed.get(source)
    if tree is None:
        tree = ast.parse(source, filename=filename)
        if len(_parsed) >= _PARSED_MAX:
            _parsed.clear()
        _parsed[source] = tree
    return tree


@dataclass(frozen=True)
class StaticRevision:
    """A revision file's ids and docstring, read without importing it."""

    path: str
    revision: str
    down_revision: Any  # None, a str, or a tuple / list of them, as written
    branch_labels: Any
    depends_on: Any
    docstring: str | None  # the first statement's string, as written


def _ids_value(node: ast.expr) -> tuple[bool, Any]:
    """(ok, value) of a literal that Alembic reads as revision ids: None, str, tuple/list of str."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None
    if value is None or isinstance(value, str):
        return True, value
    if isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value):
        return True, value
    return False, None


def _bound_names(node: ast.AST) -> Iterator[str]:
    """Names a statement could bind or delete in the module's namespace (over-approximated)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and not isinstance(sub.ctx, ast.Load):
            yield sub.id
        elif isinstance(sub, ast.alias):  # "*" for a star import: anything
            yield sub.asname or sub.name.split(".")[0]
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.ExceptHandler)):
            yield sub.name or ""
        elif isinstance(sub, (ast.MatchAs, ast.MatchStar)) and sub.name:
            yield sub.name
        elif isinstance(sub, ast.MatchMapping) and sub.rest:
            yield sub.rest


def _plain_assignment(stmt: ast.stmt) -> tuple[str | None, ast.expr | None]:
    """(name, value) of ``name = value`` / ``name: T = value``; (None, None) for other statements."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id, stmt.value
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
        return stmt.target.id, stmt.value
    return None, None


def static_revision(path: str | os.PathLike[str]) -> StaticRevision | None:
    """The ids a revision file assigns, when provably what importing it would give; else None.

    Provable: the file parses, each of revision / down_revision / branch_labels /
    depends_on bound at most once and only by a plain top-level assignment of a literal
    (revision a str, the others None, a str or a tuple / list of str; revision and
    down_revision present), and nothing that sets module attributes another way. What a file
    gives is remembered by its content while a :mod:`schema_warden.cache.static` is active.
    """
    from schema_warden.cache import static as static_cache

    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    known = static_cache.lookup("lazy", raw)  # read before, in an earlier run
    if known is not None:
        if not known:  # not provably static
            return None
        ids = [static_cache.decode_ids(v) for v in known[1:4]]
        return StaticRevision(os.fspath(path), known[0], ids[0], ids[1], ids[2], known[4])
    found = _read_static(path, raw)
    if found is None:
        static_cache.remember("lazy", raw, [])
    else:
        written = (found.down_revision, found.branch_labels, found.depends_on)
        ids = [static_cache.encode_ids(v) for v in written]
        static_cache.remember("lazy", raw, [found.revision, *ids, found.docstring])
    return found


def _read_static(path: str | os.PathLike[str], raw: bytes) -> StaticRevision | None:
    import importlib.util

    try:
        source = importlib.util.decode_source(raw)  # the text Python's import compiles
    except (SyntaxError, UnicodeDecodeError, LookupError):
        return None
    if ":=" in source or (any(hint in source for hint in _DYNAMIC_HINTS) and _DYNAMIC.search(source)):
        return None
    try:
        tree = parse_source(source, os.fspath(path))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    values: dict[str, Any] = {}
    for stmt in tree.body:
        name, value = _plain_assignment(stmt)
        if name == "__doc__":
            return None
        if name in _ID_NAMES and value is not None:
            ok, literal = _ids_value(value)
            if not ok or name in values:
                return None
            values[name] = literal
            continue
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [stmt.name]  # the body is its own scope
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names = [alias.asname or alias.name.split(".")[0] for alias in stmt.names]
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # the docstring
        else:
            names = list(_bound_names(stmt if value is None else value))
        if any(bound in _ID_NAMES or bound in ("__doc__", "*") for bound in names):
            return None
    revision = values.get("revision")
    if not isinstance(revision, str) or "down_revision" not in values:
        return None
    doc = None
    first = tree.body[0].value if tree.body and isinstance(tree.body[0], ast.Expr) else None
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        doc = first.value
    return StaticRevision(
        os.fspath(path),
        revision,
        values["down_revision"],
        values.get("branch_labels"),
        values.get("depends_on"),
        doc,
    )


def _compiled_docstring(doc: str | None, path: str) -> str | None:
    """``module.__doc__`` for a file whose first statement is ``doc``, as Python compiles it."""
    if doc is None or sys.flags.optimize >= 2:
        return None
    if sys.version_info < (3, 13):
        return doc
    # Python 3.13+ removes the docstring's common indentation at compile time
    module = ast.Module(body=[ast.Expr(value=ast.Constant(value=doc))], type_ignores=[])
    namespace: dict[str, Any] = {}
    exec(compile(ast.fix_missing_locations(module), path, "exec"), namespace)
    return namespace.get("__doc__")


def downgrade_is_empty(path: str | os.PathLike[str]) -> bool | None:
    """True when ``downgrade()`` does nothing (only ``pass``, ``...`` and docstrings); None if absent."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "downgrade":
            return all(
                isinstance(stmt, ast.Pass)
                or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
                for stmt in node.body
            )
    return None
