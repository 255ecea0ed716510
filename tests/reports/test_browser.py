"""The HTML report renders in headless Chromium (Debian's chromium): charts drawn, a screen
screenshot saved; then printed, emulated through the DevTools protocol: an A4 PDF and a second
screenshot with print media at A4 width."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it)")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage")
A4_PX = (794, 1123)  # 210 x 297 mm at 96 px per inch
A4_PT = (595, 842)


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [CHROMIUM, *FLAGS, *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=True)


async def _devtools(ws_url: str, calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Send DevTools protocol ``calls`` in order to one page; their results. A call whose
    method is an event's name ('Page.loadEventFired') waits for that event instead."""
    out = []
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        for i, (method, params) in enumerate(calls):
            if not method.endswith("Fired"):
                await ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
            while True:
                msg = json.loads((await ws.receive(timeout=60)).data)
                if msg.get("id") == i or msg.get("method") == method:
                    assert "error" not in msg, msg
                    out.append(msg.get("result", msg.get("params", {})))
                    break
    return out


def _print_emulated(html: Path, tmp_path: Path) -> tuple[bytes, bytes]:
    """(PDF printed at the page's CSS size, PNG screenshot with print media at A4 width)."""
    assert CHROMIUM is not None
    cmd = [CHROMIUM, *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={tmp_path / 'profile'}"]
    proc = subprocess.Popen([*cmd, "about:blank"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        port = None
        for line in proc.stderr:
            found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if found:
                port = int(found.group(1))
                break
        assert port, "chromium did not open its DevTools port"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        width, height = A4_PX
        *_, pdf, _, _, _, shot = asyncio.run(
            _devtools(
                page["webSocketDebuggerUrl"],
                [
                    ("Page.enable", {}),
                    ("Page.navigate", {"url": html.as_uri()}),
                    ("Page.loadEventFired", {}),
                    ("Page.printToPDF", {"preferCSSPageSize": True, "printBackground": True}),
                    ("Emulation.setEmulatedMedia", {"media": "print"}),
                    ("Emulation.setScrollbarsHidden", {"hidden": True}),
                    (
                        "Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                    ),
                    ("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}),
                ],
            )
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return base64.b64decode(pdf["data"]), base64.b64decode(shot["data"])


def test_report_charts_render_in_headless_chromium(story_html: Path, tmp_path: Path) -> None:
    dom = _chromium("--dump-dom", story_html.as_uri(), cwd=tmp_path).stdout
    assert len(re.findall(r"<svg\b", dom)) >= 7
    assert len(re.findall(r"<polyline\b", dom)) >= 2 * (5 + 5 + 1 + 5 + 1 + 1)
    assert len(re.findall(r'<g class="mark-label">', dom)) >= 8  # numbered event marks
    assert "http://" not in dom.replace("http://www.w3.org/2000/svg", "")  # nothing fetched
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=900,3000", story_html.as_uri(), cwd=tmp_path)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a blank page compresses to a few KB


def test_report_prints_on_a4_and_a_print_screenshot_is_taken(story_html: Path, tmp_path: Path) -> None:
    pdf, png = _print_emulated(story_html, tmp_path)
    assert pdf.startswith(b"%PDF")
    boxes = {
        tuple(round(float(v)) for v in m) for m in re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)", pdf)
    }
    assert boxes == {A4_PT}, boxes  # every page A4, from the report's @page rule
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 4
    (tmp_path / "report-print.png").write_bytes(png)
    (tmp_path / "report.pdf").write_bytes(pdf)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    width = int.from_bytes(png[16:20], "big")
    assert width == A4_PX[0]
