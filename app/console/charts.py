"""Bar charts drawn as inline SVG by the templates: here only the geometry,
so that the pages need no script and the sums can be tested alone."""

from __future__ import annotations

from dataclasses import dataclass, field

WIDTH, HEIGHT = 720, 160


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: int
    title: str


@dataclass(frozen=True)
class Chart:
    series: list[str]
    top: float
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT


def _ticks(labels: list[str], step: float, every: int) -> list[tuple[float, str]]:
    return [(i * step, label[-5:]) for i, label in enumerate(labels) if i % every == 0]


def stacked(labels: list[str], series: dict[str, list[float]], every: int = 10) -> Chart:
    """One bar per label, its series stacked: parts of one whole (pings by outcome)."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    top = max(totals, default=0) or 1
    step = WIDTH / max(len(labels), 1)
    bars = []
    for i, label in enumerate(labels):
        base = HEIGHT
        for s, (name, values) in enumerate(series.items()):
            height = values[i] / top * HEIGHT
            if height:
                bars.append(Bar(i * step + 1, base - height, step - 2, height, s,
                                f"{label} {name}: {values[i]:g}"))
            base -= height
    return Chart(list(series), top, bars, _ticks(labels, step, every))


def grouped(labels: list[str], series: dict[str, list[float]], every: int = 4) -> Chart:
    """Side by side bars per label: counts that contain each other (calls, answers)."""
    top = max((v for values in series.values() for v in values), default=0) or 1
    step = WIDTH / max(len(labels), 1)
    width = (step - 2) / max(len(series), 1)
    bars = [Bar(i * step + 1 + s * width, HEIGHT - values[i] / top * HEIGHT, width,
                values[i] / top * HEIGHT, s, f"{label} {name}: {values[i]:g}")
            for s, (name, values) in enumerate(series.items())
            for i, label in enumerate(labels) if values[i]]
    return Chart(list(series), top, bars, _ticks(labels, step, every))
