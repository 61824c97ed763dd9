"""The admin pages' pure parts: chart geometry and the session key file."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.console import charts, secret_key


def test_stacked_bars_fill_the_chart_at_the_busiest_label_and_skip_zeros():
    chart = charts.stacked(["a", "b", "c"], {"reserved": [1, 3, 0], "rejected": [1, 1, 0]})
    assert chart.top == 4
    assert len(chart.bars) == 4
    tallest = [b for b in chart.bars if b.title.startswith("b ")]
    assert sum(b.height for b in tallest) == pytest.approx(charts.HEIGHT)
    assert min(b.y for b in tallest) == pytest.approx(0)
    reserved, rejected = [b for b in chart.bars if b.title.startswith("a ")]
    assert rejected.y + rejected.height == pytest.approx(reserved.y)


def test_grouped_bars_stand_side_by_side_on_the_axis():
    chart = charts.grouped(["h1", "h2"], {"calls": [2, 4], "answers": [1, 0]})
    assert chart.top == 4 and len(chart.bars) == 3
    assert all(b.y + b.height == pytest.approx(charts.HEIGHT) for b in chart.bars)
    first_hour = sorted((b for b in chart.bars if b.title.startswith("h1")), key=lambda b: b.x)
    assert first_hour[0].x + first_hour[0].width == pytest.approx(first_hour[1].x)


def test_an_empty_chart_has_no_bars_and_a_nonzero_scale():
    chart = charts.stacked(["a"], {"reserved": [0]})
    assert chart.bars == [] and chart.top == 1


def test_the_session_key_is_made_once_mode_0600_and_shared_by_racing_workers(tmp_path):
    path = tmp_path / "admin-secret"
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: secret_key(path), range(16)))
    assert len(keys) == 1 and len(keys.pop()) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["admin-secret"]
