"""The stairway on two CPUs: a forked child proves the first part while the parent proves the rest.

A stairway step waits mostly for the server (the catalog snapshot), so one connection keeps
about one CPU busy. For the revisions still to prove, ``[start, N)``:

- a forked child creates a database of its own (empty, as the check's database was before
  the project's revisions ran), upgrades it plainly to ``start`` as the check did, and proves
  revisions from ``start`` on, reporting each one through a pipe;
- meanwhile the parent *rehearses* the same revisions on its own database: the stairway's
  writes (generated rows in, up, down, up) without its checks, at about half the cost of a
  proof. Its database and data-check state are then exactly what one process would have had,
  so everything after is proven on the very same data (generated rows decide, for example,
  whether a later seed's downgrade trips over a foreign key);
- the parent stops rehearsing at the revision ``m`` where the child's remaining proofs
  ``[child's position, m)`` weigh as much as its own ``[m, N)`` (a proof costs more the
  larger the schema: weight ``1 + i / GROWTH``), tells the child to stop at ``m`` and proves
  ``[m, N)``, so its database ends at head for the round trip and drift.

The results are merged in revision order and are the same as one process's: a revision whose
upgrade fails in the child's part ends the stairway there (the parent's rehearsal stops at
the same revision). A child that crashes is replaced by the parent proving its part itself on
a new database; a child killed by a signal is a failure of the revision it was proving (the
stairway stops there: proving it in the parent might kill the guard too). The child ends
with the real ``os._exit``: the project's own calls of it raise (project/exits.py). Ctrl-C or
SIGTERM kills and reaps the child (its database goes with the throwaway server); an error in
the parent kills it and drops its database.

One process instead: fewer than ``MIN_REVISIONS`` to prove, a child's plain upgrade to
``start`` costing more than a quarter of the proofs, --fail-fast, a history with branches or
merge points, not Linux (where fork is safe), other threads running, one CPU or
none idle while the check started (the rehearsal is extra work that only pays on a free CPU),
or ``SCHEMA_WARDEN_JOBS=1`` (``SCHEMA_WARDEN_JOBS=2`` forces two processes). More than two
processes would pay little: each extra one has to rehearse everything before its part (three
processes on free CPUs: about 0.61 of the sequential time against 0.69 for two). The child
prints nothing; warnings that migrations raise still show, from the parent's rehearsal.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import select
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from schema_warden import speed
from schema_warden.errors import ProjectError, one_line
from schema_warden.project.exits import real_exit
from schema_warden.project.loader import Project
from schema_warden.project.steps import mark_interrupted
from schema_warden.proof.data_check import Filler
from schema_warden.proof.stairway import (
    NAME,
    StairwayResult,
    Stretch,
    assemble,
    label,
    migrate,
    prove,
    rehearse,
    snapshot,
)
from schema_warden.proof.watchdog import other_threads
from schema_warden.render.report import FAIL, CheckResult
from schema_warden.server.postgres import signals_blocked

JOBS_ENV = "SCHEMA_WARDEN_JOBS"
MIN_ENV = "SCHEMA_WARDEN_PARALLEL_MIN"  # tests: the fewest revisions worth a child
MIN_REVISIONS = 16  # below it the child's start (fork, database, env.py) eats the gain
GROWTH = 100.0  # a proof costs 1 + i / GROWTH times the first (fit on the benchmark history)
PROOF_MS = 10.0  # a proof on an empty schema (benchmark machine)
REPLAY_MS = 1.4  # a plain upgrade of one revision


@dataclass(frozen=True)
class PartResult:
    """Revisions proven in one process, from ``start`` on (picklable: no snapshots)."""

    checks: tuple[Any, ...]  # CheckResult, one per revision proven
    empty: tuple[bool, ...]  # per revision: its downgrade is not implemented
    stopped: bool  # an upgrade failed at the last one: nothing after it ran
    unfilled: dict[str, str] = field(default_factory=dict, hash=False)  # the data check's, since start


# --- deciding (pure) --------------------------------------------------------------------------


def wanted_jobs(jobs: int | None, environ: dict[str, str] | None = None) -> int:
    """``jobs`` when given, else ``SCHEMA_WARDEN_JOBS``, else 2 when a CPU is idle (1 otherwise).

    On a machine busy with other work a second process only adds the rehearsal's cost.
    """
    if jobs is not None:
        return max(1, jobs)
    text = _jobs_setting(os.environ if environ is None else environ)
    if text:
        if not text.isdigit() or int(text) < 1:
            raise ProjectError(
                f"{JOBS_ENV}={text!r} is not a number of processes: set it to 1 (one process) or 2, "
                "or unset it (two when a CPU is idle)"
            )
        return int(text)
    cpus = _cpus()
    return 2 if cpus >= 2 and idle_cpus(cpus) >= IDLE_NEEDED else 1


def _jobs_setting(environ: Mapping[str, str]) -> str:
    """``SCHEMA_WARDEN_JOBS`` as set; "1" when the benchmark turned "two-processes" off."""
    return "1" if not speed.enabled("two-processes") else environ.get(JOBS_ENV, "").strip()


IDLE_NEEDED = 0.5  # CPUs idle while the check started (its own work included)


def idle_cpus(cpus: int) -> float:
    """How many CPUs were idle since the last look (at the first, since this module was
    imported: while the check started its server and ran env.py); from /proc/stat on Linux,
    else from the load average."""
    global _sample
    now = _cpu_times()
    before, _sample = _sample, now
    if now is not None and before is not None and now[1] - before[1] >= _MIN_TICKS:
        return cpus * (now[0] - before[0]) / (now[1] - before[1])
    with contextlib.suppress(AttributeError, OSError):
        return max(0.0, cpus - os.getloadavg()[0])
    return float(cpus)


_MIN_TICKS = 20  # a window of about a tenth of a second on two CPUs


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) clock ticks of all CPUs so far."""
    try:
        with open("/proc/stat", "rb") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(fields) < 5:
        return None
    return fields[3] + fields[4], sum(fields)  # idle + iowait; of user nice system ... steal


