"""The report's DoS section names IPv6 victims as it names IPv4 ones: a simulated stretch at a
sensor with an IPv6 prefix, enriched and stored, then reported."""

from __future__ import annotations

import json
from pathlib import Path

from producers.sim.ipv6 import VICTIMS
from reports.build import write_report
from sinks.store import Store
from tests.reports.fill import PREFIX, fill_quarter


def test_ipv6_victims_are_in_the_dos_section_with_their_planted_packets(
    report_store: Store, tmp_path: Path
) -> None:
    truth, _ = fill_quarter(
        report_store, "2022Q2", sensor="v6", packets_per_day=3000, days=6, prefix=(PREFIX, "2001:db8:dd::/64")
    )
    planted = {v["victim"]: v for v in truth.to_dict()["backscatter"]["victims"]}
    paths = write_report(report_store, "2022Q2", tmp_path, sensor="v6")
    report = json.loads(paths.json.read_text())
    top = {v["victim"]: v for v in report["backscatter"]["top_victims"]}
    assert sorted(v for v in top if ":" in v) == sorted(VICTIMS)
    for victim in VICTIMS:
        want = planted[victim]
        assert top[victim]["packets"] == want["packets"]
        assert top[victim]["episodes"] == len(want["episodes"])
    protocols = {top[v]["protocols"] for v in VICTIMS}
    assert protocols == {"tcp", "icmpv6"}
    # IPv4 victims are listed too, in dotted form, as the simulator planted them.
    ipv4 = [v for v in top if ":" not in v]
    assert ipv4 and all(v in planted for v in ipv4)
    html = paths.html.read_text()
    assert all(v in html for v in VICTIMS)
