"""``[tool.schema-warden]`` of pyproject.toml: the settings, their defaults and checks."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schema_warden.errors import ProjectError

DEFAULT_EXCLUDE_TABLES = ("_prisma_migrations",)
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Settings:
    """``[tool.schema-warden]`` of pyproject.toml, with defaults; paths are absolute."""

    alembic_config: Path
    exclude_tables: frozenset[str] = frozenset(DEFAULT_EXCLUDE_TABLES)
    schemas: tuple[str, ...] = ("public",)
    postgres_version: int | None = None
    irreversible: frozenset[str] = frozenset()
    no_data: frozenset[str] = frozenset()  # revisions proven on empty tables (no generated rows)
    models: tuple[str, ...] = ()  # modules imported before env.py runs (their tables join its metadata)
    multiple_heads: bool = False  # several heads by design: every head is proven
    minimum_downgrade_revision: str | None = None  # downgrades are proven down to it only
    version_locations: tuple[Path, ...] = ()  # where the revision files are when env.py picks them
    baseline: str | None = None  # "pkg.module:Base" or an absolute path to a .sql file
    baseline_revision: str | None = None  # the baseline is stamped at this revision ("head": every head)
    accepted_findings: Path | None = None  # findings accepted as history (None: beside alembic.ini)
    timeout: float = DEFAULT_TIMEOUT_S  # seconds a check may run (--timeout overrides)
    lint: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ProjectError(f"{path}: not valid TOML: {err}: fix the file") from None


def _string_list(table: dict[str, Any], key: str, default: Iterable[str], where: Path) -> tuple[str, ...]:
    value = table.get(key, list(default))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise ProjectError(f"{where}: [tool.schema-warden] {key} must be a list of strings")
    return tuple(str(v) for v in value)


# every key of [tool.schema-warden]: any other is a typo, and a typo must not silently do nothing
SETTINGS_KEYS = (
    "alembic-config",
    "exclude-tables",
    "schemas",
    "postgres-version",
    "irreversible",
    "lint",
    "models",
    "baseline",
    "baseline-revision",
    "multiple-heads",
    "minimum-downgrade-revision",
    "version-locations",
    "no-data",
    "accepted-findings",
    "timeout",
)


def load_settings(config: str | os.PathLike[str] | None = None, *, cwd: Path | None = None) -> Settings:
    """Settings for the project at ``cwd``: ``--config`` > ``alembic-config`` > ``./alembic.ini``.

    pyproject.toml is read from the directory of an explicit ``--config``, else from ``cwd``.
    """
    cwd = (cwd or Path.cwd()).resolve()
    explicit = Path(config).expanduser() if config else None
    if explicit is not None and not explicit.is_absolute():
        explicit = cwd / explicit
    base = explicit.parent if explicit is not None else cwd
    pyproject = base / "pyproject.toml"
    if not pyproject.is_file() and explicit is not None:
        pyproject = cwd / "pyproject.toml"
    table: dict[str, Any] = {}
    if pyproject.is_file():
        table = dict(_read_toml(pyproject).get("tool", {}).get("schema-warden", {}))
    unknown = [key for key in table if key not in SETTINGS_KEYS]
    if unknown:
        import difflib

        named = []
        for key in unknown:
            close = difflib.get_close_matches(key.replace("_", "-").lower(), SETTINGS_KEYS, n=1)
            named.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ProjectError(
            f"{pyproject}: [tool.schema-warden] has no setting {', '.join(named)}: "
            f"the settings are {', '.join(SETTINGS_KEYS)}"
        )
    if explicit is not None:
        ini = explicit
    elif table.get("alembic-config"):
        ini = pyproject.parent / str(table["alembic-config"])
    else:
        ini = cwd / "alembic.ini"
    version = table.get("postgres-version")
    if version is not None and not isinstance(version, int):
        raise ProjectError(f"{pyproject}: [tool.schema-warden] postgres-version must be a number like 16")
    lint = table.get("lint", {})
    multiple_heads = table.get("multiple-heads", False)
    if not isinstance(multiple_heads, bool):
        raise ProjectError(f"{pyproject}: [tool.schema-warden] multiple-heads must be true or false")
    minimum = table.get("minimum-downgrade-revision")
    if minimum is not None and not isinstance(minimum, str):
        raise ProjectError(
            f'{pyproject}: [tool.schema-warden] minimum-downgrade-revision must be a revision id like "0003"'
        )
    baseline = table.get("baseline")
    if baseline is not None and (not isinstance(baseline, str) or not baseline.strip()):
        raise ProjectError(
            f"{pyproject}: [tool.schema-warden] baseline must be "
            '"package.module:Base" or a path to a .sql file'
        )
    if isinstance(baseline, str) and baseline.endswith(".sql"):
        baseline = str((pyproject.parent / baseline).resolve())
    baseline_revision = table.get("baseline-revision")
    if baseline_revision is not None and (not isinstance(baseline_revision, str) or baseline is None):
        raise ProjectError(
            f'{pyproject}: [tool.schema-warden] baseline-revision must be a revision id or "head", '
            "with baseline set"
        )
    accepted = table.get("accepted-findings")
    if accepted is not None and not isinstance(accepted, str):
        raise ProjectError(f"{pyproject}: [tool.schema-warden] accepted-findings must be a file path")
    timeout = table.get("timeout", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise ProjectError(
            f"{pyproject}: [tool.schema-warden] timeout must be a positive number of seconds like 600"
        )
    listed = _string_list(table, "version-locations", (), pyproject)
    locations = tuple((pyproject.parent / entry).resolve() for entry in listed)
    return Settings(
        alembic_config=ini.resolve(),
        exclude_tables=frozenset(_string_list(table, "exclude-tables", DEFAULT_EXCLUDE_TABLES, pyproject)),
        schemas=_string_list(table, "schemas", ("public",), pyproject),
        postgres_version=version,
        irreversible=frozenset(_string_list(table, "irreversible", (), pyproject)),
        no_data=frozenset(_string_list(table, "no-data", (), pyproject)),
        models=_string_list(table, "models", (), pyproject),
        multiple_heads=multiple_heads,
        minimum_downgrade_revision=minimum,
        version_locations=locations,
        baseline=baseline,
        baseline_revision=baseline_revision,
        accepted_findings=(pyproject.parent / accepted).resolve() if accepted else None,
        timeout=float(timeout),
        lint=dict(lint) if isinstance(lint, dict) else {},
        raw=table,
    )


def find_config(config: str | os.PathLike[str] | None = None, *, cwd: Path | None = None) -> Settings:
    """Settings whose alembic.ini exists, or ProjectError naming where it looked and the fix."""
    settings = load_settings(config, cwd=cwd)
    if not settings.alembic_config.is_file():
        raise ProjectError(
            f"no alembic.ini at {settings.alembic_config}: run from the project root, pass "
            "--config PATH, or set alembic-config in [tool.schema-warden] of pyproject.toml"
        )
    return settings
