"""The analyst's notes: a small Markdown subset, everything else escaped."""

from __future__ import annotations

from reports.notes import render_notes


def test_headings_paragraphs_lists_and_emphasis_render() -> None:
    md = (
        "# Findings\n\nCCTV recorders, **60%** of *Mirai* sources.\nSame paragraph.\n\n"
        "- one\n- two `x`\n\n1. first\n2. second\n"
    )
    assert render_notes(md) == (
        "<h3>Findings</h3>\n"
        "<p>CCTV recorders, <strong>60%</strong> of <em>Mirai</em> sources. Same paragraph.</p>\n"
        "<ul><li>one</li><li>two <code>x</code></li></ul>\n"
        "<ol><li>first</li><li>second</li></ol>"
    )


def test_html_in_notes_is_escaped_not_rendered() -> None:
    html = render_notes('<script>alert(1)</script> <img src=x onerror="y"> [a](javascript:z)')
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x onerror=&quot;y&quot;&gt;" in html


def test_subheadings_go_one_level_down_and_stop_at_h6() -> None:
    assert render_notes("## Devices\n### Models", heading_level=5) == "<h6>Devices</h6>\n<h6>Models</h6>"
