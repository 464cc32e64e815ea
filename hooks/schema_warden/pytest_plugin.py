"""pytest plugin: the guard's checks as test items, for teams that test migrations in their suite.

Off unless asked: ``pytest --schema-warden``, or ``schema_warden = true`` in pytest's ini
(``[tool.pytest.ini_options]`` of pyproject.toml). Then the session gets, after its own tests,
items named after what they prove, as pytest-alembic's users expect::

    alembic.ini::test_heads                 the history read statically (schema-warden heads)
    alembic.ini::test_stairway[0001]        one per revision, base to head
    alembic.ini::test_round_trip
    alembic.ini::test_drift

The live items share one run of ``schema-warden check`` (one throwaway server, started when
the first of them runs: ``--collect-only`` or deselecting them starts none). Its results map
to the items: pass is pass, a note is a skip with the note as reason, a failure shows the
guard's one-line message and the detail under it (never a traceback of the plugin). The
guard never uses a user's ``alembic_engine`` fixture or any other database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

INI = "schema_warden"
MARKER = "schema_warden"
HEADS = "heads"
STAIRWAY = "stairway"
ROUND_TRIP = "round-trip"
DRIFT = "drift"
LIVE = (STAIRWAY, ROUND_TRIP, DRIFT)
ITEM_NAMES = {
    HEADS: "test_heads",
    STAIRWAY: "test_stairway",
    ROUND_TRIP: "test_round_trip",
    DRIFT: "test_drift",
}
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


# --- the verdict of each item from the guard's CheckResults (pure) ---------------------


@dataclass(frozen=True)
class Verdict:
    """What one item reports: ``lines`` are the guard's messages (first line, then detail)."""

    outcome: str  # PASSED, FAILED or SKIPPED
    lines: tuple[str, ...] = ()


def _result_lines(results: Iterable[Any], *, named: bool = False) -> list[str]:
    lines: list[str] = []
    for result in results:
        lines.append(f"{result.name}: {result.message}" if named else result.message)
        lines.extend(f"    {d}" if d else "" for d in result.details)
    return lines


def _verdict_of(own: Sequence[Any]) -> Verdict | None:
    """A failure fails the item; only passes pass it; else its notes skip it. None: no result."""
    failed = [r for r in own if r.status == "fail"]
    if failed:
        return Verdict(FAILED, tuple(_result_lines(failed)))
    if own and all(r.status == "pass" for r in own):
        return Verdict(PASSED, tuple(r.message for r in own))
    if own:
        return Verdict(SKIPPED, tuple(r.message for r in own if r.status == "note"))
    return None


def _mentions(message: str, revision: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(revision)}(?![\w-])", message) is not None


def verdicts(results: Sequence[Any], revisions: Sequence[str]) -> dict[tuple[str, str | None], Verdict]:
    """Each live item's verdict, keyed by (check, revision); ``revisions`` base to head.

    A stairway result without a revision covers the revisions it names (``not run for 0003,
    0004: the stairway stopped at 0002``) or, when it passed, those proven by an earlier run
    (cache). A failure of a check that has no item (``baseline``) fails the items it kept
    from running, or else ``test_drift``, so that no failure goes unreported."""
    general = [r for r in results if r.name == STAIRWAY and r.revision is None]
    cached = [r for r in general if r.status == "pass"]
    unmapped_failures = [r for r in results if r.name not in LIVE and r.status == "fail"]
    blocked = Verdict(FAILED, tuple(_result_lines(unmapped_failures, named=True)))
    found: dict[tuple[str, str | None], Verdict] = {}
    for revision in revisions:
        own = [r for r in results if r.name == STAIRWAY and r.revision == revision]
        verdict = _verdict_of(own)
        if verdict is None:
            naming = [r for r in general if r.status != "pass" and _mentions(r.message, revision)]
            verdict = _verdict_of(naming) or _verdict_of(cached)
        if verdict is None and unmapped_failures:
            verdict = blocked
        found[(STAIRWAY, revision)] = verdict or Verdict(
            SKIPPED, (f"schema-warden check reported nothing for revision {revision}",)
        )
    for check in (ROUND_TRIP, DRIFT):
        verdict = _verdict_of([r for r in results if r.name == check])
        if verdict is None and unmapped_failures:
            verdict = blocked
        found[(check, None)] = verdict or Verdict(SKIPPED, (f"schema-warden check did not run the {check}",))
    if unmapped_failures and blocked not in found.values():
        drift = found[(DRIFT, None)]
        lines = drift.lines if drift.outcome == FAILED else ()
        found[(DRIFT, None)] = Verdict(FAILED, (*lines, *blocked.lines))
    return found


