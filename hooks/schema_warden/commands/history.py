"""``schema-warden history [--update]``: applied migrations must not be edited.

An integrity file in the versions directory, ``schema-warden.sum`` (the idea of atlas.sum),
records a hash per migration file and, on its first line, a hash of all of them:

    h1:<total>
    20261125_0001_create_temperature_readings.py h1:<sha256, base64>
    20261125_0002_add_device_id_to_temperature_readings.py h1:<...>

A recorded migration whose content changed, a recorded file that is gone and a migration
the file does not know all fail. Because every new migration changes the first line, two
branches that each add one conflict in git: the problem shows at the merge, before a
database sees two heads. Hashes ignore line endings only (CRLF checkouts are the same file).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from schema_warden.errors import EXIT_OK, EXIT_PROBLEMS, ProjectError, guarded
from schema_warden.project.loader import Project, loaded_project

SUM_FILE = "schema-warden.sum"
PREFIX = "h1:"
CONFLICT_MARKERS = ("<<<<<<<", "=======", ">>>>>>>", "|||||||")
ACCEPTED = {
    "changed": "recorded the edited",
    "missing": "recorded the new",
    "removed": "forgot the removed",
    "renamed": "recorded the renamed",
    "total": "recomputed the total of",
}


@dataclass(frozen=True)
class Entry:
    file: str  # relative to the versions directory, "/" separated
    digest: str  # "h1:..." of the file's content
    revision: str | None = None


@dataclass(frozen=True)
class Problem:
    kind: str  # "changed" | "missing" | "removed" | "renamed" | "unrecorded-file" | "total"
    file: str
    revision: str | None
    message: str


# --- the pure part: hashes, the file format, the comparison ---------------------------------


def digest(content: bytes) -> str:
    normalized = content.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return PREFIX + base64.b64encode(hashlib.sha256(normalized).digest()).decode("ascii")


def total(entries: Iterable[Entry]) -> str:
    return digest("".join(f"{e.file} {e.digest}\n" for e in entries).encode("utf-8"))


def render_sum(entries: Sequence[Entry]) -> str:
    lines = [total(entries), *(f"{e.file} {e.digest}" for e in entries)]
    return "\n".join(lines) + "\n"


class SumFileError(ValueError):
    """The integrity file cannot be read as one (conflict markers, bad lines)."""


def parse_sum(text: str) -> tuple[str, list[Entry]]:
    lines = text.splitlines()
    if any(line.startswith(CONFLICT_MARKERS) for line in lines):
        raise SumFileError("has git conflict markers")
    if not lines or not lines[0].startswith(PREFIX):
        raise SumFileError("does not start with the total hash line 'h1:...'")
    entries = []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        if not name or not value.startswith(PREFIX):
            raise SumFileError(f"line {number} is not '<file> h1:<hash>'")
        entries.append(Entry(name, value))
    return lines[0].strip(), entries


def _name(entry: Entry) -> str:
    base = Path(entry.file).name
    return f"revision {entry.revision} ({base})" if entry.revision else base


def compare(recorded_total: str, recorded: Sequence[Entry], current: Sequence[Entry]) -> list[Problem]:
    """What differs between the integrity file and the migrations on disk, in file order."""
    problems: list[Problem] = []
    if total(recorded) != recorded_total:
        problems.append(
            Problem(
                "total",
                SUM_FILE,
                None,
                f"{SUM_FILE} was edited by hand: its total does not match its lines; "
                "check the migrations, then run `schema-warden history --update`",
            )
        )
    now = {e.file: e for e in current}
    before = {e.file: e for e in recorded}
    gone = [e for e in recorded if e.file not in now]
    new = [e for e in current if e.file not in before]
    renamed: dict[str, Entry] = {}
    for old in gone:
        twin = next((e for e in new if e.digest == old.digest and e.file not in renamed), None)
        if twin is not None:
            renamed[twin.file] = old
    for entry in recorded:
        present = now.get(entry.file)
        if present is not None and present.digest != entry.digest:
            problems.append(
                Problem(
                    "changed",
                    entry.file,
                    present.revision,
                    f"{_name(present)} was changed after it was recorded: databases that already applied it "
                    "will not see this change; write a new migration instead (to accept the edit "
                    "deliberately: `schema-warden history --update`)",
                )
            )
        elif present is None and entry not in renamed.values():
            problems.append(
                Problem(
                    "removed",
                    entry.file,
                    None,
                    f"{entry.file} was recorded but is gone: databases that applied it keep its changes; "
                    "restore it from git, or if that is deliberate run `schema-warden history --update`",
                )
            )
    for entry in new:
        if entry.file in renamed:
            problems.append(
                Problem(
                    "renamed",
                    entry.file,
                    entry.revision,
                    f"{_name(entry)} was renamed from {renamed[entry.file].file} (same content): "
                    "run `schema-warden history --update` and commit the file",
                )
            )
        else:
            problems.append(
                Problem(
                    "missing",
                    entry.file,
                    entry.revision,
                    f"{_name(entry)} is a new migration not recorded in {SUM_FILE}: "
                    "run `schema-warden history --update` and commit the file",
                )
            )
    return problems


# --- the project's files -------------------------------------------------------------------------


def sum_path(project: Project) -> Path:
    return Path(project.script.versions) / SUM_FILE


def current_entries(project: Project) -> list[Entry]:
    """One entry per revision file, base -> head (so new migrations append at the end)."""
    versions = Path(project.script.versions).resolve()
    entries = []
    for script in project.revisions():
        path = Path(script.path).resolve()
        try:
            content = path.read_bytes()
        except OSError as err:
            raise ProjectError(f"{path}: cannot read the migration: {err}") from None
        name = Path(os.path.relpath(path, versions)).as_posix()
        entries.append(Entry(name, digest(content), script.revision))
    return entries


def _relative(path: Path, project: Project) -> str:
    return os.path.relpath(path, project.root)


def check(project: Project) -> list[Problem]:
    path = sum_path(project)
    where = _relative(path, project)
    if not path.is_file():
        return [
            Problem(
                "missing-file",
                where,
                None,
                f"no integrity file {where}: run `schema-warden history --update` and commit it",
            )
        ]
    try:
        recorded_total, recorded = parse_sum(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ProjectError(f"{where}: cannot read it: {err}") from None
    except SumFileError as err:
        hint = (
            "two branches added migrations: merge their heads (`schema-warden heads`), "
            "then run `schema-warden history --update`"
            if "conflict" in str(err)
            else "restore it from git, or run `schema-warden history --update`"
        )
        return [Problem("unreadable", where, None, f"{where} {err}: {hint}")]
    return compare(recorded_total, recorded, current_entries(project))


def update(project: Project) -> tuple[Path, list[Problem]]:
    """Rewrite the integrity file; returns it and what changed (as problems it resolves)."""
    path = sum_path(project)
    entries = current_entries(project)
    before = check(project) if path.is_file() else []
    path.write_text(render_sum(entries), encoding="utf-8", newline="\n")
    return path, before


# --- command line --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="schema-warden history",
        description=f"Applied migrations must not be edited: compare the migration files with the "
        f"integrity file {SUM_FILE} in the versions directory. --update rewrites it.",
    )
    parser.add_argument("-c", "--config", help="alembic.ini of the project (default: ./alembic.ini)")
    parser.add_argument("--update", action="store_true", help=f"record the current migrations in {SUM_FILE}")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    return parser


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with loaded_project(args.config) as project:
        if args.update:
            path, resolved = update(project)
            count = len(project.revisions())
            where = _relative(path, project)
            if args.format == "json":
                print(json.dumps({"command": "history", "updated": where, "migrations": count}, indent=2))
            else:
                for problem in resolved:
                    print(f"{ACCEPTED.get(problem.kind, 'accepted')}: {problem.file}")
                print(f"recorded {count} migration(s) in {where}: commit it")
            return EXIT_OK
        if not sum_path(project).is_file():
            return _first_run(project, args.format)
        problems = check(project)
        count = len(project.revisions())
        where = _relative(sum_path(project), project)
    if args.format == "json":
        data = {
            "command": "history",
            "ok": not problems,
            "file": where,
            "migrations": count,
            "problems": [asdict(p) for p in problems],
        }
        print(json.dumps(data, indent=2))
    else:
        for problem in problems:
            print(problem.message)
        if not problems:
            print(f"schema-warden history: {count} migration(s) match {where}")
    return EXIT_PROBLEMS if problems else EXIT_OK


def _first_run(project: Project, fmt: str) -> int:
    """No integrity file yet (a project adopting the hook): record every migration as it is now.

    Nothing was recorded, so nothing can have been edited since; failing here would only make
    the first commit with the hook installed fail for no finding.
    """
    path, _ = update(project)
    count = len(project.revisions())
    where = _relative(path, project)
    if fmt == "json":
        print(json.dumps({"command": "history", "ok": True, "created": where, "migrations": count}, indent=2))
    else:
        print(f"created {where}: recorded {count} migration(s) as they are now; commit it with them")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
