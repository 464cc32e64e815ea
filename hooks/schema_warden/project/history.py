"""The migration history read statically: where the revision files are (alembic.ini's
script_location and version_locations, as Alembic resolves them) and what each declares
(its ids, read with ``ast``; never imported). No Alembic import, no project code run."""

from __future__ import annotations

import ast
import configparser
import contextlib
import importlib.util
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from schema_warden.cache import static as static_cache
from schema_warden.errors import ProjectError
from schema_warden.project.loader import parse_source, relative


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


def version_dirs(ini: Path, extra: Iterable[Path] = ()) -> tuple[Path, list[Path], list[Path], bool]:
    """(script dir, version dirs, prepend_sys_path dirs, recursive) from alembic.ini, without Alembic.

    ``extra``: the ``version-locations`` setting, for an env.py that picks its versions
    directory at run time (looked in as well, after the ini's)."""
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
