"""Pure helpers of the report's queries."""

from __future__ import annotations

from reports.queries import port_label, prefix_addresses


def test_monitored_addresses_counted_from_prefixes_once_each() -> None:
    assert prefix_addresses(["198.51.100.0/24"]) == 256
    # Overlapping prefixes count once; IPv6 adds its own; what does not parse is skipped.
    assert prefix_addresses(["198.51.100.0/24", "198.51.100.128/25", "2001:db8::/126", "bad"]) == 260
    assert prefix_addresses([]) == 0


def test_port_labels_name_the_service() -> None:
    assert port_label("23/tcp", "telnet") == "23/TCP (telnet)"
    assert port_label("icmp", "icmp") == "ICMP"
