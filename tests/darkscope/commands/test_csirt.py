"""`darkscope sensors load|list` and `darkscope notify` on a real chDB store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from darkscope.cli import main
from schemas.fingerprints import Fingerprint
from sinks.store import Store
from tests.sinks.packets import Pkt, insert_packets

REGISTRY = """
[[sensor]]
id = "tokyo-1"
group = "japan"
country = "JP"
prefixes = ["198.51.100.0/24"]
active_from = 2022-04-01
active_until = 2022-04-30

[[sensor]]
id = "tokyo-1"
group = "japan"
country = "JP"
prefixes = ["198.51.100.0/23"]
active_from = 2022-05-01
"""


def test_sensors_load_then_list_shows_each_period_with_its_addresses(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'store'}"
    path = tmp_path / "sensors.toml"
    path.write_text(REGISTRY)
    runner = CliRunner()
    empty = runner.invoke(main, ["sensors", "list", "--dsn", dsn])
    assert empty.exit_code == 0 and "no sensor registry loaded" in empty.output
    loaded = runner.invoke(main, ["sensors", "load", str(path), "--dsn", dsn])
    assert loaded.exit_code == 0, loaded.output
    assert "1 sensors, 2 periods, groups japan" in loaded.output
    listed = runner.invoke(main, ["sensors", "list", "--dsn", dsn])
    assert listed.exit_code == 0, listed.output
    lines = [line for line in listed.output.splitlines() if "tokyo-1" in line]
    assert len(lines) == 2
    assert "256" in lines[0] and "2022-04-30" in lines[0]
    assert "512" in lines[1] and "(active)" in lines[1]
    path.write_text(REGISTRY.replace('"japan"', '"partners"'))
    assert runner.invoke(main, ["sensors", "load", str(path), "--dsn", dsn]).exit_code == 0
    now = runner.invoke(main, ["sensors", "list", "--dsn", dsn]).output
    assert "partners" in now and "japan" not in now
    history = runner.invoke(main, ["sensors", "list", "--history", "--dsn", dsn]).output
    assert history.count("loaded 20") == 2 and history.index("japan") < history.index("partners")


def test_sensors_load_of_a_bad_file_is_a_one_line_error_naming_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "sensors.toml"
    path.write_text(REGISTRY.replace("active_until = 2022-04-30\n", ""))
    result = CliRunner().invoke(main, ["sensors", "load", str(path), "--dsn", f"chdb://{tmp_path / 's'}"])
    assert result.exit_code != 0
    assert "ConfigError" in result.output and "overlapping periods" in result.output


def test_notify_writes_per_as_files_and_prints_the_table_of_ases(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'store'}"
    t0 = datetime(2022, 4, 2, tzinfo=UTC)
    mirai = int(Fingerprint.MIRAI)
    with Store.open(dsn) as store:
        store.migrate()
        insert_packets(
            store,
            [Pkt(t0 + timedelta(seconds=i), "1.0.0.1", fp_flags=mirai, fp_verdict=mirai) for i in range(7)]
            + [Pkt(t0, "9.9.9.9", asn=64999, as_org="Quiet")],
        )
    out = tmp_path / "lists"
    args = ["notify", "--since", "2022-04-01", "--until", "2022-04-07", "--fingerprint", "mirai"]
    result = CliRunner().invoke(main, [*args, "--out", str(out), "--dsn", dsn])
    assert result.exit_code == 0, result.output
    assert "64500" in result.output and "Example Net" in result.output
    assert "1 ASes, 1 sources" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "AS64500-example-net.csv",
        "AS64500-example-net.json",
        "region-US.csv",
        "region-US.json",
    ]
    assert json.loads((out / "AS64500-example-net.json").read_text())["sources"][0]["packets"] == 7
    bad = CliRunner().invoke(main, ["notify", "--since", "April", "--out", str(out), "--dsn", dsn])
    assert bad.exit_code != 0 and "is not a date" in bad.output


def test_scans_lists_the_scans_started_on_a_day_cut_at_the_idle_timeout(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'store'}"
    t0 = datetime(2022, 4, 2, 8, tzinfo=UTC)
    first = [t0 + timedelta(seconds=i) for i in range(5)]
    second = [t0 + timedelta(minutes=30, seconds=i) for i in range(3)]  # 30 minutes of silence before
    with Store.open(dsn) as store:
        store.migrate()
        insert_packets(store, [Pkt(ts, "1.0.0.1") for ts in first + second])
    runner = CliRunner()
    result = runner.invoke(main, ["scans", "--since", "2022-04-02", "--until", "2022-04-02", "--dsn", dsn])
    assert result.exit_code == 0, result.output
    assert "2 scans started 2022-04-02 to 2022-04-02 (idle timeout 600 s)" in result.output
    merged = runner.invoke(
        main,
        ["scans", "--since", "2022-04-02", "--until", "2022-04-02", "--dsn", dsn],
        env={"DARKSCOPE_SINK_SCAN_IDLE": "3600"},
    )
    assert merged.exit_code == 0, merged.output
    assert "1 scans started" in merged.output and "idle timeout 3600 s" in merged.output
    none = runner.invoke(main, ["scans", "--since", "2022-04-03", "--idle", "3600", "--dsn", dsn])
    assert "0 scans started" in none.output
    help_text = runner.invoke(main, ["scans", "--help"]).output
    assert "DARKSCOPE_SINK_SCAN_IDLE" in help_text
    assert "publish" in help_text  # `darkscope scans publish`: tests/sinks/test_scanpublish.py
    missing = runner.invoke(main, ["scans", "--dsn", dsn])
    assert missing.exit_code == 2 and "Missing option '--since'" in missing.output
