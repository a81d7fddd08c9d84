"""Accessibility checks for the browser tests: axe-core (``axe-playwright-python``) with no
serious or critical violation allowed, and the size of touch targets (WCAG 2.2 SC 2.5.5 asks
44x44 CSS px; the kiosk promises 48x48, a gloved finger's)."""

from __future__ import annotations

from typing import Any

# WCAG 2.x A and AA rules and axe's best practices; "serious" and "critical" fail a test
_OPTIONS = {"resultTypes": ["violations"],
            "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa",
                                                   "wcag22aa", "best-practice"]}}


def serious_violations(page: Any) -> list[str]:
    """The serious and critical axe violations of the page as it is now, one line each (rule,
    impact, the first offending elements)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options=_OPTIONS)
    return [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes'][:3]]} {v['help']}"
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def small_targets(page: Any, minimum: float = 48) -> list[str]:
    """The visible buttons, links and form controls smaller than ``minimum`` CSS px either
    way (their bounding boxes, as laid out)."""
    small = []
    for element in page.locator("button, a[href], input:not([type=hidden]), select").all():
        if not element.is_visible():
            continue
        box = element.bounding_box()
        if box and (box["width"] < minimum or box["height"] < minimum):
            label = element.get_attribute("id") or element.inner_text()[:30]
            small.append(f"{label}: {box['width']:.0f}x{box['height']:.0f}")
    return small


def overflows_horizontally(page: Any) -> bool:
    """Whether the page is wider than the viewport (a horizontal scroll bar on a tablet)."""
    return bool(page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth"))
