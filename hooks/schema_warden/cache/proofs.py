"""Incremental proof cache: revisions already proven are not proven again.

A revision is *proven* when its stairway passed (up, down without a trace, up again with
the same schema). What made that proof true is hashed into the revision's key:

- the revision's file and the project-local modules it imports (transitively);
- the keys of its parents, so editing any ancestor changes every key after it;
- a context: alembic.ini, env.py, the Postgres major, the guard's version and source,
  Alembic's and SQLAlchemy's versions and the settings that change what a check sees
  (schemas, excluded tables, irreversible revisions);
- the project's identity (its root's real path): two copies of a project with the same
  revision files never share proofs, since they may differ in what the revisions read;
- every other file under the project's root that the project's code read while it ran (a
  SQL file beside a revision, a JSON of seed rows): an audit hook on ``open`` records the
  paths while a check runs (:func:`watch`), the list is kept per project under ``reads/``
  and only grows, and each file's content is in the key from then on. The run that first
  sees a file records its proofs under the keys that include it (:meth:`ProofCache.record`
  computes them again), so its next run is warm. Python modules are left to the imports
  above (and the models deliberately out), as are alembic.ini and pyproject.toml.

The models are deliberately not part of a key: a proof is about the migrations, and drift
(migrations vs models) is compared on every run (only the build of the models' side is
remembered, by the SQL the models compile to: cache/models.py). A migration that
imports the models does bring them into its key (through its imports).

A run resumes after the last proven revision: it upgrades plainly to it (one env.py run,
about 0.4 s for the 300-revision benchmark history) and proves only what follows.
Restoring a ``pg_dump`` instead was measured faster (dump 0.07 s, load 0.10-0.13 s) but is
not faithful: Postgres re-parses the dumped DDL, and a CHECK such as ``unit IN ('C', 'F')``
on a varchar column comes back as a different expression (``(ARRAY[...])::text[]``), which
the drift check (models built with ``create_all``) then reports as drift.

Faster and faithful: a run that passed saves its server's stopped data directory, its
database ``postgres`` pristine at head (what a plain upgrade from empty gives, no generated
rows), under ``clusters/`` (:class:`ClusterCache`, keyed by head's proof key and the Postgres
build; at most two, least recently used evicted). The next run starts its server from it
(unpacking the archive costs what copying the initdb'd cluster costs, about 0.03 s at 300
revisions) while its digest is checked, then checks its version table and its schema's
snapshot digest, and replays only the revisions after it (none when it is at the last
proven revision). A damaged entry is deleted and the run replays from an empty database.

Layout under ``schema_warden.server.postgres.cache_dir() / "proofs"`` (or ``$SCHEMA_WARDEN_PROOF_CACHE``):
``entries/<key>.json`` (one proof), ``lock``, ``clusters/<name>/{data.tar,entry.json}``
(a saved data directory and its sealed description) and ``clusters/lock``. Every file is
written to a temporary name and renamed (a reader never sees half a file); every entry
carries a SHA-256 of its content, checked on each read: a corrupted or half-written entry
is deleted and proven again, never trusted. Writers hold an exclusive ``fcntl`` lock,
readers a shared one, so concurrent guards neither corrupt nor half-read each other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schema_warden import speed
from schema_warden.cache import sealed
from schema_warden.cache.location import proofs_dir

FORMAT = 1
_IMPORT = re.compile(r"^\s*(?:from\s+([A-Za-z_][\w.]*)\s+import\b|import\s+([A-Za-z_][\w., ]*))", re.M)


# --- pure: keys -------------------------------------------------------------------------


@dataclass(frozen=True)
class RevisionInput:
    """What a revision's key is computed from: its id, its parents, the digest of its code."""

    revision: str
    parents: tuple[str, ...]
    digest: str


