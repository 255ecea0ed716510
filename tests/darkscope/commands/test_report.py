"""`darkscope report`: a store without the darkscope schema is a clear error naming the DSN;
--notes renders the analyst's sections into the report."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from darkscope.cli import main
from sinks.store import Store


def test_report_on_a_store_without_schema_says_so_and_names_the_dsn(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'fresh'}"
    result = CliRunner().invoke(main, ["report", "--quarter", "2022Q2", "--dsn", dsn, "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert f"the store at {dsn} holds no darkscope schema" in result.output
    assert "Unknown table" not in result.output


def test_report_notes_are_rendered_escaped_into_the_html(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'store'}"
    with Store.open(dsn) as store:
        store.migrate()
    notes = tmp_path / "notes.md"
    notes.write_text("# Findings\n\nCCTV recorders, **60%**. <b>not bold</b>\n\n- notify operators\n")
    args = [
        "report",
        "--quarter",
        "2022Q2",
        "--dsn",
        dsn,
        "--out",
        str(tmp_path / "out"),
        "--notes",
        str(notes),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    html = (tmp_path / "out" / "report-2022Q2.html").read_text()
    assert "<h3>Findings</h3>" in html and "<strong>60%</strong>" in html
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html and "<li>notify operators</li>" in html
    assert "Nothing of note this quarter" in html  # an empty store: a quiet quarter