def heads_verdict(results: Sequence[Any]) -> Verdict:
    failed = [r for r in results if r.status == "fail"]
    if failed:
        return Verdict(FAILED, tuple(_result_lines(failed, named=True)))
    return Verdict(PASSED, tuple(f"{r.name}: {r.message}" for r in results))


def unshown(results: Sequence[Any]) -> list[Any]:
    """Results no item shows on its own (the cache's, the data check's, accepted findings')."""
    return [r for r in results if r.name not in LIVE or (r.name == STAIRWAY and r.revision is None)]


def ordered(files: Sequence[Any]) -> list[str]:
    """Revision ids of statically read files, base to head (parents first, then file order)."""
    ids = [f.revision for f in files if f.revision and not f.error]
    known = set(ids)
    parents = {f.revision: [p for p in f.down_revisions if p in known] for f in files if f.revision}
    done: list[str] = []
    seen: set[str] = set()
    for start in ids:
        stack = [start]
        while stack:
            node = stack[-1]
            if node in seen:
                stack.pop()
                continue
            waiting = [p for p in parents.get(node, []) if p not in seen and p not in stack]
            if waiting:
                stack.extend(reversed(waiting))
                continue
            seen.add(node)
            done.append(node)
            stack.pop()
    return done


# --- pytest hooks and nodes ------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("schema-warden", "schema-warden: migrations proven in a throwaway PostgreSQL")
    group.addoption(
        "--schema-warden",
        action="store_true",
        default=False,
        help="add schema-warden's checks as test items (test_heads, test_stairway[<revision>], "
        "test_round_trip, test_drift)",
    )
    group.addoption(
        "--schema-warden-config",
        metavar="ALEMBIC_INI",
        help="alembic.ini to check (default: [tool.schema-warden] alembic-config, else ./alembic.ini "
        "of the rootdir)",
    )
    group.addoption(
        "--schema-warden-no-cache",
        action="store_true",
        default=False,
        help="prove every revision again, ignoring (and not writing) the cache of earlier proofs",
    )
    parser.addini(INI, type="bool", default=False, help="add schema-warden's checks as test items")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: a check of schema-warden (the pytest plugin's items)")


def enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("schema_warden") or config.getini(INI))


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect: they apply to these items too
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if not enabled(config):
        return
    from schema_warden.errors import WardenError

    try:
        project = Checks.for_session(session)
        collected = list(project.collect())  # an unreadable alembic.ini is a ProjectError here
    except WardenError as err:
        raise pytest.UsageError(f"schema-warden: {err.message}") from None
    report = pytest.CollectReport(project.nodeid, "passed", None, collected)
    config.hook.pytest_collectreport(report=report)  # counted in "collected N items"
    items.extend(report.result)  # type: ignore[arg-type]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    checks = config.stash.get(_CHECKS, None)
    if checks is None or checks.report is None:
        return
    report = checks.report
    terminalreporter.section("schema-warden", sep="-")
    terminalreporter.line(report.title)
    for note in report.notes:
        terminalreporter.line(f"  {note}")
    for line in _result_lines(unshown(report.checks), named=True):
        terminalreporter.line(f"  {line}")


