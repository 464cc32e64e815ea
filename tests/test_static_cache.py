"""Static facts of revision files remembered by content: same answers, no parse, never stale."""

from __future__ import annotations

from pathlib import Path

import pytest
from schema_warden.cache import static as static_cache
from schema_warden.commands.heads import parse_revision_file
from schema_warden.project import history as project

REVISION = '''"""add humidity

Revision ID: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = ("0001",)
branch_labels = ["readings"]
depends_on = None


def upgrade() -> None:
    op.add_column("readings", sa.Column("humidity", sa.Float))


def downgrade() -> None:
    op.drop_column("readings", "humidity")
'''


@pytest.fixture
def revision_file(tmp_path: Path) -> Path:
    path = tmp_path / "versions" / "0002_add_humidity.py"
    path.parent.mkdir()
    path.write_text(REVISION)
    return path


def _no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(source: str, filename: str) -> object:
        raise AssertionError(f"{filename} parsed although its facts were remembered")

    monkeypatch.setattr(project, "parse_source", refuse)


def test_a_second_run_gives_the_same_facts_without_parsing(
    revision_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with static_cache.active():
        heads = parse_revision_file(revision_file, tmp_path)
        lazy = project.static_revision(revision_file)
    assert (tmp_path / "proofs" / static_cache.FILE).is_file()  # conftest: SCHEMA_WARDEN_PROOF_CACHE

    _no_parsing(monkeypatch)
    with static_cache.active():
        assert parse_revision_file(revision_file, tmp_path) == heads
        again = project.static_revision(revision_file)
    assert again == lazy
    assert lazy is not None and lazy.down_revision == ("0001",) and lazy.branch_labels == ["readings"]
    assert lazy.docstring is not None and lazy.docstring.startswith("add humidity")
    assert (
        heads.revision == "0002"
        and heads.down_revisions == ("0001",)
        and heads.imports == ("sqlalchemy", "alembic")
    )


def test_a_changed_file_is_read_again(
    revision_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with static_cache.active():
        parse_revision_file(revision_file, tmp_path)
        project.static_revision(revision_file)
    revision_file.write_text(REVISION.replace('down_revision = ("0001",)', 'down_revision = "0000"'))
    with static_cache.active():
        assert parse_revision_file(revision_file, tmp_path).down_revisions == ("0000",)
        changed = project.static_revision(revision_file)
    assert changed is not None and changed.down_revision == "0000"


def test_a_file_that_is_not_static_stays_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "0003_dynamic.py"
    path.write_text('import os\nrevision = os.environ.get("REV", "0003")\ndown_revision = "0002"\n')
    with static_cache.active():
        assert project.static_revision(path) is None
        assert parse_revision_file(path, tmp_path).error is not None  # errors are never remembered
    _no_parsing(monkeypatch)
    with static_cache.active():
        assert project.static_revision(path) is None


def test_a_damaged_cache_is_ignored_and_rewritten(revision_file: Path, tmp_path: Path) -> None:
    with static_cache.active():
        first = parse_revision_file(revision_file, tmp_path)
    cache_file = tmp_path / "proofs" / static_cache.FILE
    cache_file.write_text(cache_file.read_text().replace('"0002"', '"9999"'))  # checksum no longer matches
    with static_cache.active() as cache:
        assert cache is not None and cache.entries == {}
        assert parse_revision_file(revision_file, tmp_path) == first
    with static_cache.active() as cache:
        assert cache is not None and len(cache.entries) == 1


def test_nothing_is_remembered_without_an_active_cache(revision_file: Path, tmp_path: Path) -> None:
    parse_revision_file(revision_file, tmp_path)
    project.static_revision(revision_file)
    with static_cache.active(enabled=False) as cache:
        assert cache is None
        parse_revision_file(revision_file, tmp_path)
    assert not (tmp_path / "proofs" / static_cache.FILE).exists()


def test_the_fingerprint_covers_the_readers_source() -> None:
    """Every file the fingerprint names exists: a reader moved elsewhere must not leave the
    static facts keyed by nothing (stale facts would then survive a change of the reader)."""
    package = Path(static_cache.__file__).parent.parent
    assert static_cache._READERS and all((package / name).is_file() for name in static_cache._READERS)
