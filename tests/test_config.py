"""database/config.py: DATABASE_URL from the environment or .env, normalized, masked, checked."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from database import config, manage
from database.config import ConfigError, get_settings, mask_url, normalize_url
from database.errors import scrub

NEON = "ep-cool-darkness-123456.eu-central-1.aws.neon.tech"


@pytest.fixture
def clean_env() -> Iterator[None]:
    """load_dotenv writes os.environ: put it back exactly as it was."""
    saved = dict(os.environ)
    os.environ.pop("DATABASE_URL", None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def env_files(tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A repository root and its database/ directory; config reads their .env files only."""
    root, database = tmp_path / "repo", tmp_path / "repo" / "database"
    database.mkdir(parents=True)
    files = (root / ".env", database / ".env")
    monkeypatch.setattr(config, "ENV_FILES", files)
    return files


def test_root_env_file_is_read(env_files: tuple[Path, Path]) -> None:
    root_env, _ = env_files
    root_env.write_text(f"DATABASE_URL=postgresql://app:pw@{NEON}/root_db?sslmode=require\n")
    assert get_settings().url.endswith("/root_db?sslmode=require")


def test_database_env_file_is_read_when_the_root_has_none(env_files: tuple[Path, Path]) -> None:
    _, database_env = env_files
    database_env.write_text(f"DATABASE_URL=postgresql://app:pw@{NEON}/inner_db\n")
    assert get_settings().url.endswith("/inner_db")


def test_root_env_file_wins_over_database_env_file(env_files: tuple[Path, Path]) -> None:
    root_env, database_env = env_files
    root_env.write_text(f"DATABASE_URL=postgresql://app:pw@{NEON}/root_db\n")
    database_env.write_text(f"DATABASE_URL=postgresql://app:pw@{NEON}/inner_db\nOTHER_SETTING=kept\n")
    assert get_settings().url.endswith("/root_db")
    assert os.environ["OTHER_SETTING"] == "kept"  # the second file still fills what the first lacks


def test_environment_wins_over_env_files(env_files: tuple[Path, Path]) -> None:
    root_env, database_env = env_files
    root_env.write_text(f"DATABASE_URL=postgresql://app:pw@{NEON}/root_db\n")
    database_env.write_text(f"DATABASE_URL=postgresql://app:pw@{NEON}/inner_db\n")
    os.environ["DATABASE_URL"] = f"postgresql://app:pw@{NEON}/from_env"
    assert get_settings().url.endswith("/from_env")


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "POSTGRESQL", "postgresql+psycopg2"])
def test_urls_are_normalized_to_psycopg2_with_query_kept(scheme: str) -> None:
    url = f"{scheme}://app:pw@{NEON}/neondb?sslmode=require&channel_binding=require"
    assert normalize_url(url) == (
        f"postgresql+psycopg2://app:pw@{NEON}/neondb?sslmode=require&channel_binding=require"
    )


def test_normalized_url_selects_psycopg2_in_sqlalchemy() -> None:
    from sqlalchemy import create_engine

    engine = create_engine(normalize_url(f"postgresql://app:pw@{NEON}/neondb?sslmode=require"))
    assert engine.dialect.driver == "psycopg2"
    assert engine.url.query == {"sslmode": "require"}


def test_psycopg3_chosen_on_purpose_is_kept() -> None:
    assert normalize_url(f"postgresql+psycopg://app:pw@{NEON}/db").startswith("postgresql+psycopg://")