class Checks(pytest.File):
    """The project's alembic.ini as a collector: its items, and the one check run they share."""

    settings: Any
    requested: str | None  # --schema-warden-config, as the CLI's --config
    files: list[Any]
    report: Any = None
    error: BaseException | None = None
    ran = False

    @classmethod
    def for_session(cls, session: pytest.Session) -> Checks:
        from schema_warden.project.settings import find_config

        config = session.config
        explicit = config.getoption("schema_warden_config")
        path = str(config.invocation_params.dir / explicit) if explicit else None
        settings = find_config(path, cwd=config.rootpath)
        node = cls.from_parent(session, path=settings.alembic_config)
        node.settings = settings
        node.requested = path
        node.add_marker(MARKER)
        config.stash[_CHECKS] = node
        return node

    def collect(self) -> Iterator[WardenItem]:
        from schema_warden.project.history import parse_revision_file, revision_paths, version_dirs

        ini = self.settings.alembic_config
        _script, dirs, _paths, recursive = version_dirs(ini, self.settings.version_locations)
        self.files = [parse_revision_file(p, ini.parent) for p in revision_paths(dirs, recursive)]
        paths = {f.revision: f.path for f in self.files if f.revision}
        yield WardenItem.from_parent(self, name=ITEM_NAMES[HEADS], check=HEADS)
        for revision in ordered(self.files):
            name = f"{ITEM_NAMES[STAIRWAY]}[{revision}]"
            yield WardenItem.from_parent(
                self, name=name, check=STAIRWAY, revision=revision, at=paths[revision]
            )
        yield WardenItem.from_parent(self, name=ITEM_NAMES[ROUND_TRIP], check=ROUND_TRIP)
        yield WardenItem.from_parent(self, name=ITEM_NAMES[DRIFT], check=DRIFT)

    def heads(self) -> Verdict:
        from schema_warden.commands import heads
        from schema_warden.errors import WardenError

        try:
            report = heads.run(self.requested, cwd=self.config.rootpath)
        except WardenError as err:
            return _error_verdict(err)
        return heads_verdict(report.checks)

    def live(self, check: str, revision: str | None) -> Verdict:
        """The verdict of a live item; the first one asked runs ``schema-warden check``."""
        from schema_warden.errors import WardenError

        if not self.ran:
            self.ran = True
            from schema_warden.commands import check as command

            try:
                self.report = command.run(
                    self.requested,
                    cwd=self.config.rootpath,
                    use_cache=not self.config.getoption("schema_warden_no_cache"),
                )
            except WardenError as err:
                self.error = err
            except Exception as err:  # a bug of the guard: every live item shows it
                self.error = err
        if isinstance(self.error, WardenError):
            return _error_verdict(self.error)
        if self.error is not None:
            raise self.error
        return verdicts(self.report.checks, ordered(self.files))[(check, revision)]


_CHECKS = pytest.StashKey[Checks]()


def _error_verdict(err: Any) -> Verdict:
    detail = err.detail.rstrip().splitlines() if err.detail else []
    return Verdict(FAILED, (f"error: {err.message}", *(f"    {d}" for d in detail)))


class CheckFailed(Exception):
    """An item's failure: the guard's lines, shown as they are."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__(lines[0] if lines else "failed")
        self.lines = tuple(lines)


@dataclass(frozen=True)
class _Crash:
    path: str
    lineno: int
    message: str


@dataclass(frozen=True)
class _Failure:
    """A failure as pytest prints it: the lines, and the first as the short summary's reason."""

    lines: tuple[str, ...]
    reprcrash: _Crash

    def toterminal(self, tw: Any) -> None:
        for index, line in enumerate(self.lines):
            tw.line(line, red=index == 0)

    def __str__(self) -> str:
        return "\n".join(self.lines)


class WardenItem(pytest.Item):
    def __init__(
        self, *, check: str, revision: str | None = None, at: Path | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.revision = revision
        self.at = at  # the revision file (where a skip or failure points)

    def runtest(self) -> None:
        checks = self.parent
        assert isinstance(checks, Checks)
        verdict = checks.heads() if self.check == HEADS else checks.live(self.check, self.revision)
        if verdict.outcome == FAILED:
            raise CheckFailed(verdict.lines)
        if verdict.outcome == SKIPPED:
            reason = "; ".join(verdict.lines) or "skipped"
            try:  # the skip names the item's file (alembic.ini, the revision), not this module
                raise pytest.skip.Exception(reason, _use_item_location=True)
            except TypeError:  # pragma: no cover - a pytest without that keyword
                pytest.skip(reason)
        if verdict.lines:  # shown with -rP
            self.add_report_section("call", "schema-warden", "\n".join(verdict.lines))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, CheckFailed):
            path, lineno, _name = self.reportinfo()
            first = excinfo.value.lines[0] if excinfo.value.lines else "failed"
            return _Failure(excinfo.value.lines, _Crash(str(path), (lineno or 0) + 1, first))
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.at or self.path, 0, self.name
