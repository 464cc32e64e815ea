"""The scale benchmark's pieces, run for real on small histories: the wide generator, the
standing failure at revision N/2 (``python -m bench --scale``, case g) and the speed
mechanisms' switch (``python -m bench --mechanisms``): with every mechanism off, a check
gives the same verdict and the same lines as with everything on.

Every fixture is a generated linear team history (bench/generate.py): tables created,
columns added, dropped and widened, indexes, foreign keys and data migrations, one revision
after another, each with its downgrade and the models matching head.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # bench/ is not installed: it lives beside the tests
    sys.path.insert(0, str(REPO_ROOT))

from bench import generate  # noqa: E402

ALL_OFF = "two-processes,static-cache,models-cache,initdb-cache,proof-cache,cluster-archive"


def _check(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``schema-warden check`` in ``project`` as a child process, ``env`` added to ours."""
    environ = {k: v for k, v in os.environ.items() if k not in ("SCHEMA_WARDEN_SPEED_OFF", "DATABASE_URL")}
    return subprocess.run(
        [sys.executable, "-m", "schema_warden", "check", "--config", str(project / "alembic.ini")],
        cwd=project,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _lines(output: str) -> list[str]:
    """The report's lines without the run's duration (``... in 1.8 s``)."""
    return [re.sub(r" in \d+(\.\d+)? s$", "", line) for line in output.splitlines()]


def test_the_wide_history_gains_a_table_every_five_revisions() -> None:
    """A generated linear team history whose schema grows with it, as a product's does: one
    new table every 5 revisions (the first three revisions each create one)."""
    counts = {n: len(generate.build(n, wide=True).tables) for n in (10, 50, 100, 300)}
    for n, tables in counts.items():
        assert n // 5 <= tables <= n // 5 + 3, (n, tables)
    assert counts[10] < counts[50] < counts[100] < counts[300]
    plain = generate.build(300)  # the default history keeps its own, smaller schema
    assert len(plain.tables) < counts[300]


def test_break_and_restore_a_revision(tmp_path: Path) -> None:
    """A generated linear team history of 10 revisions in which a developer's downgrade of
    revision 5 forgets to undo a column; restoring gives the generated file back."""
    project = tmp_path / "wide"
    generate.generate(project, 10, wide=True)
    good = {p.name: p.read_text() for p in (project / "migrations" / "versions").glob("*.py")}
    path = generate.break_revision(project, 10, 5, wide=True)
    assert path.name.startswith(generate.revision_id(5))
    assert "leftover_5" in path.read_text() and "leftover_5" not in good[path.name]
    first = generate.break_revision(project, 10, 1, wide=True)  # revision 1: an empty downgrade
    assert "def downgrade() -> None:\n    pass" in first.read_text()
    generate.restore_revision(project, 10, 5, wide=True)
    generate.restore_revision(project, 10, 1, wide=True)
    assert {p.name: p.read_text() for p in (project / "migrations" / "versions").glob("*.py")} == good


def test_the_broken_revision_at_half_fails_the_check_naming_it(tmp_path: Path) -> None:
    """A generated linear team history of 10 revisions (wide: a table every 5) whose
    revision 5 has a downgrade that leaves a column behind: the check exits 1 and names it."""
    project = tmp_path / "wide"
    generate.generate(project, 10, wide=True)
    generate.break_revision(project, 10, 5, wide=True)
    result = _check(project, SCHEMA_WARDEN_PROOF_CACHE=str(tmp_path / "proofs"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAIL stairway: revision {generate.revision_id(5)}" in result.stdout
    assert "leftover_5" in result.stdout
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL stairway")]
    assert len(failed) == 1, failed  # only revision 5: the others pass


def test_every_speed_mechanism_off_gives_the_same_report(tmp_path: Path) -> None:
    """A generated linear team history of 12 revisions, checked cold with every mechanism on
    (two processes forced for the stairway) and with all of them off: the same exit code and
    the same lines, but for the duration."""
    project = tmp_path / "wide"
    generate.generate(project, 12, wide=True)
    forced = {"SCHEMA_WARDEN_JOBS": "2", "SCHEMA_WARDEN_PARALLEL_MIN": "4"}
    on = _check(project, SCHEMA_WARDEN_PROOF_CACHE=str(tmp_path / "proofs-on"), **forced)
    off = _check(
        project,
        SCHEMA_WARDEN_PROOF_CACHE=str(tmp_path / "proofs-off"),
        SCHEMA_WARDEN_SPEED_OFF=ALL_OFF,
        **forced,
    )
    assert on.returncode == 0, on.stdout + on.stderr
    assert off.returncode == on.returncode, off.stdout + off.stderr
    assert _lines(off.stdout) == _lines(on.stdout)
    assert (tmp_path / "proofs-on").is_dir()  # on: proofs and the models' side were kept
    assert not (tmp_path / "proofs-off").exists()  # off: nothing was written