_sample = _cpu_times()


def _cpus() -> int:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def min_revisions(environ: dict[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    text = env.get(MIN_ENV, "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else MIN_REVISIONS


def weight(lo: int, hi: int) -> float:
    """The relative cost of proving revisions ``[lo, hi)``: ``1 + i / GROWTH`` each."""
    count = hi - lo
    return count + (lo + hi - 1) * count / (2 * GROWTH) if count > 0 else 0.0


def should_switch(position: int, child_next: int, end: int) -> bool:
    """Stop rehearsing at ``position``: the child's proofs left (``[child_next, position)``)
    weigh at least as much as the parent's (``[position, end)``)."""
    return position >= end or weight(child_next, position) >= weight(position, end)


def is_linear(revisions: Sequence[Any]) -> bool:
    """Each revision's only parent is the one before it: no branches, no merge points."""
    previous: tuple[str, ...] = ()
    for revision in revisions:
        down = revision.down_revision
        parents = tuple(down) if isinstance(down, (tuple, list)) else ((down,) if down else ())
        if parents != previous:
            return False
        previous = (revision.revision,)
    return True


def parallel_plan(revisions: Sequence[Any], start: int, jobs: int | None) -> bool:
    """Whether ``[start, N)`` is worth a child: long enough, and the child's plain upgrade to
    ``start`` (its database starts empty) costs little against the proofs."""

    end = len(revisions)
    return (
        end - start >= min_revisions()
        and REPLAY_MS * start <= PROOF_MS * weight(start, end) / 4
        and sys.platform.startswith("linux")  # fork is only safe there (macOS frameworks are not)
        and other_threads() == 0  # another thread might hold a lock the child needs
        and is_linear(revisions)
        and wanted_jobs(jobs) >= 2
    )


# --- running ------------------------------------------------------------------------------------


def run_stairway(
    project: Project,
    connection: Any,
    *,
    fail_fast: bool = False,
    data_check: bool = True,
    on_result: Callable[[CheckResult], None] | None = None,
    start: int = 0,
    jobs: int | None = 1,
) -> StairwayResult:
    """``start``: the revisions before it are applied already (proven by an earlier run).

    ``jobs``: processes that prove parts of the stairway at the same time;
    None: as many as ``SCHEMA_WARDEN_JOBS`` or the CPUs allow, when the stairway is long
    enough to gain. The results are the same as one process's.
    """
    # the schema at minimum-downgrade-revision is kept by one process's stairway
    if jobs != 1 and not fail_fast and project.settings.minimum_downgrade_revision is None:
        result = run_parallel(project, connection, data_check=data_check, start=start, jobs=jobs)
        if result is not None:
            if on_result is not None:
                for check in result.checks:
                    if check.revision is not None:
                        on_result(check)
            return result
    filler = Filler() if data_check else None
    base = snapshot(project, connection)
    revisions = project.revisions()[start:]
    stretch = prove(project, connection, revisions, base, filler, fail_fast=fail_fast, on_result=on_result)
    return assemble(base, revisions, stretch, filler.unfilled if filler is not None else {})


def run_parallel(
    project: Project,
    connection: Any,
    *,
    data_check: bool = True,
    start: int = 0,
    jobs: int | None = None,
    split_at: int | None = None,
) -> Any:
    """The StairwayResult of ``[start, N)`` proven by the parent and a child; None: one process.

    ``split_at`` (tests): the first revision the parent proves, instead of the balance point.
    """
    revisions = project.revisions()
    end = len(revisions)
    if not parallel_plan(revisions, start, jobs):
        return None
    url = connection.engine.url
    try:
        child = _Child.start(project, url, start, data_check)
    except OSError:
        return None
    try:
        filler = Filler() if data_check else None
        base = snapshot(project, connection)
        current: Any = base
        position = start
        rehearsal_stop = False
        while position < end:
            child.poll()
            if split_at is not None:
                if position >= split_at:
                    break
            elif child.next > start and should_switch(position, child.next, end):
                break  # (not before the child proved one: its start may take long)
            if filler is not None and position > start:
                current = snapshot(project, connection)
            if rehearse(project, connection, [revisions[position]], current, filler) is not None:
                rehearsal_stop = True  # the child stops at this revision too
                break
            position += 1
        child.limit(position + 1 if rehearsal_stop else position)
        mine: Any = None
        if not rehearsal_stop:
            if position > start:
                current = snapshot(project, connection)
            mine = prove(project, connection, revisions[position:], current, filler)
        theirs = child.result()
    except KeyboardInterrupt as err:  # waiting for the child: the revision it was proving
        mark_interrupted(err, revisions[min(child.next, end - 1)], None)
        raise
    except Exception:
        child.stop()
        with contextlib.suppress(Exception):
            child.drop_database()  # killed before it could (the server stays: tests, a cache)
        raise
    finally:
        child.stop()
    switch = position + 1 if rehearsal_stop else position
    if child.killed_by is not None and child.next < switch:
        theirs = _killed(project, revisions[child.next], child.killed_by)
    theirs = _complete(theirs, switch - start)
    if theirs is None:  # the child crashed: prove its part here, on a database of its own
        theirs = prove_range(project, url, _database_name(url, os.getpid()), start, switch, data_check)
    if theirs.stopped:
        stretch = Stretch(theirs.checks, None, True, not any(theirs.empty))
        return assemble(base, revisions[start:], stretch, theirs.unfilled)
    if rehearsal_stop or mine is None:
        raise ProjectError(
            f"revision {revisions[position].revision}: its upgrade failed in one process and passed in "
            f"another (does it depend on time or chance?): run with {JOBS_ENV}=1 to check in one process"
        )
    reversible = mine.reversible and not any(theirs.empty)
    stretch = Stretch(theirs.checks + mine.checks, mine.after, mine.stopped, reversible)
    return assemble(base, revisions[start:], stretch, dict(filler.unfilled) if filler is not None else {})


def _killed(project: Project, revision: Any, signum: int) -> PartResult:
    """The child was killed while it proved ``revision``: a failure naming it, where the
    stairway stops (proving it again here could kill the guard itself)."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    message = (
        f"{label(project, revision)}: the process proving it was killed by {name} "
        "(does the migration end its own process, or did the machine run out of memory?): "
        f"run with {JOBS_ENV}=1 to prove it in the guard's own process"
    )
    return PartResult((CheckResult(NAME, FAIL, message, revision.revision),), (False,), True, {})


def _complete(result: PartResult | None, count: int) -> PartResult | None:
    """The child's results for its first ``count`` revisions (it may have proven more before it
    heard where to stop); None when it stopped short without a failed upgrade (a crash)."""
    if result is None:
        return None
    if result.stopped and len(result.checks) <= count:
        return result
    if len(result.checks) < count:
        return None
    return PartResult(result.checks[:count], result.empty[:count], False, {})


class _Limit:
    """Where the child stops: read from the parent's pipe, without waiting."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.value: int | None = None
        self.buffer = b""

    def reached(self, index: int) -> bool:
        if self.value is None and select.select([self.fd], [], [], 0)[0]:
            chunk = os.read(self.fd, 64)
            self.buffer += chunk
            if b"\n" in self.buffer:
                self.value = int(self.buffer.split(b"\n", 1)[0])
            elif not chunk:  # the parent is gone: stop
                self.value = index
        return self.value is not None and index >= self.value


def prove_range(
    project: Project,
    url: Any,
    name: str,
    start: int,
    end: int | None,
    data_check: bool,
    *,
    limit: _Limit | None = None,
    report: Any = None,
) -> PartResult:
    """On a new database ``name`` of the server of ``url``: upgrade plainly to ``start`` (as the
    check did) and prove revisions from there to ``end`` (or to where ``limit`` says); the
    database is dropped after. Run by the child, or in-process when the child crashed."""
    from sqlalchemy import create_engine, pool

    revisions = project.revisions()
    stop_at = len(revisions) if end is None else end
    admin = create_engine(url, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    engine = create_engine(url.set(database=name), poolclass=pool.NullPool)
    try:
        with admin.connect() as conn:
            version = conn.dialect.server_version_info or (0,)
            strategy = " STRATEGY FILE_COPY" if version >= (15,) else ""  # no WAL copy: faster
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"{strategy}')
        try:
            with engine.connect() as connection:
                if start > 0:
                    target = revisions[start - 1].revision
                    error = migrate(project, connection, target)
                    if error is not None:
                        raise ProjectError(f"revision {target}: upgrade failed: {error.message}")
                filler = Filler() if data_check else None
                current = snapshot(project, connection)
                checks: list[Any] = []
                empty: list[bool] = []
                stopped = False
                for index in range(start, stop_at):
                    if limit is not None and limit.reached(index):
                        break
                    stretch = prove(project, connection, [revisions[index]], current, filler)
                    checks.extend(stretch.checks)
                    empty.append(not stretch.reversible)
                    if report is not None:
                        report(index)
                    if stretch.stopped:
                        stopped = True
                        break
                    current = stretch.after
                unfilled = dict(filler.unfilled) if filler is not None else {}
                return PartResult(tuple(checks), tuple(empty), stopped, unfilled)
        finally:
            engine.dispose()
            with admin.connect() as conn:
                _drop(conn, name)
    finally:
        admin.dispose()


def _drop(conn: Any, name: str) -> None:
    """Drop database ``name``; its closed connections' backends may still be exiting."""
    version = conn.dialect.server_version_info or (0,)
    force = " WITH (FORCE)" if version >= (13,) else ""
    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"{force}')


def _database_name(url: Any, pid: int) -> str:
    return f"{(url.database or 'postgres')[:40]}_part_{pid}"


class _Child:
    """The forked process: progress lines (``P <index>``) then its pickled result (``R <size>``)."""

    def __init__(self, pid: int, results: int, control: int, name: str, url: Any) -> None:
        self.pid = pid
        self.results = results  # read end of the child's messages
        self.control = control  # write end: where to stop
        self.name = name  # its database, dropped by the child itself unless it died
        self.url = url
        self.next = 0  # the first revision the child has not proven yet
        self.buffer = b""
        self.payload: bytes | None = None
        self.reaped = False
        self.killed_by: int | None = None  # the signal that ended it (not one of ours)

    @classmethod
    def start(cls, project: Project, url: Any, start: int, data_check: bool) -> _Child:
        results_read, results_write = os.pipe()
        control_read, control_write = os.pipe()

        def work() -> int:
            os.close(results_read)
            os.close(control_write)
            return _child_main(project, url, start, data_check, results_write, control_read)

        try:
            pid = _fork(work)
        except BaseException:  # no process to spare (the caller runs the stairway alone), Ctrl-C
            _close(results_read, results_write, control_read, control_write)
            raise
        os.close(results_write)
        os.close(control_read)
        os.set_blocking(results_read, False)
        child = cls(pid, results_read, control_write, _database_name(url, pid), url)
        child.next = start
        return child

    def poll(self) -> None:
        """Read the progress the child reported so far, without waiting."""
        with contextlib.suppress(BlockingIOError):
            while True:
                chunk = os.read(self.results, 65536)
                if not chunk:
                    break
                self.buffer += chunk
        self._parse()

    def _parse(self) -> None:
        while self.payload is None and b"\n" in self.buffer:
            line, rest = self.buffer.split(b"\n", 1)
            kind, _, value = line.partition(b" ")
            if kind == b"P":
                self.buffer = rest
                self.next = max(self.next, int(value) + 1)
            elif kind == b"R":
                size = int(value)
                if len(rest) < size:
                    return
                self.payload, self.buffer = rest[:size], rest[size:]
            else:
                self.buffer = rest

    def limit(self, index: int) -> None:
        """Tell the child to prove nothing from revision ``index`` on."""
        with contextlib.suppress(OSError):
            os.write(self.control, f"{index}\n".encode())

    def result(self) -> PartResult | None:
        """Wait for the child's result; None when it crashed."""
        os.set_blocking(self.results, True)
        while self.payload is None:
            chunk = os.read(self.results, 65536)
            if not chunk:
                break
            self.buffer += chunk
            self._parse()
        _pid, status = os.waitpid(self.pid, 0)
        self.reaped = True
        if os.WIFSIGNALED(status):
            self.killed_by = os.WTERMSIG(status)
        value = None
        if self.payload is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            with contextlib.suppress(Exception):
                kind, value = pickle.loads(self.payload)
                if kind != "ok" or not isinstance(value, PartResult):
                    value = None
        if value is None:
            self.drop_database()
        return value

    def stop(self) -> None:
        """Kill (if still running) and reap the child; close the pipes."""
        if not self.reaped:
            _kill_and_reap(self.pid)
            self.reaped = True
        _close(self.results, self.control)
        self.results = self.control = -1  # closed once: the numbers may be reused

    def drop_database(self) -> None:
        from sqlalchemy import create_engine, pool

        admin = create_engine(self.url, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                _drop(conn, self.name)
        finally:
            admin.dispose()


def _child_main(project: Project, url: Any, start: int, data_check: bool, out: int, control: int) -> int:
    """In the child: prove from ``start`` until the parent's limit, report, send the result."""

    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(out, view) :]

    def report(index: int) -> None:
        write(f"P {index}\n".encode())

    try:
        name = _database_name(url, os.getpid())
        result = prove_range(
            project, url, name, start, None, data_check, limit=_Limit(control), report=report
        )
        payload = pickle.dumps(("ok", result))
    except BaseException as err:  # reported to the parent, which then proves the part itself
        payload = pickle.dumps(("error", f"{type(err).__name__}: {one_line(str(err))}"))
    write(f"R {len(payload)}\n".encode() + payload)
    return 0


def _fork(work: Callable[[], int]) -> int:
    """Fork; the child runs ``work()`` and ends with its status, never returning from here
    (never running the parent's cleanup). Returns the child's pid in the parent.

    Ctrl-C and SIGTERM are held off across the fork: one inside the fork's hooks (logging's
    locks) would leave a lock held or released twice. The child sets its own handlers before
    it lets them in (:func:`_quiet`); in the parent a signal that waited is raised as they
    come back, and the child is then killed before it can outlive the guard.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    # the parent's objects are never collected in the child: no finalizer there closes a
    # connection of the parent's (psycopg2 would say goodbye on the shared socket)
    gc.freeze()
    pid = -1
    try:
        with signals_blocked():
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    _quiet()
                    status = work()
                finally:
                    real_exit(status)  # not the project's os._exit (exits.py)
    except BaseException:
        if pid > 0:
            _kill_and_reap(pid)
        raise
    finally:
        if pid != 0:
            gc.unfreeze()
    return pid


def _kill_and_reap(pid: int) -> None:
    """SIGKILL a child of ours (if it still runs) and wait for it, Ctrl-C held off meanwhile."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with signals_blocked(), contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _close(*fds: int) -> None:
    for fd in fds:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def _quiet() -> None:
    """In the child: default signal handling (the parent kills it), no output at all."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for sig in signals:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)  # held off by _fork
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - open until os._exit


# --- one call in a forked child -------------------------------------------------------------


def can_fork() -> bool:
    """Linux, one thread, a second process allowed (``SCHEMA_WARDEN_JOBS`` is not 1)."""

    text = _jobs_setting(os.environ)
    return (
        sys.platform.startswith("linux") and other_threads() == 0 and not (text.isdigit() and int(text) < 2)
    )


class Forked:
    """``fn()`` run in a forked child meanwhile; :meth:`result` is its pickled return value.

    For work that has to be done anyway and needs no state of the parent's connections (the
    child opens its own). The child prints nothing, never runs the parent's cleanup and ends
    with ``os._exit``; :meth:`stop` kills and reaps it (also on Ctrl-C and errors: use it in a
    ``finally``). :meth:`result` is None when the child failed: the caller then does the work
    itself.
    """

    def __init__(self, fn: Any) -> None:
        self.pid = -1
        self.fd = -1
        read, write = os.pipe()

        def work() -> int:
            os.close(read)
            try:
                payload = pickle.dumps(("ok", fn()))
            except BaseException as err:
                payload = pickle.dumps(("error", f"{type(err).__name__}: {one_line(str(err))}"))
            view = memoryview(payload)
            while view:
                view = view[os.write(write, view) :]
            return 0

        try:
            self.pid = _fork(work)
        except OSError:
            _close(read, write)
            return
        except BaseException:
            _close(read, write)
            raise
        os.close(write)
        self.fd = read

    @property
    def started(self) -> bool:
        return self.pid > 0

    def result(self) -> Any:
        """Wait for the child; its return value, or None when it failed or did not start."""
        if not self.started or self.fd < 0:
            return None
        chunks = []
        while chunk := os.read(self.fd, 1 << 16):
            chunks.append(chunk)
        _pid, status = os.waitpid(self.pid, 0)
        self.pid = -1
        self.stop()
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            return None
        try:
            kind, value = pickle.loads(b"".join(chunks))
        except Exception:
            return None
        return value if kind == "ok" else None

    def stop(self) -> None:
        """Kill (if still running) and reap the child; close the pipe. Idempotent."""
        if self.pid > 0:
            _kill_and_reap(self.pid)
            self.pid = -1
        _close(self.fd)
        self.fd = -1