def test_libpq_url_drops_the_driver() -> None:
    settings = config.Settings(url=f"postgresql+psycopg2://app:pw@{NEON}/db", masked="", pooled=False)
    assert settings.libpq_url == f"postgresql://app:pw@{NEON}/db"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            f"postgresql://app:s3cret@{NEON}/db?sslmode=require",
            f"postgresql://app:***@{NEON}/db?sslmode=require",
        ),
        ("postgres://app@localhost:5433/db", "postgres://app@localhost:5433/db"),
        ("postgresql://localhost/db", "postgresql://localhost/db"),
        ("postgresql://app:p%40ss@host/db", "postgresql://app:***@host/db"),
        ("postgresql://host/db?user=app&password=s3cret", "postgresql://host/db?user=app&password=***"),
        # the password field, not the password's text: "p" also occurs in the scheme and host
        ("postgresql://u:p@ep-cool-pooler.neon.tech/db", "postgresql://u:***@ep-cool-pooler.neon.tech/db"),
        ("postgresql://app:app@app.example.com/app", "postgresql://app:***@app.example.com/app"),
        ("postgresql://app:p%40ss%3Aw%2Frd@host/db", "postgresql://app:***@host/db"),
        ("postgresql://app:p@ss@host/db", "postgresql://app:***@host/db"),
        (
            "postgresql://host/db?options=-c%20search_path%3Dp&PassWord=p%26q",
            "postgresql://host/db?options=-c%20search_path%3Dp&PassWord=***",
        ),
    ],
)
def test_mask_hides_the_password_only(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_settings_show_the_url_as_written_with_password_masked(clean_env: None) -> None:
    os.environ["DATABASE_URL"] = f"postgres://app:s3cret@{NEON}/neondb?sslmode=require"
    settings = get_settings(env_files=())
    assert settings.masked == f"postgres://app:***@{NEON}/neondb?sslmode=require"
    assert "s3cret" in settings.url


def test_neon_pooled_host_warns_with_the_direct_host(
    clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ["DATABASE_URL"] = (
        "postgresql://app:s3cret@ep-cool-darkness-123456-pooler.eu-central-1.aws.neon.tech/neondb"
    )
    settings = get_settings(env_files=())
    err = capsys.readouterr().err
    assert settings.pooled
    assert "warning:" in err and "pooled" in err
    assert "ep-cool-darkness-123456.eu-central-1.aws.neon.tech" in err  # the host to use instead
    assert "s3cret" not in err
    assert len(err.strip().splitlines()) == 1


def test_neon_direct_host_does_not_warn(clean_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    os.environ["DATABASE_URL"] = f"postgresql://app:pw@{NEON}/neondb"
    assert not get_settings(env_files=()).pooled
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "DATABASE_URL is not set"),
        ("   ", "DATABASE_URL is not set"),
        ("app:s3cret@host/db", "is not a URL"),
        ("mysql://app:s3cret@host/db", "scheme 'mysql'"),
        ("postgresql://app:s3cret@host", "names no database"),
        ("postgresql://app:s3cret@/db", "no host"),
        ("postgresql://app:s3cret@host:port/db", "invalid host or port"),
    ],
)
def test_missing_or_malformed_url_is_one_line_exit_2_through_manage(
    url: str, says: str, env_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    if url:
        os.environ["DATABASE_URL"] = url
    with pytest.raises(ConfigError) as info:
        get_settings()
    assert says in str(info.value)
    capsys.readouterr()

    assert manage.main(["db-current"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and says in err
    assert "s3cret" not in err
    assert "Traceback" not in err


def test_excluded_tables_default_and_setting(tmp_path: Path) -> None:
    assert config.excluded_tables(tmp_path) == frozenset({"_prisma_migrations"})
    (tmp_path / "pyproject.toml").write_text(
        '[tool.schema-warden]\nexclude-tables = ["legacy", "spatial_ref_sys"]\n'
    )
    assert config.excluded_tables(tmp_path) == frozenset({"legacy", "spatial_ref_sys"})
    assert "_prisma_migrations" in config.excluded_tables()  # this repository's setting


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p@ep-cool-pooler.neon.tech", "postgresql://u:***@ep-cool-pooler.neon.tech"),
        ("postgresql://app:app@app.example.com", "postgresql://app:***@app.example.com"),
        ("postgresql://app:s%40cret@db.example.com", "postgresql://app:***@db.example.com"),
    ],
)
def test_error_lines_mask_the_password_field_not_its_text(
    url: str, shown: str, env_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """manage.py scrubs every line it prints: a short password must not eat the rest of the line."""
    os.environ["DATABASE_URL"] = url  # no database name: a one-line usage error that shows the URL
    assert manage.main(["db-current"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: DATABASE_URL names no database ({shown}): add /dbname after the host\n"


def test_scrub_masks_urls_by_field_and_free_text_by_whole_word() -> None:
    url = "postgresql://u:p@ep-cool-pooler.neon.tech/db"
    text = f"could not connect to {url}: the password p was rejected (pg_dump -p 5432)"
    assert scrub(text, url) == (
        "could not connect to postgresql://u:***@ep-cool-pooler.neon.tech/db: "
        "the password *** was rejected (pg_dump -*** 5432)"
    )
    assert scrub("x?password=s3cr%40t&sslmode=require s3cr@t", "postgresql://h/db?password=s3cr%40t") == (
        "x?password=***&sslmode=require ***"
    )
    assert scrub("no password here", "postgresql://u@h/db") == "no password here"
