"""Usage charts as inline SVG: the geometry is computed here, ``_charts.html`` draws it.

Nothing is fetched and no script runs: a chart is part of the page, readable without
JavaScript, and every chart comes with the same numbers as a table. Pure functions of
their inputs (floats here are pixels, never money).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

WIDTH = 560
HEIGHT = 190
PLOT_LEFT = 64
PLOT_RIGHT = WIDTH - 12
PLOT_TOP = 14
PLOT_BOTTOM = HEIGHT - 40
BAR_FILL_RATIO = 0.64
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class UsagePoint:
    """One period's usage of a dataset: training quantity per unit (Σ quantity × epochs)
    and retrieval hits."""

    period_key: str  # YYYY-MM
    training: Mapping[str, int]
    retrieval_hits: int


@dataclass(frozen=True)
class Bar:
    period_key: str
    value: int
    x: float
    y: float
    width: float
    height: float
    month: str  # "Mar"
    year: str  # "2026" under the first bar of each year, else ""

    @property
    def centre(self) -> float:
        return self.x + self.width / 2


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class Panel:
    """One bar chart: a series over periods with its scale."""

    title: str
    unit: str
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = PLOT_LEFT
    plot_right: int = PLOT_RIGHT
    plot_bottom: int = PLOT_BOTTOM

    @property
    def total(self) -> int:
        return sum(bar.value for bar in self.bars)


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 2.5, 5 × 10^k (an integer) that is at least ``value`` (≥ 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    steps = [magnitude, 2 * magnitude, 5 * magnitude, 10 * magnitude]
    if magnitude >= 10:
        steps.insert(2, 25 * magnitude // 10)
    return next(step for step in steps if step >= value)


def compact(value: int) -> str:
    """An axis label: ``950``, ``1.2k``, ``3.4M``, ``5.6G``, ``7.8T``."""
    for factor, suffix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k")):
        # Rounded first, so 999,999 reads 1M rather than 1000k.
        if round(abs(value) / factor, 1) >= 1:
            text = f"{value / factor:.1f}".rstrip("0").rstrip(".")
            return f"{text}{suffix}"
    return str(value)


def bar_panel(title: str, unit: str, series: Sequence[tuple[str, int]]) -> Panel:
    """A panel of one bar per ``(period_key, value)``, in the given order."""
    top = nice_ceiling(max((value for _, value in series), default=0))
    plot_height = PLOT_BOTTOM - PLOT_TOP
    slot = (PLOT_RIGHT - PLOT_LEFT) / max(len(series), 1)
    bars = []
    previous_year = ""
    for index, (key, value) in enumerate(series):
        height = plot_height * value / top
        width = slot * BAR_FILL_RATIO
        year, _, month = key.partition("-")
        bars.append(
            Bar(
                period_key=key,
                value=value,
                x=round(PLOT_LEFT + index * slot + (slot - width) / 2, 2),
                y=round(PLOT_BOTTOM - height, 2),
                width=round(width, 2),
                height=round(height, 2),
                month=MONTHS[int(month) - 1] if month.isdigit() and 1 <= int(month) <= 12 else key,
                year=year if year != previous_year else "",
            )
        )
        previous_year = year
    # A middle line only where its value is a whole number (not for 1, 5, 25, …).
    halves = (0, 1, 2) if top % 2 == 0 else (0, 2)
    ticks = tuple(
        Tick(y=round(PLOT_BOTTOM - plot_height * half / 2, 2), label=compact(top * half // 2))
        for half in halves
    )
    return Panel(title=title, unit=unit, bars=tuple(bars), ticks=ticks)


def usage_panels(points: Sequence[UsagePoint]) -> tuple[Panel, ...]:
    """One panel per training unit reported, then retrieval hits; oldest period first.
    No points: no panels."""
    if not points:
        return ()
    ordered = sorted(points, key=lambda p: p.period_key)
    units = sorted({unit for point in ordered for unit in point.training})
    panels = [
        bar_panel(
            f"Training {unit} per period",
            unit,
            [(p.period_key, int(p.training.get(unit, 0))) for p in ordered],
        )
        for unit in units
    ]
    panels.append(
        bar_panel(
            "Retrieval hits per period", "hits", [(p.period_key, p.retrieval_hits) for p in ordered]
        )
    )
    return tuple(panels)
