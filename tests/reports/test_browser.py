"""The HTML report renders in headless Chromium (Debian's chromium): charts drawn, screenshot saved."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it)")


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=True)


def test_report_charts_render_in_headless_chromium(story_html: Path, tmp_path: Path) -> None:
    dom = _chromium("--dump-dom", story_html.as_uri(), cwd=tmp_path).stdout
    assert len(re.findall(r"<svg\b", dom)) >= 7
    assert len(re.findall(r"<polyline\b", dom)) >= 2 * (5 + 5 + 1 + 5 + 1 + 1)
    assert "http://" not in dom.replace("http://www.w3.org/2000/svg", "")  # nothing fetched
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=900,3000", story_html.as_uri(), cwd=tmp_path)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a blank page compresses to a few KB
