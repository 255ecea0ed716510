"""The scenario of a simulated darknet quarter: volumes, region mixes, daily shapes, events.

Modelled on JPCERT/CC's TSUBAME report for 2022Q2 (``reference/quarterly-report-2022q2.txt``)
and the quarter before it. Traffic is split into *cells* (category x region x kind): a
category is what is probed (23/tcp telnet, 6379/tcp redis, ICMP, ...), a region the ISO code
of the sources, a kind the tool that sends it (Mirai, ZMap, Masscan, Nmap, backscatter, noise).

Quarter volumes are fixed shares of ``packets_per_day x days``: category shares give the
destination-port ranking, region shares the source-region ranking (both with >= 20% between
consecutive ranks). Mirai's regional mix is pinned; the other categories are spread over the
remaining regional volume by iterative proportional fitting from plausible affinities. Each
cell then gets a daily shape with mean 1 over the quarter (the story), so the shapes move
traffic between days without changing any quarter total. ``flat`` keeps the volumes and drops
the shapes: a control quarter with no planted event, only noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError

__all__ = [
    "CATEGORIES",
    "FINGERPRINTS",
    "KINDS",
    "MODELS",
    "REGIONS",
    "TRACKED_PORTS",
    "Category",
    "Event",
    "QuarterModel",
    "VolumePlan",
    "expected_rankings",
    "port_key",
    "quarter_days",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Kinds of sender; FINGERPRINTS maps each to the fingerprint it must (and alone) match.
KINDS = ("mirai", "zmap", "masscan", "nmap", "bs_tcp", "bs_icmp", "noise_tcp", "noise_udp", "noise_icmp")
FINGERPRINTS = dict(
    zip(KINDS, ("mirai", "zmap", "masscan", "nmap") + ("backscatter",) * 2 + ("none",) * 3, strict=True)
)
_REGION_CODES = "US GB RU CN KR NL DE IN BR TW VN FR SG HK BG UA JP IR ID TH CA IT"
REGIONS = tuple(_REGION_CODES.split())


def _shares(text: str) -> dict[str, float]:
    """'US 22 GB 15.5' -> {'US': 22.0, 'GB': 15.5}: the tables below stay one line each."""
    words = text.split()
    return {k: float(v) for k, v in zip(words[::2], words[1::2], strict=True)}


TCP, UDP, ICMP = 6, 17, 1
RANDOM_PORT = -1  # the category probes ports spread over 1024-65535 (never a tracked port)


def port_key(protocol: int, port: int) -> str:
    """Report key of a destination: '23/tcp', '53/udp', 'icmp' or 'proto47'."""
    if protocol == TCP:
        return f"{port}/tcp"
    if protocol == UDP:
        return f"{port}/udp"
    return "icmp" if protocol == ICMP else f"proto{protocol}"


@dataclass(frozen=True)
class Category:
    """What a share of the traffic probes, which tools send it, and where it comes from."""

    name: str
    protocol: int
    ports: tuple[tuple[int, float], ...]  # (port, fraction); RANDOM_PORT for spread ports
    kinds: tuple[tuple[str, float], ...]  # (kind, fraction)
    affinity: Mapping[str, float] = field(default_factory=dict)  # region prior multipliers


def _category(name: str, protocol: int, ports: str, kinds: str, affinity: str = "") -> Category:
    port_shares = tuple((int(p), f) for p, f in _shares(ports).items())
    return Category(name, protocol, port_shares, tuple(_shares(kinds).items()), _shares(affinity))


_SCAN = "zmap .10 masscan .10 nmap .02 noise_tcp .78"
CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in (
        # Mirai: 23/tcp nine times in ten, 2323/tcp otherwise (scanner.c, see producers.sim.packets).
        _category("mirai", TCP, "23 .9 2323 .1", "mirai 1"),
        _category("telnet", TCP, "23 1", "noise_tcp .8 zmap .1 masscan .1", "CN 2 BR 2 IN 2 VN 2 GB .5"),
        _category(
            "redis", TCP, "6379 1", "zmap .15 masscan .12 nmap .03 noise_tcp .70", "CN 2.5 HK 2 SG 1.5"
        ),
        _category("ssh", TCP, "22 1", "zmap .12 masscan .08 nmap .05 noise_tcp .75", "CN 1.8 RU 1.3 FR 1.3"),
        _category("http", TCP, "80 1", "zmap .15 masscan .10 nmap .05 noise_tcp .70", "US 1.3 NL 1.3"),
        _category("icmp", ICMP, "0 1", "bs_icmp .35 noise_icmp .65", "US 1.4 GB 1.5"),
        _category("smb", TCP, "445 1", _SCAN, "RU 1.6 UA 1.5 IR 1.5"),
        _category("rdp", TCP, "3389 1", _SCAN, "RU 2 NL 1.5 BG 2 UA 2"),
        _category("http_alt", TCP, "8080 1", _SCAN, "CN 1.5"),
        _category("adb", TCP, "5555 1", _SCAN, "CN 1.5 IN 1.5"),
        _category("mssql", TCP, "1433 1", _SCAN, "CN 1.5"),
        _category("dns", UDP, "53 1", "noise_udp 1", "US 1.5"),
        _category("backscatter", TCP, f"{RANDOM_PORT} 1", "bs_tcp 1", "US 1.5"),
        _category(
            "misc_tcp", TCP, f"{RANDOM_PORT} 1", "noise_tcp .85 zmap .05 masscan .05 nmap .05", "GB 1.6"
        ),
        _category("misc_udp", UDP, f"{RANDOM_PORT} 1", "noise_udp 1"),
    )
}

TRACKED_PORTS = tuple(
    sorted({port_key(c.protocol, p) for c in CATEGORIES.values() for p, _ in c.ports if p != RANDOM_PORT})
)


@dataclass(frozen=True)
class Event:
    """A planted event of the story: what changes, for whom, from when."""

    kind: str  # surge, drop, rank_swap, trend
    subject: str  # '23/tcp', 'mirai:KR', 'region:RU>CN', ...
    start: date
    description: str


@dataclass(frozen=True)
class QuarterModel:
    """Quarter volumes (percent shares) and whether the 2022Q2 story is planted."""

    quarter: str
    categories: Mapping[str, float]
    regions: Mapping[str, float]
    mirai_regions: Mapping[str, float]
    story: bool
    previous: str | None


_MIRAI_MIX = _shares(
    "CN 16 US 12 KR 11 IN 9 BR 9 TW 7 VN 6 JP 4 RU 3 ID 3 TH 3 IR 3 HK 2 UA 2 GB 2 "
    "SG 1 BG 1 NL 1 DE 1 FR 1 CA 1 IT 1"
)
MODELS: dict[str, QuarterModel] = {
    "2022Q1": QuarterModel(
        "2022Q1",
        _shares(
            "redis 19 mirai 12 telnet 4.7 smb 12.5 ssh 10 rdp 8 http 6.5 http_alt 5.2 adb 4.2 mssql 3.4 "
            "icmp 2.7 dns 2.1 backscatter 2.5 misc_tcp 5.9 misc_udp 1.3"
        ),
        _shares(
            "US 23 GB 15.5 CN 12 RU 9.6 NL 7.6 KR 6.1 DE 4.9 IN 3.3 BR 3 TW 2.4 VN 2.2 FR 2 SG 1.8 HK 1.5 "
            "BG 1.3 UA 1.2 JP .8 IR .9 ID .8 TH .7 CA .6 IT .5"
        ),
        _MIRAI_MIX,
        story=False,
        previous=None,
    ),
    "2022Q2": QuarterModel(
        "2022Q2",
        _shares(
            "mirai 21 telnet 6 redis 17 ssh 12.5 http 9.5 icmp 7.5 smb 6 rdp 4.8 http_alt 3.8 adb 3 "
            "mssql 2.4 dns 1.6 backscatter 2.5 misc_tcp 1.9 misc_udp .5"
        ),
        _shares(
            "US 22 GB 15.5 RU 11.5 CN 9.5 KR 7.5 NL 5.8 DE 4.6 IN 3.4 BR 3 TW 2.6 VN 2.2 FR 2 SG 1.8 HK 1.5 "
            "BG 1.3 UA 1.2 JP 1 IR .9 ID 1 TH .8 CA .6 IT .5"
        ),
        _MIRAI_MIX,
        story=True,
        previous="2022Q1",
    ),
}


def quarter_days(quarter: str) -> list[date]:
    """The calendar days of a quarter written like '2022Q2'."""
    if len(quarter) != 6 or quarter[4] not in "qQ" or not quarter[:4].isdigit() or quarter[5] not in "1234":
        raise ConfigError(f"quarter {quarter!r} is not written like 2022Q2")
    year, q = int(quarter[:4]), int(quarter[5])
    first = date(year, 3 * q - 2, 1)
    end = date(year + 1, 1, 1) if q == 4 else date(year, 3 * q + 1, 1)
    return [first + timedelta(days=i) for i in range((end - first).days)]


def _model(quarter: str) -> QuarterModel:
    quarter_days(quarter)
    try:
        return MODELS[quarter.upper()]
    except KeyError:
        raise ConfigError(f"no traffic model for quarter {quarter}; known: {sorted(MODELS)}") from None


def _sinkhorn(prior: F64, rows: F64, cols: F64, rounds: int = 500) -> F64:
    """Scale ``prior`` so its row sums are ``rows`` and its column sums ``cols``."""
    m = prior.copy()
    for _ in range(rounds):
        m *= (rows / m.sum(axis=1))[:, None]
        m *= cols / m.sum(axis=0)
    return m


class _Story:
    """Daily shapes of the 2022Q2 story (report section 1 and 2.1), one value per day."""

    def __init__(self, days: list[date]) -> None:
        self.days = days
        self.t = np.arange(len(days), dtype=np.float64)

    def at(self, month: int, day: int) -> int:
        """Index of a date of this quarter's year."""
        return (date(self.days[0].year, month, day) - self.days[0]).days

    def ramp(self, start: int, end: int, v0: float, v1: float) -> F64:
        """v0 before ``start``, rising linearly to v1 at ``end``, v1 after."""
        frac = np.clip((self.t - start) / max(end - start, 1), 0.0, 1.0)
        return v0 + (v1 - v0) * frac

    def step(self, start: int, before: float, after: float) -> F64:
        return np.where(self.t < start, before, after)

    def category(self, name: str) -> F64:
        last = len(self.days) - 1
        if name == "redis":  # "appeared to decrease gradually during this quarter"
            return self.ramp(0, last, 1.35, 0.65)
        if name in ("telnet", "mirai"):  # 23/tcp: bursts in April-May, rising from May 8
            may8 = self.at(5, 8)
            shape = self.step(may8, 1.0, 1.35) * self.ramp(may8, last, 1.0, 1.8)
            for start in (self.at(4, 9), self.at(4, 19), self.at(5, 1)):
                shape[start : start + 3] *= 1.4
            return shape
        return np.ones(len(self.days))

    def region(self, code: str) -> F64:
        if code == "RU":  # "the number of packets go up from around May 18"
            return self.step(self.at(5, 18), 0.55, 1.5)
        if code == "KR":  # temporary rise April - May 6, dip, slow increase to late June
            may7, may21 = self.at(5, 7), self.at(5, 21)
            shape = self.ramp(may21, len(self.days) - 1, 0.95, 1.3)
            shape[:may7] = 1.35
            shape[may7:may21] = 0.85
            return shape
        return np.ones(len(self.days))

    def mirai(self, code: str) -> F64:
        last = len(self.days) - 1
        if code == "CN":  # high early April until Apr 25, then rising May to mid-June
            shape = self.ramp(self.at(5, 8), self.at(6, 15), 1.0, 1.8)
            shape[: self.at(4, 25)] = 2.5
            return shape
        if code == "KR":  # sharp increase from around May 11, more than doubling
            return self.step(self.at(5, 11), 1.0, 2.6) * self.ramp(self.at(5, 11), last, 1, 1.1)
        if code == "TW":  # increased significantly from around June 26
            return self.step(self.at(6, 26), 1.0, 4.0)
        if code == "JP":  # spike early April, up from Apr 25, fivefold by June
            shape = self.ramp(self.at(4, 25), self.at(5, 31), 1.0, 2.0)
            shape += self.ramp(self.at(6, 1), last, 0.0, 3.5)
            shape[self.at(4, 2) : self.at(4, 5)] = 3.0
            return shape
        return self.category("mirai")

    def events(self) -> list[Event]:
        def d(m: int, day: int) -> date:
            return date(self.days[0].year, m, day)

        return [
            Event(
                "surge", "23/tcp", d(5, 8), "telnet packets rise from May 8, weekly averages keep increasing"
            ),
            Event("trend", "6379/tcp", d(4, 1), "redis packets decrease gradually through the quarter"),
            Event("drop", "mirai:CN", d(4, 25), "Mirai packets from China high in early April until Apr 25"),
            Event(
                "surge", "mirai:KR", d(5, 11), "Mirai packets from South Korea more than double from May 11"
            ),
            Event("surge", "mirai:TW", d(6, 26), "Mirai packets from Taiwan rise sharply from June 26"),
            Event(
                "trend", "mirai:JP", d(4, 25), "Mirai packets from Japan grow from Apr 25, fivefold by June"
            ),
            Event("rank_swap", "region:RU>CN", d(5, 18), "Russia overtakes China from May 18"),
            Event("surge", "region:KR", d(4, 1), "temporary rise of packets from South Korea until May 6"),
        ]