def _sha(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def context_key(
    files: Mapping[str, bytes],
    *,
    postgres_major: int,
    tool: str,
    settings: Mapping[str, object] | None = None,
) -> str:
    """The key part every revision shares: config files, Postgres major, tool, settings."""
    parts = [f"format={FORMAT}", f"postgres={postgres_major}", f"tool={tool}"]
    parts += [f"file:{name}={hashlib.sha256(data).hexdigest()}" for name, data in sorted(files.items())]
    parts.append("settings=" + json.dumps(settings or {}, sort_keys=True, default=_sorted_list))
    return _sha(*parts)


def _sorted_list(value: object) -> object:
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(str(v) for v in value)
    return str(value)


def chain_keys(context: str, revisions: Sequence[RevisionInput]) -> dict[str, str]:
    """Revision -> key; ``revisions`` base to head (parents first). Pure.

    A key covers the revision's code and, through its parents' keys, all its ancestors.
    """
    keys: dict[str, str] = {}
    for rev in revisions:
        parents = sorted(keys.get(p, f"missing:{p}") for p in rev.parents)
        keys[rev.revision] = _sha(context, rev.revision, rev.digest, *parents)
    return keys


def proven_closure(revisions: Sequence[RevisionInput], proven: Iterable[str]) -> list[str]:
    """Revisions (base to head order) that are proven *and* all of whose ancestors are."""
    proven_set = set(proven)
    ok: set[str] = set()
    out = []
    for rev in revisions:
        if rev.revision in proven_set and all(p in ok for p in rev.parents):
            ok.add(rev.revision)
            out.append(rev.revision)
    return out


def resume_index(revisions: Sequence[RevisionInput], revision: str) -> int | None:
    """Where to resume after restoring the database at ``revision``: the index after it.

    None unless the revisions before it (in base-to-head order) are exactly its ancestors,
    which is what a database upgraded to ``revision`` holds (always so in a linear history).
    """
    parents = {r.revision: r.parents for r in revisions}
    order = [r.revision for r in revisions]
    if revision not in parents:
        return None
    ancestors: set[str] = set()
    todo = list(parents[revision])
    while todo:
        current = todo.pop()
        if current not in ancestors:
            ancestors.add(current)
            todo.extend(parents.get(current, ()))
    index = order.index(revision)
    return index + 1 if set(order[:index]) == ancestors else None


def seal(payload: Mapping[str, object]) -> str:
    """An entry as a sealed record (cache/sealed.py)."""
    return sealed.seal(payload)


def unseal(text: str | bytes) -> dict[str, Any] | None:
    """The payload of a sealed entry of this cache's format, or None when it is damaged in any way."""
    return sealed.unseal(text, FORMAT)


def imported_modules(source: str) -> list[str]:
    """Dotted module names a Python source imports (absolute imports; cheap, no parsing)."""
    names = []
    for match in _IMPORT.finditer(source):
        if match.group(1):
            names.append(match.group(1))
        else:
            names += [n.strip().split(" ")[0] for n in match.group(2).split(",") if n.strip()]
    return names


# --- I/O: digests of files ----------------------------------------------------------------


def _module_files(name: str, roots: Sequence[str]) -> list[str]:
    parts = name.split(".")
    found = []
    for root in roots:
        for i in range(1, len(parts) + 1):
            base = os.path.join(root, *parts[:i])
            for candidate in (base + ".py", os.path.join(base, "__init__.py")):
                if os.path.isfile(candidate):
                    found.append(candidate)
    return found


@functools.lru_cache(maxsize=256)
def _real_dir(directory: str) -> str:
    return os.path.realpath(directory)


def real_path(path: str | os.PathLike[str]) -> str:
    """``os.path.realpath`` for many files in a few directories: each directory is resolved
    once (realpath costs an lstat per path component, 600 of them on a 300-revision history),
    the file itself is checked for being a link. For paths within one run: a directory
    replaced by a link meanwhile is not seen."""
    directory, name = os.path.split(os.path.abspath(path))
    candidate = os.path.join(_real_dir(directory), name)
    return os.path.realpath(candidate) if os.path.islink(candidate) else candidate


def code_digest(
    path: str | os.PathLike[str],
    roots: Sequence[str | os.PathLike[str]],
    memo: dict[str, bytes] | None = None,
) -> str:
    """SHA-256 of a file and of the project-local modules it imports, transitively.

    Imported modules are named by their path relative to the root they were found in, so
    a moved checkout keeps its keys.
    """
    memo = {} if memo is None else memo
    root_dirs = [os.fspath(r) for r in roots]
    start = os.fspath(path)
    seen: set[str] = set()
    todo = [(start, "self")]
    h = hashlib.sha256()
    while todo:
        current, label = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        data = memo.get(current)
        if data is None:
            with open(current, "rb") as fh:
                data = fh.read()
            memo[current] = data
        h.update(label.encode() + b"\0" + hashlib.sha256(data).digest())
        for name in imported_modules(data.decode("utf-8", "replace")):
            if name.split(".")[0] in ("alembic", "sqlalchemy", "__future__"):
                continue
            for found in _module_files(name, root_dirs):
                real = real_path(found)
                todo.append((real, name + ":" + os.path.basename(found)))
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def guard_fingerprint() -> str:
    """The guard's version plus a hash of every module of the package: a changed guard never
    trusts old proofs (about 40 files, read once per run)."""
    import schema_warden

    h = hashlib.sha256(schema_warden.__version__.encode())
    package = Path(schema_warden.__file__).parent
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    h.update(f"alembic={_version('alembic')};sqlalchemy={_version('sqlalchemy')}".encode())
    return f"{schema_warden.__version__}+{h.hexdigest()[:16]}"


def _version(distribution: str) -> str:
    """An installed distribution's version, read from its metadata: importing Alembic to ask
    costs 0.3 s, which the early plan (before Alembic is imported) must not pay."""
    found = _dist_info_version(distribution)
    if found is not None:
        return found
    from importlib import metadata  # 0.015 s to import: only when the names do not say

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:  # vendored or run from a source tree
        module = __import__(distribution)
        return str(module.__version__)


def _dist_info_version(distribution: str) -> str | None:
    """The version in the name of ``distribution``'s ``NAME-VERSION.dist-info`` directory in
    the first ``sys.path`` entry that has one, as importlib.metadata would find it; None when
    that entry has several (stale ones), none is found, or the name does not parse."""
    wanted = distribution.lower().replace("-", "_").replace(".", "_")
    for entry in sys.path:
        try:
            names = [e.name for e in os.scandir(entry or ".") if e.name.endswith((".dist-info", ".egg-info"))]
        except OSError:
            continue
        found = [
            name
            for name in names
            if name.rsplit(".", 1)[0].partition("-")[0].lower().replace(".", "_") == wanted
        ]
        if found:
            [name, *others] = found
            version = name.removesuffix(".dist-info").partition("-")[2]
            return version if not others and name.endswith(".dist-info") and version else None
    return None


# --- the cache ----------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: Path, exclusive: bool) -> Iterator[None]:
    """``flock`` on ``path``: exclusive for writers, shared for readers."""
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- I/O: the files the project's code reads while it runs --------------------------------

# not recorded: Python's own files (covered by the imports, or deliberately out: the models)
# and the configuration whose content or settings the context holds already; also
# packaging metadata
_SKIPPED_SUFFIXES = (".py", ".pyc", ".pyo", ".pyi")
_SKIPPED_NAMES = frozenset({"alembic.ini", "pyproject.toml"})
READS_SUBDIR = "reads"


class _Reads:
    """Paths opened for reading under one project root while :func:`watch` is on."""

    def __init__(self) -> None:
        self.root: str | None = None
        self.paths: set[str] = set()
        self.hooked = False

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or self.root is None:
            return
        try:
            path, mode, flags = args
            if not isinstance(path, (str, bytes, os.PathLike)):
                return  # a file descriptor
            if isinstance(mode, str):
                if any(c in mode for c in "wax+"):
                    return
            elif isinstance(flags, int) and flags & os.O_ACCMODE != os.O_RDONLY:
                return
            self.paths.add(os.path.abspath(os.fsdecode(path)))
        except Exception:  # an audit hook must never break the code it watches
            return


_reads = _Reads()


def watch(root: str | os.PathLike[str]) -> None:
    """From now on, record the files under ``root`` that this process opens for reading
    (until :func:`watched` takes them). An audit hook cannot be removed: it is added once and
    does nothing while no root is watched."""
    if not _reads.hooked:
        sys.addaudithook(_reads.hook)
        _reads.hooked = True
    real = os.path.realpath(root)
    if _reads.root != real:
        _reads.paths = set()
    _reads.root = real


def watched(root: str | os.PathLike[str], exclude: Iterable[str | os.PathLike[str]] = ()) -> list[str]:
    """The files under ``root`` read since :func:`watch`, relative to it, sorted."""
    real_root = os.path.realpath(root)
    if _reads.root != real_root:
        return []
    skip_dirs = [os.path.realpath(d) + os.sep for d in exclude]
    found = set()
    for path in list(_reads.paths):
        real = os.path.realpath(path)
        if not real.startswith(real_root + os.sep) or any(real.startswith(d) for d in skip_dirs):
            continue
        rel = os.path.relpath(real, real_root)
        parts = rel.split(os.sep)
        if "__pycache__" in parts or ".git" in parts or parts[-1] in _SKIPPED_NAMES:
            continue
        if any(p.endswith((".dist-info", ".egg-info")) or p == "site-packages" for p in parts):
            continue  # installed packages' metadata (entry points read by importlib.metadata)
        if rel.endswith(_SKIPPED_SUFFIXES) or not os.path.isfile(real):
            continue
        found.add(rel)
    return sorted(found)


def project_identity(root: str | os.PathLike[str]) -> str:
    return os.path.realpath(root)


def _reads_path(cache_root: Path, project_root: str) -> Path:
    return cache_root / READS_SUBDIR / f"{_sha('reads', project_identity(project_root))[:32]}.json"


def recorded_reads(cache_root: Path, project_root: str) -> list[str]:
    """The files (relative to the root) this project's code was seen reading; [] when none or damaged."""
    try:
        payload = unseal(_reads_path(cache_root, project_root).read_bytes())
    except OSError:
        return []
    if payload is None or payload.get("root") != project_identity(project_root):
        return []
    files = payload.get("files")
    return [str(f) for f in files] if isinstance(files, list) else []


def read_inputs(cache_root: Path, project_root: str) -> dict[str, bytes]:
    """``read:<path>`` -> content (or a marker for a file gone) of every recorded read."""
    inputs = {}
    for rel in recorded_reads(cache_root, project_root):
        try:
            inputs[f"read:{rel}"] = Path(project_root, rel).read_bytes()
        except OSError:
            inputs[f"read:{rel}"] = b"\0missing"
    return inputs


@dataclass(frozen=True)
class Plan:
    """What the cache knows before a run."""

    keys: dict[str, str] = field(default_factory=dict)  # revision -> key
    proven: tuple[str, ...] = ()  # base to head; each with all its ancestors proven
    resume: str | None = None  # the last proven revision the stairway can start from
    start: int = 0  # index (base-to-head order) of the first revision left to prove
    enabled: bool = True
    # early_plan only: the search roots and each file's code digest (real path -> digest)
    roots: tuple[str, ...] = ()
    digests: dict[str, str] = field(default_factory=dict, compare=False)
    # the project whose reads are watched, and how its keys are computed again once they grew
    project_root: str | None = field(default=None, compare=False)
    rekey: Any = field(default=None, compare=False, repr=False)


class ProofCache:
    """The proofs under one directory (``cache_dir()/proofs``)."""

    def __init__(self, root: Path | None = None, *, enabled: bool = True) -> None:
        if root is None:
            root = proofs_dir()
        self.root = Path(root)
        self.enabled = enabled and speed.enabled("proof-cache")
        self.discarded: list[str] = []  # damaged entries found (and removed) during this run

    # locking ---------------------------------------------------------------------------

    def _locked(self, exclusive: bool) -> contextlib.AbstractContextManager[None]:
        (self.root / "entries").mkdir(parents=True, exist_ok=True, mode=0o700)
        return file_lock(self.root / "lock", exclusive)

    def _write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    # proofs ----------------------------------------------------------------------------

    def _entry(self, key: str) -> Path:
        return self.root / "entries" / f"{key}.json"

    def _read_entry(self, key: str, entries: str | None = None) -> dict[str, Any] | bool | None:
        """The entry's payload; False when there is none; None when it is damaged."""
        path = os.path.join(entries or str(self.root / "entries"), key + ".json")
        try:
            with open(path, "rb") as fh:
                text = fh.read()
        except FileNotFoundError:
            return False
        except OSError:
            return None
        payload = unseal(text)
        if payload is None or payload.get("key") != key:
            return None
        return payload

    def proven_keys(self, keys: Iterable[str]) -> set[str]:
        """Keys with a valid proof; damaged entries are removed (and proven again)."""
        if not self.enabled:
            return set()
        found, damaged = set(), []
        entries = str(self.root / "entries")
        with self._locked(exclusive=False):
            for key in keys:
                payload = self._read_entry(key, entries)
                if payload is None:
                    damaged.append(key)
                elif payload:
                    found.add(key)
        if damaged:
            # re-check under the exclusive lock: another guard may have just rewritten it
            with self._locked(exclusive=True):
                for key in damaged:
                    payload = self._read_entry(key, entries)
                    if payload is None:
                        with contextlib.suppress(OSError):
                            self._entry(key).unlink()
                        self.discarded.append(f"{key}.json")
                    elif payload:
                        found.add(key)
        return found

    def plan(
        self,
        revisions: Sequence[RevisionInput],
        context: str | Any,
        project_root: str | None = None,
    ) -> Plan:
        """``context``: the context key, or a function of this cache's root giving it (so a
        record can compute the keys again once the project's reads grew)."""
        make_context = context if callable(context) else (lambda _root: context)

        def rekey() -> dict[str, str]:
            return chain_keys(make_context(self.root), revisions)

        keys = rekey()
        if not self.enabled:
            return Plan(keys=keys, enabled=False)
        if project_root is not None:
            watch(project_root)
        have = self.proven_keys(keys.values())
        proven = proven_closure(revisions, [r for r, k in keys.items() if k in have])
        resume, start = None, 0
        for revision in reversed(proven):
            index = resume_index(revisions, revision)
            if index is not None:
                resume, start = revision, index
                break
        return Plan(
            keys=keys,
            proven=tuple(proven),
            resume=resume,
            start=start,
            project_root=project_root,
            rekey=rekey if project_root is not None else None,
        )

    def record(self, plan: Plan, revisions: Iterable[str]) -> None:
        """Remember that these revisions' stairways passed (under their plan's keys).

        Files the project's code read in this run that its keys do not cover yet are added
        to the project's reads first, and ``plan.keys`` are computed again (in place: what
        the run saves after this uses the new keys), so the proofs are under keys that hold
        every input."""
        if not plan.enabled:
            return
        revisions = list(revisions)
        if plan.project_root is not None:
            self._add_reads(plan)
        with self._locked(exclusive=True):
            for revision in revisions:
                key = plan.keys[revision]
                payload = {"format": FORMAT, "key": key, "revision": revision}
                self._write(self._entry(key), seal(payload).encode())

    def _add_reads(self, plan: Plan) -> None:
        assert plan.project_root is not None
        seen = watched(plan.project_root, exclude=[self.root])
        with self._locked(exclusive=True):
            known = recorded_reads(self.root, plan.project_root)
            files = sorted(set(known) | set(seen))
            if files != known:
                path = _reads_path(self.root, plan.project_root)
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                payload = {"format": FORMAT, "kind": "reads", "root": project_identity(plan.project_root)}
                self._write(path, seal({**payload, "files": files}).encode())
        if plan.rekey is not None:
            plan.keys.update(plan.rekey())


# --- the project as the cache sees it ---------------------------------------------------------


def _parents(script: Any) -> tuple[str, ...]:
    down = script.down_revision
    if down is None:
        parents: tuple[str, ...] = ()
    elif isinstance(down, str):
        parents = (down,)
    else:
        parents = tuple(down)
    depends = script.dependencies
    if depends:
        parents += (depends,) if isinstance(depends, str) else tuple(depends)
    return parents


def project_inputs(project: Any, known: Plan | None = None) -> tuple[list[RevisionInput], dict[str, bytes]]:
    """(revisions, context files) of a :class:`schema_warden.project.loader.Project`. ``known``: a plan of
    :func:`early_plan` in this run, whose code digests serve when its search roots are these."""
    roots = [str(r) for r in _search_roots(project)]
    digests = known.digests if known is not None and known.roots == tuple(roots) else {}
    memo: dict[str, bytes] = {}

    def digest(path: str) -> str:
        return digests.get(real_path(path)) or code_digest(path, roots, memo)

    revisions = [RevisionInput(s.revision, _parents(s), digest(s.path)) for s in project.revisions()]
    files = {"alembic.ini": Path(project.ini).read_bytes()}
    if Path(project.env_py).is_file():
        files["env.py"] = Path(project.env_py).read_bytes()
    return revisions, files


def _search_roots(project: Any) -> list[Path]:
    roots = [Path(project.root)]
    prepend = project.config.get_main_option("prepend_sys_path") or ""
    for part in re.split(r"[\s,:]+", prepend):
        if part:
            path = Path(part)
            roots.append(path if path.is_absolute() else Path(project.root) / path)
    roots.append(Path(project.script.dir))
    unique: list[Path] = []
    for root in roots:
        resolved = root.resolve()
        if resolved not in unique:
            unique.append(resolved)
    return unique


def plan_project(
    project: Any,
    postgres_major: int,
    *,
    enabled: bool = True,
    options: Mapping[str, object] | None = None,
    known: Plan | None = None,
) -> tuple[ProofCache, Plan]:
    """The cache and its plan for ``project`` on a server of ``postgres_major``.

    ``options``: the command's options that change what a proof means (e.g. the data check).
    ``known``: the early plan of this run (its code digests are reused, not its keys).
    """
    cache = ProofCache(enabled=enabled)
    revisions, files = project_inputs(project, known)
    root = str(project.root)

    def context(cache_root: Path) -> str:
        return _context(files, project.settings, postgres_major, options, root, cache_root)

    return cache, cache.plan(revisions, context, project_root=root)


def _context(
    files: Mapping[str, bytes],
    settings: Any,
    postgres_major: int,
    options: Mapping[str, object] | None,
    project_root: str | None = None,
    cache_root: Path | None = None,
) -> str:
    if project_root is not None:
        files = {**files, **read_inputs(cache_root or proofs_dir(), project_root)}
    return context_key(
        files,
        postgres_major=postgres_major,
        tool=guard_fingerprint(),
        settings={
            "schemas": list(settings.schemas),
            "exclude_tables": sorted(settings.exclude_tables),
            "irreversible": sorted(settings.irreversible),
            # a revision at or below it is proven without its downgrade
            "minimum_downgrade_revision": getattr(settings, "minimum_downgrade_revision", None),
            "options": dict(options or {}),
            "project": project_identity(project_root) if project_root is not None else None,
        },
    )


def linear_order(files: Sequence[Any]) -> list[Any] | None:
    """Statically read revision files (schema_warden.commands.heads.RevisionFile) from base to head,
    or None unless they form one line (one root, each revision at most one parent and child)."""
    by_id = {f.revision: f for f in files}
    if len(by_id) != len(files) or any(f.error or f.revision is None for f in files):
        return None
    child: dict[str | None, Any] = {}
    for f in files:
        parents = f.down_revisions + f.depends_on
        if len(parents) > 1 or (parents and parents[0] not in by_id):
            return None
        parent = parents[0] if parents else None
        if parent in child:
            return None
        child[parent] = f
    order, current = [], child.get(None)
    while current is not None:
        order.append(current)
        current = child.get(current.revision)
    return order if len(order) == len(files) else None


def early_plan(
    settings: Any,
    files: Sequence[Any],
    postgres_major: int,
    *,
    options: Mapping[str, object] | None = None,
) -> Plan | None:
    """The plan :func:`plan_project` will make, from the statically read revision files,
    before Alembic is imported (a guess to start the server early: the caller compares the
    keys with the real plan's). None for histories that are not one line."""
    from schema_warden.project.history import version_dirs

    ordered = linear_order(files)
    if ordered is None:
        return None
    ini = Path(settings.alembic_config)
    script_dir, _dirs, prepend, _recursive = version_dirs(ini)
    roots: list[str] = []
    for root in (ini.parent, *prepend, script_dir):
        resolved = str(Path(root).resolve())
        if resolved not in roots:
            roots.append(resolved)
    memo: dict[str, bytes] = {}
    real = {f.path: real_path(f.path) for f in ordered}
    digests = {real[f.path]: code_digest(f.path, roots, memo) for f in ordered}
    revisions = [
        RevisionInput(f.revision, f.down_revisions + f.depends_on, digests[real[f.path]]) for f in ordered
    ]
    context_files = {"alembic.ini": ini.read_bytes()}
    env_py = Path(script_dir) / "env.py"
    if env_py.is_file():
        context_files["env.py"] = env_py.read_bytes()
    root = str(ini.parent)

    def context(cache_root: Path) -> str:
        return _context(context_files, settings, postgres_major, options, root, cache_root)

    plan = ProofCache().plan(revisions, context, project_root=root)
    return dataclasses.replace(plan, roots=tuple(roots), digests=digests)


# --- cached data directories: warm runs start at a proven revision instead of replaying -----

CLUSTERS_SUBDIR = "clusters"
CLUSTER_FILE = "entry.json"
CLUSTER_ARCHIVE = (
    "data.tar"  # schema_warden.server.postgres.archive_data_dir: one file writes 10x faster than 1,300
)
MAX_CLUSTERS = 2  # e.g. the last head and the one before it (a new revision on top)
STALE_STAGING_S = 600.0


def snapshot_digest(snapshot: Any) -> str:
    """SHA-256 of a :class:`schema_warden.schema.snapshot.Snapshot` (its JSON form)."""
    return hashlib.sha256(snapshot.to_json().encode()).hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class _Digest:
    """A file's SHA-256 computed in a thread (hashlib releases the GIL): a saved archive is
    checked while the server starts from it, not before."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digest: str | None = None
        self._thread = threading.Thread(target=self._run, name="schema-warden-digest", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            self.digest = file_digest(self.path)

    def join(self) -> str | None:
        self._thread.join()
        return self.digest


@dataclass(frozen=True)
class ClusterEntry:
    """A stopped data directory whose database ``database`` is exactly what a plain upgrade
    from an empty database to ``revision`` gives (no generated rows of the data check)."""

    path: Path  # the entry's directory: data.tar and entry.json
    revision: str
    key: str  # the proof key of ``revision``
    database: str
    version_table: str  # Alembic's version table, "schema.table" or "table"
    snapshot: str  # snapshot_digest of ``database``
    files: str  # file_digest of data.tar

    @property
    def archive(self) -> Path:
        return self.path / CLUSTER_ARCHIVE

    def payload(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "kind": "cluster",
            "revision": self.revision,
            "key": self.key,
            "database": self.database,
            "version_table": self.version_table,
            "snapshot": self.snapshot,
            "files": self.files,
        }


class Reading:
    """An entry being read: its archive's digest is computed meanwhile."""

    def __init__(self, entry: ClusterEntry) -> None:
        self.entry = entry
        self.check = _Digest(entry.archive)
        self.intact = False


class ClusterCache:
    """Saved data directories under ``proofs_dir()/clusters``, one per (proof key, Postgres build).

    An entry appears by rename of a finished directory; writers hold an exclusive ``fcntl``
    lock to rename and evict (at most :data:`MAX_CLUSTERS`, least recently used first),
    readers a shared one while they check and copy an entry, so none sees half of one.
    """

    def __init__(self, build: str, root: Path | None = None, *, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else proofs_dir() / CLUSTERS_SUBDIR
        self.build = build
        self.enabled = enabled and speed.enabled("cluster-archive")
        self.discarded: list[str] = []

    def _name(self, key: str) -> str:
        return _sha("cluster", self.build, key)[:32]

    def path_for(self, key: str) -> Path:
        return self.root / self._name(key)

    def _locked(self, exclusive: bool) -> contextlib.AbstractContextManager[None]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return file_lock(self.root / "lock", exclusive)

    def _read(self, path: Path, key: str, revision: str) -> ClusterEntry | None:
        try:
            payload = unseal((path / CLUSTER_FILE).read_bytes())
        except OSError:
            payload = None
        if payload is None or payload.get("kind") != "cluster":
            return None
        try:
            entry = ClusterEntry(
                path,
                str(payload["revision"]),
                str(payload["key"]),
                str(payload["database"]),
                str(payload["version_table"]),
                str(payload["snapshot"]),
                str(payload["files"]),
            )
        except KeyError:
            return None
        return entry if (entry.key, entry.revision) == (key, revision) else None

    def has(self, key: str) -> bool:
        return self.enabled and (self.path_for(key) / CLUSTER_FILE).is_file()

    def find(self, plan: Plan) -> ClusterEntry | None:
        """The entry nearest to ``plan.resume`` among the proven revisions up to it."""
        if not self.enabled or not plan.enabled or plan.resume is None or plan.resume not in plan.proven:
            return None
        chain = plan.proven[: plan.proven.index(plan.resume) + 1]
        if not self.root.is_dir():
            return None
        damaged = []
        with self._locked(exclusive=False):
            for revision in reversed(chain):
                path = self.path_for(plan.keys[revision])
                if not path.is_dir():
                    continue
                entry = self._read(path, plan.keys[revision], revision)
                if entry is not None:
                    break
                damaged.append(path)
            else:
                entry = None
        for path in damaged:
            self._remove(path)
        return entry

    @contextlib.contextmanager
    def reading(self, entry: ClusterEntry) -> Iterator[Reading]:
        """Hold ``entry`` against eviction while the block starts a server from
        ``entry.archive``; its digest is checked meanwhile: ``Reading.intact`` after the block
        (when False, stop that server and discard the entry)."""
        with self._locked(exclusive=False):
            reading = Reading(entry)
            try:
                yield reading
            finally:
                reading.intact = reading.check.join() == entry.files
            if reading.intact:
                with contextlib.suppress(OSError):
                    os.utime(entry.path / CLUSTER_FILE)  # recently used: evicted last

    def discard(self, entry: ClusterEntry) -> None:
        """Remove a damaged entry (it is saved again by the next run that passes)."""
        self._remove(entry.path)

    def _remove(self, path: Path) -> None:
        trash = self.root / f".trash-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with self._locked(exclusive=True):
            try:
                os.rename(path, trash)
            except OSError:
                return
        self.discarded.append(path.name)
        shutil.rmtree(trash, ignore_errors=True)

    def save(
        self,
        server: Any,
        *,
        revision: str,
        key: str,
        database: str,
        version_table: str,
        snapshot: str,
    ) -> ClusterEntry | None:
        """Stop ``server`` cleanly and keep its data directory as the entry for ``key``.

        Only for a server whose database ``database`` is pristine at ``revision`` and whose
        other databases are gone. None when an entry for ``key`` exists already.
        """
        final = self.path_for(key)
        if not self.enabled or final.exists():
            return None
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = self.root / f".new-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        evicted: list[Path] = []
        try:
            staging.mkdir(mode=0o700)
            files = server.save_data_dir(staging / CLUSTER_ARCHIVE)
            entry = ClusterEntry(final, revision, key, database, version_table, snapshot, files)
            (staging / CLUSTER_FILE).write_text(seal(entry.payload()))
            with self._locked(exclusive=True):
                if final.exists():
                    return None
                os.replace(staging, final)
                evicted = self._evict(keep=final)
            return entry
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            for path in evicted:
                shutil.rmtree(path, ignore_errors=True)

    def _evict(self, keep: Path) -> list[Path]:
        """Under the exclusive lock: move all but the MAX_CLUSTERS most recently used entries
        (and staging left by a killed guard) out of the way; returns what to delete."""
        entries, trash = [], []
        now = time.time()
        for path in self.root.iterdir():
            with contextlib.suppress(OSError):
                if path.name.startswith((".new-", ".trash-")):
                    if now - path.stat().st_mtime > STALE_STAGING_S:
                        trash.append(path)
                elif path.is_dir():
                    used = (path / CLUSTER_FILE).stat().st_mtime if (path / CLUSTER_FILE).exists() else 0.0
                    entries.append((path == keep, used, path))
        entries.sort(reverse=True)
        moved = []
        for _keep, _used, path in entries[MAX_CLUSTERS:]:
            target = self.root / f".trash-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            with contextlib.suppress(OSError):
                os.rename(path, target)
                moved.append(target)
        return moved + trash
