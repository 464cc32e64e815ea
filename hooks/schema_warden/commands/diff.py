"""``schema-warden diff``: what a branch does to the database, for a pull request's reviewer.

The migration tree of ``--base REF`` is taken from git (``git archive`` into a temp dir,
removed after), the head is the working tree (or ``--head REF``). Both are upgraded to
their heads in two databases of one throwaway server, both schemas are read from
pg_catalog (schema_warden.schema.snapshot) and compared (schema_warden.schema.diff). The report: the changes
(destructive first), the new revisions, the offline SQL they run
(``alembic upgrade <base-head>:heads --sql``) and, with ``--check-result``, the verdict of
``schema-warden check --format json`` run in an earlier step, and with ``--lint-result``
the findings of ``schema-warden lint --format json``. Reading their JSON keeps one job =
one command (a failing diff never hides the guard's verdict and the reverse); the workflow
runs the guard and the lint first, then this command.

``--github`` (in GitHub Actions): the base defaults to ``origin/$GITHUB_BASE_REF``, the
Markdown report is appended to ``$GITHUB_STEP_SUMMARY`` and the sticky PR comment body is
handed to the comment job as the step output ``comment`` (schema_warden.commands.github).

Exit codes: 0 report written, 1 the guard or lint result says it failed, 2 bad input (unknown
ref, shallow clone, no alembic.ini, the head's migrations fail), 3 environment.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from schema_warden.commands import github
from schema_warden.errors import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EnvironmentProblem,
    ProjectError,
    WardenError,
    guarded,
)
from schema_warden.render.diff import (
    DiffReport,
    GuardProblem,
    GuardResult,
    LintResult,
    Revision,
    Side,
    guard_from_check_json,
    lint_from_json,
    render,
)

WORKING_TREE = "working tree"
BASE_DB = "schema_diff_base"
HEAD_DB = "schema_diff_head"


@dataclass(frozen=True)
class Tree:
    """One side's project files on disk, and what the user called it."""

    side: Side
    root: Path  # the project root (directory of alembic.ini) inside this tree
    ini: Path


@dataclass(frozen=True)
class Loaded:
    """One side after upgrading: its snapshot, revisions and what went wrong."""

    snapshot: Any
    revisions: tuple[Revision, ...]
    heads: tuple[str, ...]
    problem: str | None = None  # the base may fail to upgrade: reported, the diff goes on


# ---------------------------------------------------------------- git


def _git(args: Sequence[str], cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False, **kwargs)
    except FileNotFoundError:
        raise EnvironmentProblem(
            "git is not installed: install git (schema-warden diff reads the base from it)"
        ) from None


def repo_root(path: Path) -> Path:
    top = _git(["rev-parse", "--show-toplevel"], path, text=True)
    if top.returncode != 0:
        said = " ".join(top.stderr.strip().splitlines()[:1])
        raise ProjectError(
            f"{path} is not in a git repository: schema-warden diff compares git refs",
            detail=f"git: {said}" if said else "",
        )
    return Path(top.stdout.strip()).resolve()


def resolve_commit(root: Path, ref: str) -> str:
    """The commit ``ref`` names; ProjectError (one line, with the fix) when there is none here."""
    if ref.startswith("-"):
        raise ProjectError(f"--base/--head {ref!r}: a git ref cannot start with '-'")
    found = _git(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], root, text=True
    )
    if found.returncode == 0:
        return found.stdout.strip()
    shallow = _git(["rev-parse", "--is-shallow-repository"], root, text=True)
    if shallow.returncode == 0 and shallow.stdout.strip() == "true":
        raise ProjectError(
            f"git ref {ref} is not in this shallow clone: fetch the whole history "
            "(actions/checkout with `fetch-depth: 0`; locally `git fetch --unshallow`)"
        )
    raise ProjectError(
        f"unknown git ref {ref}: no branch, tag or commit of that name in {root}: "
        f"check the name or fetch it (git fetch origin)"
    )


