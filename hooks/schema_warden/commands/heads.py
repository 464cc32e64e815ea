"""``schema-warden heads``: the migration history is one line of descent. No database.

Exactly one head, no dangling ``down_revision``, no duplicate revision ids, no cycles, and
every revision file parses and names modules that exist. Revision files are read with
``ast`` (never imported), so the check takes milliseconds and never runs project code.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from schema_warden.errors import EXIT_OK, EXIT_PROBLEMS, guarded
from schema_warden.project.frames import relative
from schema_warden.project.history import RevisionFile, parse_revision_file, revision_paths, version_dirs
from schema_warden.project.settings import find_config
from schema_warden.render.report import FAIL, FORMATS, PASS, CheckResult, Report, render


def _module_exists(name: str, search: list[str]) -> bool:
    if name in sys.builtin_module_names or name in sys.modules or name == "__future__":
        return True
    saved = sys.path[:]
    sys.path[:0] = search
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
    finally:
        sys.path[:] = saved


def _cycles(parents: dict[str, tuple[str, ...]]) -> list[list[str]]:
    """Cycles in the down_revision graph (each as a list of ids), found by an iterative DFS."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(parents, white)
    cycles: list[list[str]] = []
    for start in sorted(parents):
        if color[start] != white:
            continue
        stack = [(start, iter(parents[start]))]
        path = [start]
        color[start] = grey
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                color[node] = black
            elif child not in color:
                continue
            elif color[child] == grey:
                cycles.append([*path[path.index(child) :], child])
            elif color[child] == white:
                color[child] = grey
                stack.append((child, iter(parents[child])))
                path.append(child)
    return cycles


MERGE_COMMAND = 'alembic merge heads -m "merge heads"'


def analyse(
    files: Sequence[RevisionFile], root: Path, search: list[str], *, multiple_heads: bool = False
) -> list[CheckResult]:
    """The heads checks on statically read revision files. Pure apart from module lookups.

    ``multiple_heads``: several heads are by design (``multiple-heads = true``), not a problem."""
    results: list[CheckResult] = []
    broken = [f for f in files if f.error]
    # each module looked up once (300 revision files import the same two or three)
    names = {name for f in files if not f.error for name in f.imports}
    exists = {name: _module_exists(name, search) for name in names}
    missing = sorted(
        {
            (relative(f.path, root), name)
            for f in files
            if not f.error
            for name in f.imports
            if not exists[name]
        }
    )
    problems = [f.error or "" for f in broken] + [
        f"{where}: imports {name}, which is not installed or not on sys.path" for where, name in missing
    ]
    if problems:
        first = problems[0]
        results.append(CheckResult("imports", FAIL, first, details=tuple(problems[1:])))
    else:
        results.append(CheckResult("imports", PASS, f"{len(files)} revision file(s) parse"))

    good = [f for f in files if not f.error]
    by_id: dict[str, list[RevisionFile]] = {}
    for f in good:
        by_id.setdefault(f.revision or "", []).append(f)
    dups = {rid: fs for rid, fs in by_id.items() if len(fs) > 1}
    if dups:
        lines = [
            f"revision id {rid} is declared by {', '.join(relative(f.path, root) for f in fs)}: "
            "give one of them a new id (and fix the down_revision that points to it)"
            for rid, fs in sorted(dups.items())
        ]
        results.append(CheckResult("unique-ids", FAIL, lines[0], details=tuple(lines[1:])))
    else:
        results.append(CheckResult("unique-ids", PASS, "every revision id is unique"))

    dangling = [
        f"revision {f.revision} ({relative(f.path, root)}): down_revision {d!r} does not exist: "
        "point it at an existing revision (alembic history lists them)"
        for f in good
        for d in (*f.down_revisions, *f.depends_on)
        if d not in by_id
    ]
    if dangling:
        results.append(CheckResult("down-revisions", FAIL, dangling[0], details=tuple(dangling[1:])))
    else:
        results.append(CheckResult("down-revisions", PASS, "every down_revision exists"))

    parents = {rid: tuple(d for d in fs[0].down_revisions if d in by_id) for rid, fs in by_id.items()}
    cycles = _cycles(parents)
    if cycles:
        lines = [
            f"revisions form a cycle: {' -> '.join(c)}: break it by fixing a down_revision" for c in cycles
        ]
        results.append(CheckResult("no-cycles", FAIL, lines[0], details=tuple(lines[1:])))
    else:
        results.append(CheckResult("no-cycles", PASS, "no cycles"))

    referenced = {d for f in good for d in f.down_revisions}
    heads = sorted(rid for rid in by_id if rid not in referenced)
    if not files:
        results.append(CheckResult("single-head", PASS, "no revisions yet: nothing to check"))
    elif len(heads) == 1:
        results.append(CheckResult("single-head", PASS, f"one head: {heads[0]}"))
    elif not heads and by_id:
        results.append(CheckResult("single-head", FAIL, "no head: every revision is someone's down_revision"))
    elif len(heads) > 1 and multiple_heads:
        message = f"{len(heads)} heads by design (multiple-heads = true): {', '.join(heads)}"
        results.append(CheckResult("single-head", PASS, message))
    elif len(heads) > 1:
        where = [f"{h} ({relative(by_id[h][0].path, root)})" for h in heads]
        results.append(
            CheckResult(
                "single-head",
                FAIL,
                f"{len(heads)} heads: {', '.join(heads)}: two branches of migrations were written in "
                f"parallel; merge them: {MERGE_COMMAND}",
                details=tuple(where),
            )
        )
    return results


def _no_revisions(dirs: Sequence[Path], root: Path) -> CheckResult:
    where = ", ".join(relative(d, root) for d in dirs) or "(no directory)"
    return CheckResult(
        "single-head",
        FAIL,
        f"no revision files found in {where}: if env.py chooses the versions directory at run "
        "time, set `version-locations` in [tool.schema-warden]",
    )


def run(config: str | None = None, *, cwd: Path | None = None) -> Report:
    started = time.perf_counter()
    settings = find_config(config, cwd=cwd)
    ini = settings.alembic_config
    _script_dir, dirs, paths, recursive = version_dirs(ini, settings.version_locations)
    files = [parse_revision_file(p, ini.parent) for p in revision_paths(dirs, recursive)]
    search = [str(p) for p in paths]
    checks = analyse(files, ini.parent, search, multiple_heads=settings.multiple_heads)
    if not files:  # nothing read is nothing proven (check itself accepts a project not begun)
        checks = [c for c in checks if c.name != "single-head"] + [_no_revisions(dirs, ini.parent)]
    title = f"schema-warden heads: {relative(ini, Path.cwd())} ({len(files)} revision files)"
    return Report(title, tuple(checks), time.perf_counter() - started)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="schema-warden heads",
        description="Check the migration history without a database: one head, no broken links.",
    )
    parser.add_argument("--config", metavar="ALEMBIC_INI", help="path to alembic.ini (default ./alembic.ini)")
    parser.add_argument("--format", choices=FORMATS, default="text")
    return parser


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = run(args.config)
    sys.stdout.write(render(report, args.format))
    return EXIT_OK if report.ok else EXIT_PROBLEMS
