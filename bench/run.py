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

pytest-alembic 0.13.1 does not collect under pytest 9, so it runs from its own venv
(bench/.venv-pytest-alembic: pytest<9, pytest-alembic, and the same SQLAlchemy, Alembic and
psycopg2 versions as ours), created from PyPI on the first run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
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


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_timed(commands: Sequence[Command]) -> tuple[float, str | None]:
    """Run commands one after another (like ``&&``); wall time, or the first failure."""
    start = time.perf_counter()
    for command in commands:
        result = subprocess.run(
            command.argv, cwd=command.cwd, env=command.env, capture_output=True, text=True
        )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-12:]
            return 0.0, f"`{' '.join(command.argv[-3:])}` exited {result.returncode}: " + " | ".join(tail)
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
    skip = ("PG", "DATABASE_URL", "XDG_CACHE", "SCHEMA_WARDEN_PROOF_CACHE")
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


def measure_baselines(server: object, project: Path, runs: int, python: Path | None) -> dict[str, Timing]:
    """a and b: against the already running server, a fresh database per test / per run."""
    results: dict[str, Timing] = {}
    socket_dir = str(server.socket_dir)  # type: ignore[attr-defined]
    if python is not None:
        env = _clean_env(BENCH_PG_HOST=socket_dir, BENCH_PG_PORT=str(server.port))  # type: ignore[attr-defined]
        argv = [str(python), "-m", "pytest", "--test-alembic", "-q", "-p", "no:cacheprovider"]
        _log(f"  a: pytest-alembic ({runs} runs)")
        results["a"] = measure(runs, lambda _i: [Command(argv, project, env)])
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


def measure_guard(
    project: Path, size: int, runs: int, cache_root: Path, *, new_revision: bool
) -> dict[str, Timing]:
    """c, c', d, e, f: the guard as a user runs it, its cache in ``cache_root``."""
    from schema_warden.cache.location import CACHE_SUBDIR

    results: dict[str, Timing] = {}
    guard = _guard_argv()
    check = [*guard, "check"]

    def env() -> dict[str, str]:
        return _clean_env(XDG_CACHE_HOME=str(cache_root))

    def empty_cache(_i: int) -> None:
        shutil.rmtree(cache_root, ignore_errors=True)
        cache_root.mkdir(parents=True)

    def no_proofs(_i: int) -> None:
        shutil.rmtree(cache_root / "schema-warden" / CACHE_SUBDIR, ignore_errors=True)

    _log(f"  c: cold, empty XDG_CACHE_HOME ({runs} runs)")
    results["c"] = measure(runs, lambda _i: [Command(check, project, env())], before=empty_cache)
    _log(f"  c': cold project, cluster cached ({runs} runs)")
    results["c'"] = measure(runs, lambda _i: [Command(check, project, env())], before=no_proofs)
    _run_timed([Command(check, project, env())])  # warm the cache for d and e
    _log(f"  d: warm ({runs} runs)")
    results["d"] = measure(runs, lambda _i: [Command(check, project, env())])
    if new_revision:
        added: list[Path] = []

        def add(i: int) -> None:
            added.append(generate.append_revision(project, size, variant=i))

        def remove(_i: int) -> None:
            generate.remove_revision(project, size, added.pop())

        _log(f"  e: warm + one new revision ({runs} runs)")
        results["e"] = measure(runs, lambda _i: [Command(check, project, env())], before=add, after=remove)
    _log(f"  f: heads ({runs} runs)")
    results["f"] = measure(runs, lambda _i: [Command([*guard, "heads"], project, env())])
    return results


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (median; default 5)")
    parser.add_argument("--sizes", default="50,300", help="history sizes (default 50,300)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 run, a 5-revision history")
    parser.add_argument("--no-pytest-alembic", action="store_true", help="skip (a) and its venv")
    parser.add_argument("--only-guard", action="store_true", help="measure schema-warden only (c-f)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the results")
    parser.add_argument("--workdir", type=Path, default=GENERATED, help="where generated projects go")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs
    sizes = [5] if args.quick else sorted(int(s) for s in args.sizes.split(","))
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
            results[n].update(
                measure_guard(projects[n], n, runs, cache_root / str(n), new_revision=n == sizes[-1])
            )
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)

    text = render(results, info, runs)
    goal_lines = targets(results) if baselines else []
    if goal_lines:
        text += "\nTargets (issue 7):\n\n" + "\n".join(goal_lines) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    _log(f"wrote {args.output}")
    failed = any(t.failure for r in results.values() for t in r.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
