"""Quarters written like '2022Q2': their days and the quarter before."""

from __future__ import annotations

from datetime import date, timedelta

from core.errors import ConfigError

__all__ = ["parse_quarter", "previous_quarter", "quarter_days"]


def parse_quarter(quarter: str) -> tuple[int, int]:
    """'2022Q2' -> (2022, 2); a clear error for anything else."""
    q = quarter.strip().upper()
    if len(q) != 6 or q[4] != "Q" or not q[:4].isdigit() or q[5] not in "1234":
        raise ConfigError(f"quarter {quarter!r} is not written like 2022Q2")
    return int(q[:4]), int(q[5])


def quarter_days(quarter: str) -> list[date]:
    """Every calendar day of the quarter."""
    year, q = parse_quarter(quarter)
    first = date(year, 3 * q - 2, 1)
    end = date(year + 1, 1, 1) if q == 4 else date(year, 3 * q + 1, 1)
    return [first + timedelta(days=i) for i in range((end - first).days)]


def previous_quarter(quarter: str) -> str:
    """The quarter before: '2022Q1' -> '2021Q4'."""
    year, q = parse_quarter(quarter)
    return f"{year - 1}Q4" if q == 1 else f"{year}Q{q - 1}"
