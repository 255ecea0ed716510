"""Fixtures for the producer tests: the folder of real captures, and outside capture tools."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.producers.pktbuild import shared_captures


@pytest.fixture(scope="session")
def real_captures() -> Path:
    """Folder of captures recorded by other people (README.md there has independent counts)."""
    folder = shared_captures()
    if not folder.is_dir():
        pytest.skip(f"real captures not found at {folder} (set DARKSCOPE_SHARED_DIR to the shared folder)")
    return folder


@pytest.fixture(scope="session")
def tool() -> Callable[[str], str]:
    """Path of an outside capture tool (tcpdump, tshark, editcap, capinfos, mergecap), or skip."""

    def find(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            pytest.skip(f"{name} is not installed (Debian packages tcpdump / tshark provide the tools)")
        return path

    return find
