"""Benchmark: schema-warden vs pytest-alembic and plain Alembic, same machine, same run.

``python -m bench`` (see bench/README.md). For each generated history (50 and 300
revisions) it times, as medians of ``--runs`` runs:

  a  pytest-alembic's default tests (single head, upgrade, model definitions match DDL,
     up/down consistency) against a Postgres server already running
  b  alembic upgrade head && alembic downgrade base && alembic upgrade head && alembic check
     (four CLI processes) against that server
  c  schema-warden check, cold: empty XDG_CACHE_HOME (includes initdb and its own server)
  c' schema-warden check, cold project: no proofs cached, the initdb'd cluster kept
  d  schema-warden check, warm, nothing changed
  e  schema-warden check, warm, after adding one new revision (largest history)
  f  schema-warden heads

``python -m bench --scale``: the wide histories (one new table every 5 revisions, so the
schema grows with the history) of 50, 100, 300, 600 and 1000 revisions (``--sizes``), 1 run
each (``--runs``): a, c, e and

  g0 schema-warden check, warm, revision N/2 just given a downgrade that leaves a column
     behind (exit 1 naming it is the expected outcome; anything else fails the measurement)
  g  the same check run again, the failure still there (a developer re-running)

with c/a per N, e/c and the growth of c on the largest history, and issue 19's targets.

``python -m bench --mechanisms``: the wide 300- and 1000-revision histories (``--sizes``),
c, e and d with every speed mechanism on, then with each one off in turn
(``SCHEMA_WARDEN_SPEED_OFF=<name>``, hooks/schema_warden/speed.py): each mechanism's lines
of code and what it saves on each case, (off - on) / off.

Each mode writes its own section of bench/RESULTS.md and keeps the others.

pytest-alembic 0.13.1 does not collect under pytest 9, so it runs from its own venv
(bench/.venv-pytest-alembic: pytest<9, pytest-alembic, and the same SQLAlchemy, Alembic and
psycopg2 versions as ours), created from PyPI on the first run.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as dt
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench import generate

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
GENERATED = BENCH_DIR / "generated"
VENV = BENCH_DIR / ".venv-pytest-alembic"
RESULTS = BENCH_DIR / "RESULTS.md"
PYTEST_ALEMBIC = "pytest-alembic==0.13.1"

LABELS = {
    "a": "pytest-alembic default tests (server running)",
    "b": "alembic upgrade/downgrade/upgrade/check CLI (server running)",
    "c": "schema-warden check, cold: empty XDG_CACHE_HOME (initdb + own server)",
    "c'": "schema-warden check, cold project: no proofs cached, initdb'd cluster kept",
    "d": "schema-warden check, warm, nothing changed",
    "e": "schema-warden check, warm, one new revision added",
    "f": "schema-warden heads",
    "g0": "schema-warden check, warm, revision N/2 just broken (exit 1 expected)",
    "g": "schema-warden check, warm, standing failure at N/2: run again (exit 1 expected)",
}


@dataclass
class Timing:
    """The times of one measurement; a failed command poisons it (reported, never hidden)."""

    times: list[float] = field(default_factory=list)
    failure: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times and not self.failure else None


@dataclass
class Command:
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    exit_code: int = 0  # the outcome that counts as success
    expect: str | None = None  # text its output must contain (e.g. the failure a run must find)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_timed(commands: Sequence[Command]) -> tuple[float, str | None]:
    """Run commands one after another (like ``&&``); wall time, or the first failure."""
    start = time.perf_counter()
    for command in commands:
        result = subprocess.run(
            command.argv, cwd=command.cwd, env=command.env, capture_output=True, text=True
        )
        output = result.stdout + result.stderr
        if result.returncode != command.exit_code or (command.expect and command.expect not in output):
            tail = output.strip().splitlines()[-12:]
            wanted = f" (expected {command.exit_code}" + (
                f" and {command.expect!r})" if command.expect else ")"
            )
            return 0.0, (
                f"`{' '.join(command.argv[-3:])}` exited {result.returncode}{wanted}: " + " | ".join(tail)
            )
    return time.perf_counter() - start, None


def measure(
    runs: int,
    commands: Callable[[int], Sequence[Command]],
    *,
    before: Callable[[int], None] | None = None,
    after: Callable[[int], None] | None = None,
) -> Timing:
    timing = Timing()
    for i in range(runs):
        if before:
            before(i)
        try:
            elapsed, failure = _run_timed(commands(i))
        finally:
            if after:
                after(i)
        if failure:
            timing.failure = failure
            _log(f"    FAILED: {failure[:2000]}")
            break
        timing.times.append(elapsed)
    return timing


# --- the environment each tool runs in -------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    skip = ("PG", "DATABASE_URL", "XDG_CACHE", "SCHEMA_WARDEN_PROOF_CACHE", "SCHEMA_WARDEN_SPEED_OFF")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def _guard_argv() -> list[str]:
    script = Path(sys.executable).parent / "schema-warden"
    if script.is_file():
        return [str(script)]
    found = shutil.which("schema-warden")
    return [found] if found else [sys.executable, "-m", "schema_warden"]


def ensure_pytest_alembic_venv(venv: Path = VENV) -> Path:
    """The venv pytest-alembic runs in (pytest<9); created from PyPI on first use."""
    python = venv / "bin" / "python"
    marker = venv / ".bench-ready"
    wanted = (
        f"{PYTEST_ALEMBIC} pytest<9 sqlalchemy=={metadata.version('sqlalchemy')} "
        f"alembic=={metadata.version('alembic')} psycopg2-binary=={metadata.version('psycopg2-binary')}"
    )
    if marker.is_file() and marker.read_text() == wanted and python.is_file():
        return python
    _log(f"creating {venv.relative_to(REPO_ROOT)} ({wanted}) ...")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted.split()],
        check=True,
    )
    marker.write_text(wanted)
    return python


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    from schema_warden.server.postgres import find_binaries

    binaries = find_binaries()
    load = "?"
    with contextlib.suppress(OSError):
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return {
        "load average at start (1/5/15 min)": load,
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgres": f"{binaries.version} ({binaries.bindir})",
        "sqlalchemy / alembic": f"{metadata.version('sqlalchemy')} / {metadata.version('alembic')}",
        "schema-warden": metadata.version("schema-warden"),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# --- the measurements -------------------------------------------------------------------


@contextlib.contextmanager
def _server() -> Iterator[object]:
    from schema_warden.server.postgres import throwaway_server

    with throwaway_server() as server:
        yield server


def measure_baselines(
    server: object, project: Path, runs: int, python: Path | None, *, cli: bool = True
) -> dict[str, Timing]:
    """a and b (``cli``): against the already running server, a fresh database per test / per run."""
    results: dict[str, Timing] = {}
    socket_dir = str(server.socket_dir)  # type: ignore[attr-defined]
    if python is not None:
        # the server takes only its per-start password, which is in its passfile (libpq reads PGPASSFILE)
        port, passfile = str(server.port), str(server.passfile)  # type: ignore[attr-defined]
        env = _clean_env(BENCH_PG_HOST=socket_dir, BENCH_PG_PORT=port, PGPASSFILE=passfile)
        argv = [str(python), "-m", "pytest", "--test-alembic", "-q", "-p", "no:cacheprovider"]
        _log(f"  a: pytest-alembic ({runs} runs)")
        results["a"] = measure(runs, lambda _i: [Command(argv, project, env)])
    if not cli:
        return results
    names: list[str] = []

    def fresh(_i: int) -> None:
        names.append(f"bench_{uuid.uuid4().hex[:10]}")
        server.create_database(names[-1])  # type: ignore[attr-defined]

    def drop(_i: int) -> None:
        server.drop_database(names[-1])  # type: ignore[attr-defined]

    def alembic(_i: int) -> list[Command]:
        env = _clean_env(DATABASE_URL=server.url(names[-1]))  # type: ignore[attr-defined]
        base = [sys.executable, "-m", "alembic"]
        steps = (["upgrade", "head"], ["downgrade", "base"], ["upgrade", "head"], ["check"])
        return [Command(base + step, project, env) for step in steps]

    _log(f"  b: alembic CLI ({runs} runs)")
    results["b"] = measure(runs, alembic, before=fresh, after=drop)
    return results


GUARD_CASES = ("c", "c'", "d", "e", "f")


def measure_guard(
    project: Path,
    size: int,
    runs: int,
    cache_root: Path,
    *,
    cases: Sequence[str] = GUARD_CASES,
    wide: bool = False,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Timing]:
    """``cases`` (of c, c', d, e, f, g0 and g, measured in that order): the guard as a user
    runs it, its cache in ``cache_root``; ``extra_env``: added to the guard's environment."""
    from schema_warden.cache.location import CACHE_SUBDIR

    results: dict[str, Timing] = {}
    guard = _guard_argv()
    check = [*guard, "check"]

    def env() -> dict[str, str]:
        return _clean_env(XDG_CACHE_HOME=str(cache_root), **(extra_env or {}))

    def empty_cache(_i: int) -> None:
        shutil.rmtree(cache_root, ignore_errors=True)
        cache_root.mkdir(parents=True)

    def no_proofs(_i: int) -> None:
        shutil.rmtree(cache_root / "schema-warden" / CACHE_SUBDIR, ignore_errors=True)

    if "c" in cases:
        _log(f"  c: cold, empty XDG_CACHE_HOME ({runs} runs)")
        results["c"] = measure(runs, lambda _i: [Command(check, project, env())], before=empty_cache)
    if "c'" in cases:
        _log(f"  c': cold project, cluster cached ({runs} runs)")
        results["c'"] = measure(runs, lambda _i: [Command(check, project, env())], before=no_proofs)
    if {"d", "e", "g0", "g"} & set(cases):
        cache_root.mkdir(parents=True, exist_ok=True)
        _elapsed, failure = _run_timed([Command(check, project, env())])  # warm the cache
        if failure:
            _log(f"    warming the cache FAILED: {failure[:2000]}")
    if "d" in cases:
        _log(f"  d: warm ({runs} runs)")
        results["d"] = measure(runs, lambda _i: [Command(check, project, env())])
    if "e" in cases:
        added: list[Path] = []

        def add(i: int) -> None:
            added.append(generate.append_revision(project, size, variant=i, wide=wide))

        def remove(_i: int) -> None:
            generate.remove_revision(project, size, added.pop(), wide=wide)

        _log(f"  e: warm + one new revision ({runs} runs)")
        results["e"] = measure(runs, lambda _i: [Command(check, project, env())], before=add, after=remove)
    if "g0" in cases or "g" in cases:
        _log(f"  g0, g: warm, standing failure at revision {max(1, size // 2)} ({runs} runs)")
        results.update(_standing_failure(project, size, runs, check, env, wide=wide))
    if "f" in cases:
        _log(f"  f: heads ({runs} runs)")
        results["f"] = measure(runs, lambda _i: [Command([*guard, "heads"], project, env())])
    return results


def prime(project: Path, scratch: Path) -> None:
    """One untimed check with a cache of its own (removed after): the revision files' bytecode
    is written and the files are in the page cache before anything is timed, so the first
    configuration measured does not pay for it alone."""
    env = _clean_env(XDG_CACHE_HOME=str(scratch))
    try:
        _elapsed, failure = _run_timed([Command([*_guard_argv(), "check"], project, env)])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if failure:
        _log(f"    priming FAILED: {failure[:2000]}")


def _standing_failure(
    project: Path, size: int, runs: int, check: list[str], env: Callable[[], dict[str, str]], *, wide: bool
) -> dict[str, Timing]:
    """g0 and g: revision N/2 given a downgrade that leaves a column behind (the cache warm for
    the good history); the check must exit 1 with a stairway failure naming it, twice."""
    index = max(1, size // 2)
    revision = generate.revision_id(index)
    first, again = Timing(), Timing()
    for _i in range(runs):
        generate.break_revision(project, size, index, wide=wide)
        try:
            command = Command(
                check, project, env(), exit_code=1, expect=f"FAIL stairway: revision {revision}"
            )
            for timing in (first, again):
                elapsed, failure = _run_timed([command])
                if failure:
                    timing.failure = failure
                    _log(f"    FAILED: {failure[:2000]}")
                    break
                timing.times.append(elapsed)
        finally:
            generate.restore_revision(project, size, index, wide=wide)
        if first.failure or again.failure:
            break
    return {"g0": first, "g": again}


# --- the report ---------------------------------------------------------------------------


def _fmt(seconds: float | None) -> str:
    return "failed" if seconds is None else f"{seconds:.2f} s"


def _ratio(num: Timing | None, den: Timing | None) -> str:
    if not num or not den or num.median is None or den.median is None or den.median == 0:
        return "–"
    return f"{num.median / den.median:.2f}"


def render(results: dict[int, dict[str, Timing]], info: dict[str, str], runs: int) -> str:
    sizes = sorted(results)
    lines = [
        "| measurement | " + " | ".join(f"{n} revisions" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for key, label in LABELS.items():
        if not any(key in results[n] for n in sizes):
            continue
        cells = []
        for n in sizes:
            timing = results[n].get(key)
            cells.append("–" if timing is None else _fmt(timing.median))
        lines.append(f"| {key}  {label} | " + " | ".join(cells) + " |")
    for num, den in (("c", "a"), ("c'", "a"), ("e", "a")):
        cells = [_ratio(results[n].get(num), results[n].get(den)) for n in sizes]
        lines.append(f"| ratio {num}/{den} | " + " | ".join(cells) + " |")
    failures = [
        f"- {n} revisions, {key}: {timing.failure}"
        for n in sizes
        for key, timing in results[n].items()
        if timing.failure
    ]
    machine_lines = [f"- {k}: {v}" for k, v in info.items()]
    return "\n".join(
        [
            "# Benchmark results",
            "",
            f"Written by `python -m bench` (medians of {runs} runs; see bench/README.md).",
            "",
            *lines,
            "",
            *(["Failures:", "", *failures, ""] if failures else []),
            "Machine:",
            "",
            *machine_lines,
            "",
        ]
    )


def targets(results: dict[int, dict[str, Timing]]) -> list[str]:
    """The issue's targets, each with its measured figure and met / not met."""

    def med(n: int, key: str) -> float | None:
        timing = results.get(n, {}).get(key)
        return timing.median if timing else None

    out = []

    def check(name: str, value: float | None, limit: float, unit: str) -> None:
        if value is None:
            out.append(f"- {name}: not measured")
        else:
            verdict = "met" if value <= limit else "NOT met"
            out.append(f"- {name}: {value:.2f}{unit} (target <= {limit}{unit}): {verdict}")

    sizes = sorted(results)
    small, large = sizes[0], sizes[-1]
    for key in ("c", "c'"):
        check(f"{small} revisions cold ({key}) incl. server start", med(small, key), 1.0, " s")
        a = med(small, "a")
        c = med(small, key)
        check(f"{small} revisions cold ({key}) / a", None if a is None or c is None else c / a, 0.8, "x")
        a, c = med(large, "a"), med(large, key)
        check(f"{large} revisions cold ({key}) / a", None if a is None or c is None else c / a, 0.5, "x")
    check(f"{large} revisions warm + one new revision (e)", med(large, "e"), 1.0, " s")
    check(f"heads on {large} revisions (f)", med(large, "f"), 0.3, " s")
    return out


# --- at scale (--scale) ----------------------------------------------------------------------

SCALE_SIZES = "50,100,300,600,1000"
SCALE_CASES = ("c", "e", "g0", "g")


def render_scale(
    results: dict[int, dict[str, Timing]], tables: dict[int, int], info: dict[str, str], runs: int
) -> str:
    """The scale section of RESULTS.md: cost per N, ratios, issue 19's targets, the machine."""
    sizes = sorted(results)
    lines = [
        "| measurement | " + " | ".join(f"{n} revisions" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
        "| tables at head | " + " | ".join(str(tables.get(n, "–")) for n in sizes) + " |",
    ]
    for key in ("a", *SCALE_CASES):
        if any(key in results[n] for n in sizes):
            cells = ["–" if key not in results[n] else _fmt(results[n][key].median) for n in sizes]
            lines.append(f"| {key}  {LABELS[key]} | " + " | ".join(cells) + " |")
    per_revision = []
    for n in sizes:
        c = results[n].get("c")
        per_revision.append("–" if c is None or c.median is None else f"{c.median / n * 1000:.1f} ms")
    lines.append("| c per revision | " + " | ".join(per_revision) + " |")
    for num, den in (("c", "a"), ("e", "c"), ("g", "c")):
        cells = [_ratio(results[n].get(num), results[n].get(den)) for n in sizes]
        lines.append(f"| ratio {num}/{den} | " + " | ".join(cells) + " |")
    small, large = sizes[0], sizes[-1]
    biggest, smallest = results[large], results[small]
    summary = [
        f"- e/c on the largest history ({large} revisions): {_ratio(biggest.get('e'), biggest.get('c'))}",
        f"- growth of c, {large} revisions / {small} revisions: {_ratio(biggest.get('c'), smallest.get('c'))}"
        f" (the history {large / small:g} times as long)",
    ]
    failures = [
        f"- {n} revisions, {key}: {timing.failure}"
        for n in sizes
        for key, timing in results[n].items()
        if timing.failure
    ]
    return "\n".join(
        [
            "## At scale (`python -m bench --scale`)",
            "",
            f"Wide histories (one new table every 5 revisions); medians of {runs} run(s); "
            "see bench/README.md.",
            "",
            *lines,
            "",
            *summary,
            "",
            "Targets (issue 19):",
            "",
            *scale_targets(results),
            "",
            *(["Failures:", "", *failures, ""] if failures else []),
            "Machine:",
            "",
            *(f"- {k}: {v}" for k, v in info.items()),
            "",
        ]
    )


def scale_targets(results: dict[int, dict[str, Timing]]) -> list[str]:
    """Issue 19's targets, each with its measured figure and met / NOT met."""

    def quotient(num: tuple[int, str], den: tuple[int, str]) -> float | None:
        top, bottom = results.get(num[0], {}).get(num[1]), results.get(den[0], {}).get(den[1])
        if top is None or bottom is None or top.median is None or not bottom.median:
            return None
        return top.median / bottom.median

    goals = (
        ("600 revisions cold: c/a", (600, "c"), (600, "a"), 0.3),
        ("cold growth: c(1000 revisions) / c(100 revisions)", (1000, "c"), (100, "c"), 10.0),
        ("1000 revisions warm + one new revision: e/c", (1000, "e"), (1000, "c"), 0.05),
        ("50 revisions cold: c/a", (50, "c"), (50, "a"), 0.6),
    )
    out = []
    for name, num, den, limit in goals:
        value = quotient(num, den)
        if value is None:
            out.append(f"- {name} (target <= {limit:g}): not measured")
        else:
            verdict = "met" if value <= limit else "NOT met"
            out.append(f"- {name}: {value:.3f} (target <= {limit:g}): {verdict}")
    return out


def run_scale(args: argparse.Namespace, runs: int, sizes: list[int]) -> tuple[str, bool]:
    python = None if args.no_pytest_alembic else ensure_pytest_alembic_venv()
    info = machine()
    results: dict[int, dict[str, Timing]] = {n: {} for n in sizes}
    tables: dict[int, int] = {}
    projects = {n: args.workdir / f"wide-{n}" for n in sizes}
    args.workdir.mkdir(parents=True, exist_ok=True)
    cache_root = Path(tempfile.mkdtemp(prefix="cache-", dir=args.workdir))
    try:
        for n in sizes:
            tables[n] = len(generate.generate(projects[n], n, wide=True).tables)
        # per history, pytest-alembic and then the guard: a ratio compares runs minutes apart,
        # not the two ends of a long session (this machine's speed drifts over tens of minutes)
        for n in sizes:
            prime(projects[n], cache_root / f"prime-{n}")
            if python is not None:
                with _server() as server:
                    _log(f"{n} revisions (wide): pytest-alembic")
                    results[n].update(measure_baselines(server, projects[n], runs, python, cli=False))
            _log(f"{n} revisions (wide): schema-warden")
            results[n].update(
                measure_guard(projects[n], n, runs, cache_root / str(n), cases=SCALE_CASES, wide=True)
            )
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)
    failed = any(t.failure for r in results.values() for t in r.values())
    return render_scale(results, tables, info, runs), failed


# --- what each speed mechanism saves (--mechanisms) -----------------------------------------

MECHANISM_SIZES = "300,1000"
MECHANISM_CASES = ("c", "e", "d")
PACKAGE_DIR = REPO_ROOT / "hooks" / "schema_warden"

_CLUSTER_PART = (
    "linear_order",
    "early_plan",
    "CLUSTERS_SUBDIR",
    "CLUSTER_FILE",
    "CLUSTER_ARCHIVE",
    "MAX_CLUSTERS",
    "STALE_STAGING_S",
    "snapshot_digest",
    "file_digest",
    "_Digest",
    "ClusterEntry",
    "Reading",
    "ClusterCache",
)

# The code that implements each mechanism: (module under hooks/schema_warden, the top-level
# names or Class.method in it, None for the whole module, names left out). Shared helpers
# (cache/sealed.py, cache/location.py) and the wiring lines inside shared functions (the
# `if speed.enabled(...)` and what a mechanism adds to _run or _run_checks) are not counted.
MECHANISM_CODE: dict[str, tuple[tuple[str, tuple[str, ...] | None, tuple[str, ...]], ...]] = {
    "proof-cache": (
        ("cache/proofs.py", None, _CLUSTER_PART),
        ("commands/check.py", ("_replay_proven", "_keep_prefix", "_span_of", "_span", "_cached_message"), ()),
    ),
    "cluster-archive": (
        ("cache/proofs.py", _CLUSTER_PART, ()),
        (
            "commands/check.py",
            (
                "_guess_plan",
                "Pristine",
                "_quoted",
                "_version_table",
                "_replay",
                "_pristine_head",
                "SAVE_AFTER",
                "_worth_saving",
                "_holds",
                "_Launched",
                "_launch",
                "_start_server",
                "_save",
            ),
            (),
        ),
        (
            "server/postgres.py",
            (
                "Server.save_data_dir",
                "RUNTIME_FILES",
                "_CHUNK",
                "_HashingWriter",
                "_tar_to",
                "archive_data_dir",
                "extract_data_dir",
            ),
            (),
        ),
    ),
    "initdb-cache": (
        (
            "server/postgres.py",
            (
                "_cluster_paths",
                "_initdb",
                "_cached_cluster",
                "_unpack_cached",
                "cluster_ready",
                "prepare_cluster",
            ),
            (),
        ),
        ("commands/check.py", ("_Initdb",), ()),
    ),
    "static-cache": (("cache/static.py", None, ()),),
    "models-cache": (("cache/models.py", None, ()),),
    "two-processes": (
        ("proof/parallel.py", None, ()),
        ("proof/stairway.py", ("rehearse",), ()),
        ("commands/check.py", ("_models_ahead",), ()),
    ),
    "incremental-snapshot": (("schema/incremental.py", None, ()),),
}


def _node_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _docstring_lines(tree: ast.Module) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                found.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return found


def _spans(tree: ast.Module) -> dict[str, tuple[int, int]]:
    """Top-level name (and Class.method) -> its first and last line, decorators included."""

    def span(node: ast.stmt) -> tuple[int, int]:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        return first, node.end_lineno or node.lineno

    found = {}
    for node in tree.body:
        for name in _node_names(node):
            found[name] = span(node)
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                for name in _node_names(member):
                    found[f"{node.name}.{name}"] = span(member)
    return found


def code_lines(path: Path, names: tuple[str, ...] | None, exclude: tuple[str, ...] = ()) -> int | None:
    """Lines of code of ``names`` (top-level names or Class.method) in ``path``, or of the
    whole module (``names`` None) but ``exclude``: blank lines, comment-only lines and
    docstrings not counted. None when the file is not there."""
    try:
        text = path.read_text()
    except OSError:
        return None
    tree = ast.parse(text)
    spans = _spans(tree)
    missing = sorted((set(names or ()) | set(exclude)) - set(spans))
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} (bench/run.py MECHANISM_CODE)")
    text_lines = text.splitlines()
    if names is None:
        counted = set(range(1, len(text_lines) + 1))
        for name in exclude:
            counted -= set(range(spans[name][0], spans[name][1] + 1))
    else:
        counted = {line for name in names for line in range(spans[name][0], spans[name][1] + 1)}
    counted -= _docstring_lines(tree)
    return sum(
        1
        for number, line in enumerate(text_lines, start=1)
        if number in counted and line.strip() and not line.strip().startswith("#")
    )


def mechanism_lines(name: str) -> int | None:
    total, seen = 0, False
    for module, names, exclude in MECHANISM_CODE.get(name, ()):
        count = code_lines(PACKAGE_DIR / module, names, exclude)
        if count is not None:
            total, seen = total + count, True
    return total if seen else None


def wired(name: str) -> bool:
    """Does some module of the package ask ``speed.enabled(name)``?"""
    pattern = re.compile(r"""enabled\(\s*["']""" + re.escape(name) + r"""["']\s*\)""")
    return any(
        pattern.search(path.read_text()) for path in PACKAGE_DIR.rglob("*.py") if path.name != "speed.py"
    )


def render_mechanisms(
    results: dict[int, dict[str | None, dict[str, Timing]]],
    lines_of_code: dict[str, int | None],
    unwired: list[str],
    info: dict[str, str],
    runs: int,
) -> str:
    sizes = sorted(results)
    columns = [(n, case) for n in sizes for case in MECHANISM_CASES]
    head = [
        "| mechanism | lines of code | " + " | ".join(f"{case} {n}" for n, case in columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]

    def on(n: int, case: str) -> float | None:
        timing = results[n].get(None, {}).get(case)
        return timing.median if timing else None

    rows = ["| all on (time) | – | " + " | ".join(_fmt(on(n, case)) for n, case in columns) + " |"]
    for name in lines_of_code:
        loc = lines_of_code[name]
        if name in unwired:
            cells = ["not wired"] * len(columns)
        else:
            cells = []
            for n, case in columns:
                timing = results[n].get(name, {}).get(case)
                off, base = (timing.median if timing else None), on(n, case)
                if off is None or base is None or off == 0:
                    cells.append("failed" if timing and timing.failure else "–")
                else:
                    cells.append(f"{(off - base) / off * 100:.0f}% ({off:.2f} s)")
        rows.append(f"| {name} | {'–' if loc is None else loc} | " + " | ".join(cells) + " |")
    failures = [
        f"- {n} revisions, {name or 'all on'}, {case}: {timing.failure}"
        for n in sizes
        for name, cases in results[n].items()
        for case, timing in cases.items()
        if timing.failure
    ]
    return "\n".join(
        [
            "## Speed mechanisms (`python -m bench --mechanisms`)",
            "",
            f"Wide histories; medians of {runs} run(s). Each mechanism turned off in turn "
            "(`SCHEMA_WARDEN_SPEED_OFF=<name>` in the guard's environment): saving = (off - on) / off, "
            "the time with it off in parentheses. Lines of code: non-blank, non-comment lines of the "
            "functions, classes and modules that implement it (bench/run.py MECHANISM_CODE), docstrings "
            "and shared helpers not counted. Cases: c cold (empty XDG_CACHE_HOME), e warm + one new "
            "revision, d warm, nothing changed.",
            "",
            *head,
            *rows,
            "",
            *(["Failures:", "", *failures, ""] if failures else []),
            "Machine:",
            "",
            *(f"- {k}: {v}" for k, v in info.items()),
            "",
        ]
    )


def run_mechanisms(args: argparse.Namespace, runs: int, sizes: list[int]) -> tuple[str, bool]:
    from schema_warden.speed import ENV, MECHANISMS

    names = list(MECHANISMS)
    unwired = [name for name in names if not wired(name)]
    lines_of_code = {name: mechanism_lines(name) for name in names}
    info = machine()
    results: dict[int, dict[str | None, dict[str, Timing]]] = {n: {} for n in sizes}
    args.workdir.mkdir(parents=True, exist_ok=True)
    cache_root = Path(tempfile.mkdtemp(prefix="cache-", dir=args.workdir))
    try:
        for n in sizes:
            project = args.workdir / f"wide-{n}"
            generate.generate(project, n, wide=True)
            prime(project, cache_root / f"prime-{n}")
            # round after round, every configuration once per round: each median compares
            # runs minutes apart, whatever this machine's speed does over the whole session
            for round_ in range(runs):
                for off in [None, *(name for name in names if name not in unwired)]:
                    label = "everything on" if off is None else off + " off"
                    _log(f"{n} revisions (wide), round {round_ + 1} of {runs}: {label}")
                    extra = {} if off is None else {ENV: off}
                    measured = measure_guard(
                        project,
                        n,
                        1,
                        cache_root / f"{n}-{off or 'on'}",
                        cases=MECHANISM_CASES,
                        wide=True,
                        extra_env=extra,
                    )
                    kept = results[n].setdefault(off, {})
                    for case, timing in measured.items():
                        into = kept.setdefault(case, Timing())
                        into.times.extend(timing.times)
                        into.failure = into.failure or timing.failure
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)
    failed = any(t.failure for r in results.values() for cases in r.values() for t in cases.values())
    return render_mechanisms(results, lines_of_code, unwired, info, runs), failed


# --- RESULTS.md: the default run's part, then one section per mode --------------------------

SECTIONS = ("scale", "mechanisms")
_SECTION = re.compile(r"<!-- bench:(\w+) -->\n(.*?)\n<!-- /bench:\1 -->\n?", re.S)


def write_results(path: Path, text: str, section: str | None = None) -> None:
    """Write ``text`` as the default run's part (``section`` None) or as that section,
    keeping what the other modes wrote."""
    existing = path.read_text() if path.is_file() else ""
    found = {m.group(1): m.group(2) for m in _SECTION.finditer(existing)}
    head = _SECTION.sub("", existing).rstrip("\n")
    if section is None:
        head = text.rstrip("\n")
    else:
        found[section] = text.rstrip("\n")
    parts = [head or "# Benchmark results"]
    parts += [
        f"<!-- bench:{name} -->\n{found[name]}\n<!-- /bench:{name} -->" for name in SECTIONS if name in found
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(parts) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--runs", type=int, help="runs per measurement (median; default 5, 1 with --scale/--mechanisms)"
    )
    parser.add_argument(
        "--sizes",
        help=f"history sizes (default 50,300; --scale {SCALE_SIZES}; --mechanisms {MECHANISM_SIZES})",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smoke run: 1 run, a 5-revision history")
    mode.add_argument("--scale", action="store_true", help="wide histories up to 1000 revisions: a, c, e, g")
    mode.add_argument(
        "--mechanisms", action="store_true", help="what each speed mechanism saves (c, e, d; each one off)"
    )
    parser.add_argument("--no-pytest-alembic", action="store_true", help="skip (a) and its venv")
    parser.add_argument("--only-guard", action="store_true", help="measure schema-warden only (c-f)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the results")
    parser.add_argument("--workdir", type=Path, default=GENERATED, help="where generated projects go")
    args = parser.parse_args(argv)
    if args.scale or args.mechanisms:
        runs = args.runs or 1
        default = SCALE_SIZES if args.scale else MECHANISM_SIZES
        sizes = sorted(int(s) for s in (args.sizes or default).split(","))
        if args.scale:
            args.no_pytest_alembic = args.no_pytest_alembic or args.only_guard
            text, failed = run_scale(args, runs, sizes)
        else:
            text, failed = run_mechanisms(args, runs, sizes)
        print(text)
        write_results(args.output, text, "scale" if args.scale else "mechanisms")
        _log(f"wrote {args.output}")
        return 1 if failed else 0
    runs = 1 if args.quick else (args.runs or 5)
    sizes = [5] if args.quick else sorted(int(s) for s in (args.sizes or "50,300").split(","))
    baselines = not args.only_guard
    python = None
    if baselines and not args.no_pytest_alembic:
        python = ensure_pytest_alembic_venv()

    info = machine()
    results: dict[int, dict[str, Timing]] = {}
    args.workdir.mkdir(parents=True, exist_ok=True)
    cache_root = Path(tempfile.mkdtemp(prefix="cache-", dir=args.workdir))
    try:
        projects = {}
        for n in sizes:
            projects[n] = args.workdir / f"history-{n}"
            generate.generate(projects[n], n)
            results[n] = {}
        if baselines:
            with _server() as server:
                for n in sizes:
                    _log(f"{n} revisions: baselines")
                    results[n].update(measure_baselines(server, projects[n], runs, python))
        for n in sizes:
            _log(f"{n} revisions: schema-warden")
            cases = GUARD_CASES if n == sizes[-1] else tuple(c for c in GUARD_CASES if c != "e")
            results[n].update(measure_guard(projects[n], n, runs, cache_root / str(n), cases=cases))
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)

    text = render(results, info, runs)
    goal_lines = targets(results) if baselines else []
    if goal_lines:
        text += "\nTargets (issue 7):\n\n" + "\n".join(goal_lines) + "\n"
    print(text)
    write_results(args.output, text)
    _log(f"wrote {args.output}")
    failed = any(t.failure for r in results.values() for t in r.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
