"""Compare what a store holds with a simulation's ground truth, day by day."""

from __future__ import annotations

from typing import Any

from sinks.store import Store

# Simulator fingerprint labels -> the store's fingerprint names.
FP_NAMES = {
    "mirai": "mirai",
    "zmap": "zmap",
    "masscan": "masscan",
    "nmap": "nmap_syn",
    "backscatter": "backscatter",
}


def _port_key(protocol: int, dport: int) -> str:
    return {6: f"{dport}/tcp", 17: f"{dport}/udp", 1: "icmp"}.get(protocol, f"proto{protocol}")


def store_daily(store: Store) -> dict[str, dict[str, Any]]:
    """Per day (ISO date): packets, by_port, by_region, by_fingerprint, mirai_by_region, sources by region."""
    days: dict[str, dict[str, Any]] = {}

    def day(d: Any) -> dict[str, Any]:
        return days.setdefault(
            d.isoformat(),
            {
                "packets": 0,
                "by_port": {},
                "by_region": {},
                "by_fingerprint": {},
                "mirai_by_region": {},
                "sources": {},
            },
        )

    for d, proto, dport, n in store.query(
        "SELECT day, protocol, dport, sum(packets) FROM daily_ports GROUP BY day, protocol, dport"
    ).result_rows:
        entry = day(d)
        entry["packets"] += n
        key = _port_key(proto, dport)
        entry["by_port"][key] = entry["by_port"].get(key, 0) + n
    for d, region, n, sources in store.query(
        "SELECT day, region, sum(packets), sum(sources) FROM daily_regions GROUP BY day, region"
    ).result_rows:
        day(d)["by_region"][region] = n
        day(d)["sources"][region] = sources
    for d, fp, n in store.query(
        "SELECT day, fingerprint, sum(packets) FROM rollup_fp_region_day GROUP BY day, fingerprint"
    ).result_rows:
        day(d)["by_fingerprint"][fp] = n
    for d, region, n in store.query(
        "SELECT day, region, sum(packets) FROM daily_mirai GROUP BY day, region"
    ).result_rows:
        day(d)["mirai_by_region"][region] = n
    return days


def assert_store_matches_truth(store: Store, truth: dict[str, Any]) -> None:
    """Every day's packets, tracked ports, regions, fingerprints and Mirai regions equal the truth."""
    got = store_daily(store)
    assert sorted(got) == [d["date"] for d in truth["daily"]]
    raw = dict(store.query("SELECT toString(day), count() FROM packets GROUP BY day").result_rows)
    for want in truth["daily"]:
        have = got[want["date"]]
        assert have["packets"] == want["packets"] == raw[want["date"]], want["date"]
        for port, n in want["by_port"].items():
            if port != "other":
                assert have["by_port"].get(port, 0) == n, (want["date"], port)
        assert sum(have["by_port"].values()) == want["packets"]
        assert have["by_region"] == want["by_region"], want["date"]
        for label, name in FP_NAMES.items():
            assert have["by_fingerprint"].get(name, 0) == want["by_fingerprint"][label], (want["date"], label)
        assert have["mirai_by_region"] == want["mirai_by_region"], want["date"]
        assert have["sources"] == want["unique_sources_by_region"], want["date"]
