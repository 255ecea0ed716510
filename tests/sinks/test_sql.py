"""`darkscope sql`: a query against the store as a table, CSV or JSON, and a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from darkscope.cli import main
from sinks.store import Store
from tests.sinks.conftest import EnrichedWeek
from tests.sinks.test_store import HOLDER

QUERY = (
    "SELECT dport, sum(packets) AS packets FROM daily_ports WHERE protocol = 6 "
    "GROUP BY dport ORDER BY packets DESC LIMIT 3"
)


def _loaded(tmp_path: Path, week: EnrichedWeek) -> str:
    dsn = f"chdb://{tmp_path / 'store'}"
    with Store.open(dsn) as store:
        store.migrate()
        for i, rec in enumerate(week.records[:10]):
            store.insert_enriched(rec, dedup_token=str(i))
    return dsn


def test_sql_prints_csv_json_and_a_table(tmp_path: Path, week: EnrichedWeek) -> None:
    dsn = _loaded(tmp_path, week)
    runner = CliRunner()
    csv_out = runner.invoke(main, ["sql", QUERY, "--dsn", dsn, "--format", "csv"])
    assert csv_out.exit_code == 0, csv_out.output
    lines = csv_out.output.splitlines()
    assert lines[0] == "dport,packets" and len(lines) == 4
    top_port, top_packets = (int(v) for v in lines[1].split(","))
    json_out = runner.invoke(main, ["sql", QUERY, "--dsn", dsn, "--format", "json"])
    rows = json.loads(json_out.output)
    assert (rows[0]["dport"], rows[0]["packets"]) == (top_port, top_packets) and len(rows) == 3
    table = runner.invoke(main, ["sql", QUERY, "--dsn", dsn])
    assert table.exit_code == 0 and "dport" in table.output and "3 rows" in table.output


def test_sql_on_a_store_held_by_a_sink_says_so(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'held'}"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, dsn], stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2]
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"held"
        result = CliRunner().invoke(main, ["sql", "SELECT 1", "--dsn", dsn])
    finally:
        proc.kill()
        proc.wait()
    assert result.exit_code == 1
    assert "StoreLocked" in result.output and f"process {proc.pid}" in result.output
    assert "darkscope sink" in result.output


def test_sql_error_is_one_clear_line(tmp_path: Path, week: EnrichedWeek) -> None:
    dsn = _loaded(tmp_path, week)
    result = CliRunner().invoke(main, ["sql", "SELECT nope FROM packets", "--dsn", dsn])
    assert result.exit_code == 1
    assert "QueryFailed" in result.output and "nope" in result.output
    assert "Traceback" not in result.output


def test_sql_on_a_store_nothing_wrote_to_says_how_to_fill_it(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'empty'}"
    res = CliRunner().invoke(main, ["sql", "SELECT count() FROM packets", "--dsn", dsn])
    assert res.exit_code != 0
    assert "UNKNOWN_TABLE" in res.output and "holds no darkscope tables yet" in res.output
    assert "Traceback" not in res.output
