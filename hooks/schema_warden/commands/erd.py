"""``schema-warden erd``: entity relationship diagram (Mermaid) of the schema at head.

Upgrades the project to its head revision(s) in a throwaway PostgreSQL server, reads the
schema back from pg_catalog (schema/snapshot.py) and draws it (render/mermaid.py). The
drawing shows what the migrations build, not what the models say. Tables excluded by
``[tool.schema-warden] exclude-tables`` and Alembic's version table stay out.

    schema-warden erd                                   # Mermaid text on stdout
    schema-warden erd --format markdown -o docs/schema.md   # what GitHub renders
    schema-warden erd --tables 'sensor*' --tables devices   # part of a large schema
    schema-warden erd --max-tables 40                   # the 40 most connected tables
    schema-warden erd --update README.md                # refresh the block between the markers

``--update FILE`` replaces what stands between the lines ``<!-- schema-warden erd -->`` and
``<!-- /schema-warden erd -->`` of a Markdown file with the fenced diagram, so a README can
show the schema and stay current.

Past ``--max-tables N`` the N most connected tables are drawn (foreign-key degree among the
tables asked for, ties by name): a large schema keeps its core tables, and the note names
the ones left out, most connected first.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from schema_warden.errors import EXIT_OK, ProjectError, guarded
from schema_warden.render import mermaid
from schema_warden.schema.snapshot import Snapshot, table_matches

DEFAULT_TITLE = "Database schema"
VERSION_TABLE = "alembic_version"
BLOCK_START = "<!-- schema-warden erd -->"
BLOCK_END = "<!-- /schema-warden erd -->"


@dataclass(frozen=True)
class Schema:
    """The schema at head and where it came from."""

    snapshot: Snapshot
    heads: tuple[str, ...]
    postgres_major: int


def schema_at_head(config: str | None = None, *, pg_bin: str | None = None) -> Schema:
    """Upgrade the project at ``config`` to head in a throwaway server and snapshot the result."""
    from sqlalchemy import create_engine, pool

    from schema_warden.errors import one_line
    from schema_warden.project.loader import loaded_project
    from schema_warden.project.steps import MigrationFailed
    from schema_warden.schema.snapshot import take
    from schema_warden.server.postgres import throwaway_server

    with loaded_project(config) as project:
        settings = project.settings
        heads = tuple(sorted(project.script.get_heads()))
        version_table = _version_table(project.config)
        with throwaway_server(pg_bin) as server:
            url = server.create_database("schema_warden_erd")
            engine = create_engine(url, poolclass=pool.NullPool)
            try:
                with engine.connect() as connection:
                    try:
                        project.migrate(connection, "heads")
                    except MigrationFailed as err:
                        direction = "upgrade" if err.upgrade else "downgrade"
                        raise ProjectError(
                            f"revision {err.revision.revision}: {direction} failed, so there is no schema "
                            f"to draw: {type(err.cause).__name__}: {one_line(str(err.cause))}; "
                            "fix the migration (schema-warden check shows the details)"
                        ) from None
                    snapshot = take(
                        connection,
                        schemas=settings.schemas,
                        exclude_tables=(*sorted(settings.exclude_tables), version_table),
                    )
                    connection.rollback()
            finally:
                engine.dispose()
            return Schema(snapshot=snapshot, heads=heads, postgres_major=server.binaries.major)


def render(
    schema: Schema,
    *,
    output_format: str = "mermaid",
    tables: Sequence[str] = (),
    max_tables: int | None = mermaid.DEFAULT_MAX_TABLES,
    title: str = DEFAULT_TITLE,
) -> tuple[str, mermaid.Diagram]:
    """The diagram as Mermaid text or as a Markdown page; ProjectError when no table matches."""
    diagram = _draw(schema.snapshot, tables, max_tables)
    if tables and not diagram.tables:
        known = ", ".join(sorted(schema.snapshot.tables)) or "none"
        raise ProjectError(
            f"no table matches --tables {' '.join(tables)}: the tables at head are {known}; "
            "patterns are shell wildcards (quote them), matched against the name or schema.name"
        )
    if output_format == "mermaid":
        return diagram.mermaid, diagram
    heads = ", ".join(f"`{head}`" for head in schema.heads) or "none (no revisions)"
    intro = (
        f"The tables at Alembic head {heads}, as the migrations build them. Regenerate with "
        "`schema-warden erd --format markdown -o docs/schema.md`; do not edit by hand."
    )
    return mermaid.markdown(diagram, title=title, intro=intro), diagram


def fk_degrees(snapshot: Snapshot, keys: Sequence[str]) -> dict[str, int]:
    """How many foreign keys join each of ``keys`` to one of ``keys`` (a self-reference counts once)."""
    among = set(keys)
    degree = dict.fromkeys(keys, 0)
    for con in snapshot.constraints.values():
        if con.type != "foreign key" or con.table not in among or con.ref_table not in among:
            continue
        degree[con.table] += 1
        if con.ref_table != con.table:
            degree[con.ref_table] += 1
    return degree


def most_connected(snapshot: Snapshot, keys: Sequence[str], limit: int) -> tuple[list[str], list[str]]:
    """(kept, left out): the ``limit`` tables of ``keys`` with the most foreign keys, ties by name."""
    degree = fk_degrees(snapshot, keys)
    ranked = sorted(keys, key=lambda key: (-degree[key], key))
    return ranked[:limit], ranked[limit:]


def _draw(snapshot: Snapshot, tables: Sequence[str], max_tables: int | None) -> mermaid.Diagram:
    candidates = [
        key
        for key in sorted(snapshot.tables)
        if not table_matches(key, mermaid.ALWAYS_LEFT_OUT) and (not tables or table_matches(key, tables))
    ]
    if max_tables is None or len(candidates) <= max_tables:
        return mermaid.draw(snapshot, tables=tables, max_tables=max_tables)
    kept, left_out = most_connected(snapshot, candidates, max_tables)
    drawn = mermaid.draw(snapshot, tables=[glob.escape(key) for key in kept], max_tables=None)
    diagram = dataclasses.replace(drawn, left_out=tuple(left_out), max_tables=max_tables)
    # the note on what was left out, without the one on the text's size (measured on "")
    note = dataclasses.replace(diagram, mermaid="").note()
    header, _, body = diagram.mermaid.partition("\n")
    return dataclasses.replace(diagram, mermaid=f"{header}\n%% {note}\n{body}")


def fenced(diagram: mermaid.Diagram) -> str:
    """The diagram as a ```mermaid block, with its note (what ``--update`` puts in a file)."""
    return mermaid.markdown(diagram)


def update_block(text: str, block: str, where: str) -> str:
    """``text`` with the part between BLOCK_START and BLOCK_END lines replaced by ``block``."""
    start, end = text.find(BLOCK_START + "\n"), text.find("\n" + BLOCK_END)
    if start < 0 or end < start:
        raise ProjectError(
            f"{where}: no diagram block to update: put the lines {BLOCK_START} and {BLOCK_END} "
            "where the diagram belongs"
        )
    head = text[: start + len(BLOCK_START) + 1]
    # blank lines around the fence: Markdown ends the HTML comment's block there
    return head + "\n" + block.strip("\n") + "\n" + text[end:]


def _updated(path: Path, block: str) -> tuple[Path, str, str]:
    try:
        current = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ProjectError(f"{path}: cannot read it ({err.strerror}): pass an existing file") from None
    return path, current, update_block(current, block, str(path))


def _version_table(config: object) -> str:
    # env.py may rename Alembic's bookkeeping table; the ini option is the usual place
    get = getattr(config, "get_main_option", None)
    return (get("version_table") if get else None) or VERSION_TABLE


def _write(path: Path, text: str) -> None:
    """Write via a temp file and rename: an interrupted run leaves the old file intact."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _max_tables(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 (no limit) or more")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="schema-warden erd",
        description="Entity relationship diagram (Mermaid erDiagram) of the schema at head, "
        "built by the migrations in a throwaway PostgreSQL server.",
    )
    parser.add_argument("-c", "--config", metavar="ALEMBIC_INI", help="alembic.ini (default: ./alembic.ini)")
    parser.add_argument(
        "--format",
        choices=("mermaid", "markdown"),
        default="mermaid",
        help="mermaid: erDiagram text; markdown: a page with a ```mermaid block (GitHub renders it)",
    )
    parser.add_argument(
        "--tables",
        action="append",
        default=[],
        metavar="PATTERN",
        help="draw only tables matching this shell wildcard (name or schema.name); repeatable",
    )
    parser.add_argument(
        "--max-tables",
        type=_max_tables,
        default=mermaid.DEFAULT_MAX_TABLES,
        metavar="N",
        help="draw at most N tables, the most connected (foreign keys) first, ties by name; a note "
        f"lists the rest (default {mermaid.DEFAULT_MAX_TABLES}, 0 = no limit)",
    )
    parser.add_argument("--title", default=DEFAULT_TITLE, help="heading of the markdown page")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    parser.add_argument(
        "--update",
        action="append",
        default=[],
        metavar="FILE",
        help=f"replace the diagram between {BLOCK_START} and {BLOCK_END} in this Markdown file; repeatable",
    )
    parser.add_argument("--pg-bin", metavar="DIR", help="PostgreSQL bin directory (initdb, postgres)")
    return parser


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    schema = schema_at_head(args.config, pg_bin=args.pg_bin)
    text, diagram = render(
        schema,
        output_format=args.format,
        tables=args.tables,
        max_tables=args.max_tables or None,
        title=args.title,
    )
    # every file is checked before any is written: a missing marker changes nothing
    updates = [_updated(Path(name), fenced(diagram)) for name in args.update]
    for path, current, updated in updates:
        if updated != current:
            _write(path, updated)
        print(f"{'updated' if updated != current else 'unchanged'} {path}", file=sys.stderr)
    if args.output:
        _write(Path(args.output), text)
        print(
            f"wrote {args.output}: {len(diagram.tables)} table(s), {len(text):,} characters",
            file=sys.stderr,
        )
    elif not updates:
        sys.stdout.write(text)
    note = diagram.note()
    if note:
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK
