"""The console's dashboard: sign-ins and provisioning decisions of the last 14 days (an inline
SVG chart with the same numbers in a table), open approvals, dormant accounts, webhook
backlog."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from jitprov.services import console
from jitprov.services.console import Dashboard
from jitprov.web.console.shell import render, require_admin, tenant_of
from jitprov.web.routes.common import ctx_of

SERIES = (("logins", "Sign-ins"), ("created", "Created"), ("updated", "Updated"),
          ("denied", "Denied"), ("pending", "Pending"))

# the chart's geometry, in SVG user units (it scales to the page width)
WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 36, 8, 10, 28


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    label: str


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    value: int


def chart(data: Dashboard) -> dict[str, object]:
    """Bars, axis ticks and day labels of the 14-day chart, computed here so the template
    only draws (SVG presentation attributes: no inline style, CSP-clean)."""
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    group = plot_w / max(1, len(data.days))
    bar_w = group * 0.8 / len(SERIES)
    steps = 4
    peak = max(steps, -(-data.peak // steps) * steps)  # a multiple of 4: whole-number ticks
    bars: list[Bar] = []
    labels: list[tuple[float, str]] = []
    for i, day in enumerate(data.days):
        x0 = LEFT + i * group + group * 0.1
        for j, (key, name) in enumerate(SERIES):
            value = int(getattr(day, key))
            h = plot_h * value / peak
            bars.append(Bar(round(x0 + j * bar_w, 2), round(TOP + plot_h - h, 2),
                            round(bar_w, 2), round(h, 2), key, f"{day.day}: {value} {name}"))
        labels.append((round(LEFT + i * group + group / 2, 2), day.day[5:]))
    ticks = [Tick(round(TOP + plot_h - plot_h * k / steps, 2), peak * k // steps)
             for k in range(steps + 1)]
    return {"bars": bars, "labels": labels, "ticks": ticks, "width": WIDTH,
            "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "baseline": TOP + plot_h}


async def dashboard(request: Request) -> Response:
    principal = await require_admin(request)
    tenant = tenant_of(request, principal)
    data = await run_in_threadpool(console.dashboard, ctx_of(request), tenant)
    totals = {key: sum(int(getattr(d, key)) for d in data.days) for key, _ in SERIES}
    return render(request, "admin/dashboard.html", principal, tenant=tenant, data=data,
                  chart=chart(data), series=SERIES, totals=totals)


ROUTES = [
    ("/admin", dashboard, ["GET"]),
]