class VolumePlan:
    """Expected packets per day and cell for one quarter; ``day_counts`` adds the noise."""

    def __init__(self, quarter: str, packets_per_day: int, *, flat: bool = False, noise: float = 0.1):
        if packets_per_day <= 0:
            raise ConfigError(f"packets_per_day must be positive, not {packets_per_day}")
        self.model = _model(quarter)
        self.days = quarter_days(self.model.quarter)
        self.packets_per_day = packets_per_day
        self.flat = flat
        self.noise = noise
        self.story = self.model.story and not flat

    @cached_property
    def share_matrix(self) -> F64:
        """Quarter share (fraction of all packets) per (category, region)."""
        cats, regs = list(CATEGORIES), list(REGIONS)
        c_share = np.array([self.model.categories[c] for c in cats]) / 100.0
        r_share = np.array([self.model.regions[r] for r in regs], dtype=np.float64)
        r_share /= r_share.sum()
        mirai = np.array([self.model.mirai_regions.get(r, 0.0) for r in regs], dtype=np.float64)
        mirai *= c_share[cats.index("mirai")] / mirai.sum()
        residual = r_share - mirai
        if (residual <= 0.1 * r_share).any():
            raise ConfigError(f"{self.model.quarter}: Mirai mix leaves too little for some regions")
        others = [i for i, c in enumerate(cats) if c != "mirai"]
        prior = np.array(
            [
                [r_share[j] * CATEGORIES[cats[i]].affinity.get(r, 1.0) for j, r in enumerate(regs)]
                for i in others
            ]
        )
        out = np.zeros((len(cats), len(regs)))
        out[cats.index("mirai")] = mirai
        out[others] = _sinkhorn(prior, c_share[others], residual)
        return out

    @cached_property
    def cells(self) -> tuple[I64, I64, list[str], F64]:
        """Cell table: category index, region index, kind, quarter share of each cell."""
        cat_i, reg_i, kinds, share = [], [], [], []
        for i, cat in enumerate(CATEGORIES.values()):
            for j in range(len(REGIONS)):
                for kind, frac in cat.kinds:
                    cat_i.append(i)
                    reg_i.append(j)
                    kinds.append(kind)
                    share.append(self.share_matrix[i, j] * frac)
        return np.array(cat_i), np.array(reg_i), kinds, np.array(share)

    @cached_property
    def expected(self) -> F64:
        """Expected packets, shape (days, cells); each cell's mean over the quarter is its share."""
        cat_i, reg_i, _, share = self.cells
        shapes = np.ones((len(self.days), len(share)))
        if self.story:
            story = _Story(self.days)
            cat_names = list(CATEGORIES)
            for k in range(len(share)):
                name, code = cat_names[cat_i[k]], REGIONS[reg_i[k]]
                shapes[:, k] = (
                    story.mirai(code) if name == "mirai" else story.category(name) * story.region(code)
                )
            shapes /= shapes.mean(axis=0)
        return shapes * share * self.packets_per_day

    def day_counts(self, day: int, rng: np.random.Generator) -> I64:
        """Packets per cell on one day: Poisson around the expectation times log-normal noise."""
        mean = self.expected[day]
        factor = np.exp(rng.normal(-(self.noise**2) / 2, self.noise, size=len(mean)))
        counts: I64 = rng.poisson(mean * factor).astype(np.int64)
        return counts

    def events(self) -> list[Event]:
        """Planted events (none for a flat quarter or a quarter without a story)."""
        return _Story(self.days).events() if self.story else []


def expected_rankings(quarter: str) -> tuple[list[str], list[str]]:
    """Port keys and regions ordered by the quarter's model volumes (spread ports left out)."""
    model = _model(quarter)
    ports: dict[str, float] = {}
    for name, share in model.categories.items():
        cat = CATEGORIES[name]
        for port, frac in cat.ports:
            if port != RANDOM_PORT:
                key = port_key(cat.protocol, port)
                ports[key] = ports.get(key, 0.0) + share * frac
    by_port = sorted(ports, key=lambda k: -ports[k])
    by_region = sorted(model.regions, key=lambda r: -model.regions[r])
    return by_port, by_region