def _extract(root: Path, commit: str, dest: Path) -> None:
    """The files of ``commit`` into ``dest`` (git archive: no change to the repository's state)."""
    proc = subprocess.Popen(
        ["git", "archive", "--format=tar", commit],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
            if hasattr(tarfile, "data_filter"):
                archive.extractall(dest, filter="data")
            else:  # pragma: no cover - Python without the extraction filters
                archive.extractall(dest)
    except (tarfile.TarError, OSError) as err:
        proc.kill()
        raise ProjectError(f"cannot extract commit {commit[:12]} from git: {err}") from None
    finally:
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        proc.wait()
    if proc.returncode != 0:
        raise ProjectError(f"git archive {commit[:12]} failed: {stderr.strip()}")


@contextlib.contextmanager
def checkout(root: Path, ref: str, project_dir: Path, ini_name: str) -> Iterator[Tree]:
    """The project as of ``ref`` in a temp dir, removed after."""
    commit = resolve_commit(root, ref)
    workdir = Path(tempfile.mkdtemp(prefix="schema-warden-diff-"))
    try:
        _extract(root, commit, workdir)
        project_root = workdir / project_dir.relative_to(root)
        yield Tree(Side(ref, commit[:12]), project_root, project_root / ini_name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- one side


def _revisions(project: Any) -> tuple[Revision, ...]:
    return tuple(
        Revision(
            script.revision,
            (script.doc or "").strip().splitlines()[0] if script.doc else "",
            project.revision_file(script),
        )
        for script in project.revisions()
    )


def _migration_problem(err: BaseException, project: Any) -> str:
    from schema_warden.errors import one_line
    from schema_warden.project.steps import MigrationFailed

    if isinstance(err, MigrationFailed):
        script = err.revision
        rev_id = getattr(script, "revision", script)
        where = ""
        with contextlib.suppress(Exception):
            where = f" ({project.revision_file(script)})"
        cause = err.cause
        return f"revision {rev_id}{where} raised {type(cause).__name__}: {one_line(str(cause))}"
    return f"{type(err).__name__}: {one_line(str(err))}"


def _empty_snapshot() -> Any:
    from schema_warden.schema.snapshot import Snapshot

    return Snapshot(tables={}, indexes={}, constraints={}, enums={}, sequences={}, views={})


def _upgrade_and_snapshot(project: Any, server: Any, dbname: str) -> Any:
    """``upgrade heads`` in a fresh database, then its snapshot. Raises what the project raised."""
    from sqlalchemy import create_engine, pool

    from schema_warden.schema import snapshot

    server.create_database(dbname)
    engine = create_engine(server.url(dbname), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            try:
                project.migrate(connection, "heads")
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
            settings = project.settings
            taken = snapshot.take(
                connection, schemas=settings.schemas, exclude_tables=settings.exclude_tables
            )
            connection.rollback()
            return taken
    finally:
        engine.dispose()


def offline_sql(project: Any, start: str | None, destination: str = "heads") -> str:
    """``alembic upgrade <start>:<destination> --sql`` of the project (no connection is made)."""
    from alembic.runtime.environment import EnvironmentContext

    from schema_warden.project.environment import offline_environment

    config, script = project.config, project.script
    buffer = io.StringIO()

    def steps(rev: Any, _context: Any) -> list[Any]:
        return script._upgrade_revs(destination, rev)

    saved_buffer = config.output_buffer
    config.output_buffer = buffer
    config.attributes["configure_logger"] = False
    try:
        with (
            offline_environment(config),
            contextlib.redirect_stdout(io.StringIO()),
            EnvironmentContext(
                config, script, fn=steps, as_sql=True, starting_rev=start, destination_rev=destination
            ),
        ):
            script.run_env()
    finally:
        config.output_buffer = saved_buffer
    return buffer.getvalue()


def load_base(tree: Tree, settings: Any, server: Any, dbname: str = BASE_DB) -> Loaded:
    """The base side; never fails the diff: a base that cannot be read or upgraded is reported."""
    from schema_warden.project.imports import isolated_imports
    from schema_warden.project.loader import open_project
    from schema_warden.project.steps import MigrationFailed

    label = tree.side.ref
    if not tree.ini.is_file():
        return Loaded(
            _empty_snapshot(),
            (),
            (),
            f"base {label} has no {tree.ini.name} (no Alembic migrations): every object is shown as added",
        )
    with isolated_imports(tree.root):
        try:
            project = open_project(settings=replace(settings, alembic_config=tree.ini))
            revisions = _revisions(project)
            heads = tuple(project.script.get_heads())
        except ProjectError as err:
            return Loaded(
                _empty_snapshot(),
                (),
                (),
                f"base {label} cannot be loaded ({err.message}): every object of the head is shown as added",
            )
        if not revisions:
            return Loaded(
                _empty_snapshot(), (), (), f"base {label} has no migrations: every object is shown as added"
            )
        try:
            snap = _upgrade_and_snapshot(project, server, dbname)
        except (MigrationFailed, ProjectError) as err:
            message = err.message if isinstance(err, ProjectError) else _migration_problem(err, project)
            return Loaded(
                _empty_snapshot(),
                revisions,
                heads,
                f"the migrations of base {label} do not upgrade: {message}: "
                "every object of the head is shown as added",
            )
    return Loaded(snap, revisions, heads)


def load_base_apart(tree: Tree, settings: Any, server: Any, dbname: str = BASE_DB) -> Loaded:
    """:func:`load_base` in a forked child, so that nothing the base's code leaves in this
    process (SQLModel's one global MetaData, a declarative registry, a module-level engine)
    meets the head's; in this process when no child can be forked (its errors then show)."""
    import sys

    from schema_warden.proof.parallel import Forked

    if sys.platform.startswith("linux"):
        child = Forked(lambda: load_base(tree, settings, server, dbname))
        try:
            found = child.result()
        finally:
            child.stop()
        if isinstance(found, Loaded):
            return found
    return load_base(tree, settings, server, dbname)


@dataclass(frozen=True)
class HeadResult:
    loaded: Loaded
    sql: str | None
    sql_command: str | None
    sql_note: str | None


def load_head(
    tree: Tree, settings: Any, server: Any, base: Loaded, dbname: str = HEAD_DB, *, with_sql: bool
) -> HeadResult:
    """The head side: its migrations must upgrade (ProjectError otherwise), plus the offline SQL."""
    from schema_warden.errors import one_line
    from schema_warden.project.imports import isolated_imports
    from schema_warden.project.loader import open_project
    from schema_warden.project.steps import MigrationFailed

    if not tree.ini.is_file():
        raise ProjectError(f"no {tree.ini.name} at {tree.ini} in {tree.side.ref}: pass --config PATH")
    with isolated_imports(tree.root):
        project = open_project(settings=replace(settings, alembic_config=tree.ini))
        revisions = _revisions(project)
        heads = tuple(project.script.get_heads())
        try:
            snap = _upgrade_and_snapshot(project, server, dbname)
        except MigrationFailed as err:
            raise ProjectError(
                f"the migrations of {tree.side.ref} do not upgrade: {_migration_problem(err, project)}: "
                "fix that revision (schema-warden check shows the detail)"
            ) from None
        sql = command = note = None
        base_ids = {r.id for r in base.revisions}
        new = [r for r in revisions if r.id not in base_ids]
        if with_sql and new:
            start, note = _sql_start(base, {r.id for r in revisions})
            if note is None:
                target = heads[0] if len(heads) == 1 else "heads"
                command = f"alembic upgrade {start + ':' if start else ''}{target} --sql"
                try:
                    sql = offline_sql(project, start, target)
                except Exception as err:  # the project's code failed offline: say so, keep the diff
                    note = f"offline SQL could not be rendered: {type(err).__name__}: {one_line(str(err))}"
                    sql = command = None
    return HeadResult(Loaded(snap, revisions, heads), sql, command, note)


def _sql_start(base: Loaded, head_ids: set[str]) -> tuple[str | None, str | None]:
    """Where the offline SQL starts: the base's head (None: from an empty database), or why it can't."""
    if not base.heads:
        return None, None
    if len(base.heads) > 1:
        return None, "offline SQL not shown: the base has several heads (" + ", ".join(base.heads) + ")"
    if base.heads[0] not in head_ids:
        return None, f"offline SQL not shown: the base head {base.heads[0]} is not in this branch's history"
    return base.heads[0], None


# ---------------------------------------------------------------- guard result


def read_guard_result(path: Path) -> GuardResult:
    """The JSON of ``schema-warden check --format json``; missing or unreadable counts as a failure."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        return GuardResult(
            False, "no result", (GuardProblem(f"the guard wrote no result ({path}: {err.strerror})"),)
        )
    if not text.strip():
        return GuardResult(
            False,
            "no result",
            (GuardProblem(f"the guard wrote no result to {path.name}: see the guard's log for its error"),),
        )
    try:
        return guard_from_check_json(json.loads(text))
    except ValueError as err:
        return GuardResult(False, "unreadable result", (GuardProblem(f"{path.name}: {err}"),))


def read_lint_result(path: Path) -> LintResult:
    """The JSON of ``schema-warden lint --format json``; missing or unreadable counts as a failure."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        return LintResult(False, problems=(f"the lint wrote no result ({path}: {err.strerror})",))
    if not text.strip():
        said = f"the lint wrote no result to {path.name}: see the lint step's log for its error"
        return LintResult(False, problems=(said,))
    try:
        return lint_from_json(json.loads(text))
    except ValueError as err:
        return LintResult(False, problems=(f"{path.name}: {err}",))


# ---------------------------------------------------------------- the command


def build_report(
    *,
    base_ref: str,
    head_ref: str | None,
    config: str | None,
    pg_bin: str | None,
    with_sql: bool = True,
    guard: GuardResult | None = None,
    lint: LintResult | None = None,
    server: Any = None,
) -> DiffReport:
    """Compare ``base_ref`` with ``head_ref`` (None: the working tree).

    ``server``: a running schema_warden.server.postgres Server to use (tests share one); by default a
    throwaway server is started and removed.
    """
    from schema_warden.project.settings import find_config
    from schema_warden.render import mermaid
    from schema_warden.schema import diff
    from schema_warden.server.postgres import throwaway_server

    started = time.perf_counter()
    settings = find_config(config) if head_ref is None else _settings_without_file(config)
    project_dir = settings.alembic_config.parent
    root = repo_root(project_dir if project_dir.is_dir() else Path.cwd())
    ini_name = settings.alembic_config.name
    with contextlib.ExitStack() as stack:
        base_tree = stack.enter_context(checkout(root, base_ref, project_dir, ini_name))
        if head_ref is None:
            head_tree = Tree(Side(WORKING_TREE), project_dir, settings.alembic_config)
        else:
            head_tree = stack.enter_context(checkout(root, head_ref, project_dir, ini_name))
        if server is None:
            server = stack.enter_context(throwaway_server(pg_bin))
            names = (BASE_DB, HEAD_DB)
        else:  # a shared server: names of our own, dropped after
            suffix = uuid.uuid4().hex[:8]
            names = (f"{BASE_DB}_{suffix}", f"{HEAD_DB}_{suffix}")
            for name in names:
                stack.callback(server.drop_database, name)
        base = load_base_apart(base_tree, settings, server, names[0])
        head = load_head(head_tree, settings, server, base, names[1], with_sql=with_sql)
        major = server.binaries.major
    changes = tuple(diff.compare(base.snapshot, head.loaded.snapshot))
    base_ids = {r.id for r in base.revisions}
    head_ids = {r.id for r in head.loaded.revisions}
    diagram = mermaid.diff_diagram(base.snapshot, head.loaded.snapshot, changes) if changes else None
    notes = tuple(n for n in (base.problem, head.sql_note) if n)
    return DiffReport(
        base=replace(base_tree.side, heads=base.heads),
        head=replace(head_tree.side, heads=head.loaded.heads),
        changes=changes,
        revisions=tuple(r for r in head.loaded.revisions if r.id not in base_ids),
        removed_revisions=tuple(r for r in base.revisions if r.id not in head_ids),
        sql=head.sql,
        sql_command=head.sql_command,
        notes=notes,
        guard=guard,
        lint=lint,
        diagram=diagram,
        postgres_major=major,
        duration_s=time.perf_counter() - started,
    )


def _settings_without_file(config: str | None) -> Any:
    """Settings when the head is a git ref: the working tree's alembic.ini may differ or be absent."""
    from schema_warden.project.settings import load_settings

    return load_settings(config)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="schema-warden diff",
        description="What a branch does to the database: upgrade the migrations of a git ref and of the "
        "working tree in one throwaway PostgreSQL server and compare the two schemas.",
    )
    parser.add_argument(
        "--base", metavar="REF", help="git ref to compare with (with --github: origin/$GITHUB_BASE_REF)"
    )
    parser.add_argument("--head", metavar="REF", help="git ref of the head (default: the working tree)")
    parser.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    parser.add_argument("-c", "--config", help="alembic.ini of the project (default: ./alembic.ini)")
    parser.add_argument("--pg-bin", metavar="DIR", help="PostgreSQL bin directory (initdb, postgres)")
    parser.add_argument(
        "--check-result",
        metavar="FILE",
        type=Path,
        help="JSON of `schema-warden check --format json` to show beside the diff; exit 1 when it failed",
    )
    parser.add_argument(
        "--lint-result",
        metavar="FILE",
        type=Path,
        help="JSON of `schema-warden lint --format json` to show beside the diff; exit 1 when it failed",
    )
    parser.add_argument(
        "--no-sql", action="store_true", help="leave out the offline SQL of the new revisions"
    )
    parser.add_argument(
        "--github",
        action="store_true",
        help="in GitHub Actions: write the Markdown to $GITHUB_STEP_SUMMARY and the PR comment body to the "
        "step output `comment` (skipped for pull requests from forks)",
    )
    return parser


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    ctx = github.context_from_env() if args.github else None
    try:
        base = args.base or (github.default_base(ctx) if ctx else None)
        if not base:
            raise ProjectError(
                "no base to compare with: pass --base REF (e.g. --base origin/main)"
                + (" ($GITHUB_BASE_REF is not set: is this a pull_request event?)" if args.github else "")
            )
        guard = read_guard_result(args.check_result) if args.check_result else None
        lint = read_lint_result(args.lint_result) if args.lint_result else None
        report = build_report(
            base_ref=base,
            head_ref=args.head,
            config=args.config,
            pg_bin=args.pg_bin,
            with_sql=not args.no_sql,
            guard=guard,
            lint=lint,
        )
    except WardenError as err:
        if ctx is not None:
            github.publish_error(err.message, err.detail, ctx)
        raise
    print(render(report, args.format), end="")
    if ctx is not None:
        published = github.publish(report, ctx)
        print(f"schema-warden diff: {published.reason}", file=sys.stderr)
    failed = any(result is not None and not result.ok for result in (guard, lint))
    return EXIT_PROBLEMS if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
