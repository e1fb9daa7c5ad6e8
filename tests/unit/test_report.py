"""The plots read at a glance on skewed data: robust y-limits, date and integer x-axes, one series
per release kind, noise-dominated means hollow. Rendered for real (Agg), limits checked."""

from __future__ import annotations

import datetime as dt

import matplotlib.dates as mdates
import pytest

from lakehouse import report
from lakehouse.config import DEFAULT_METRICS, MetricConfig

COUNT, MEAN = DEFAULT_METRICS[0], DEFAULT_METRICS[1]
DAY = dt.date(2026, 11, 1)


@pytest.fixture
def figures(monkeypatch):
    """Every figure a plot function saves, before it is closed."""
    saved = []

    def keep(fig, path):
        saved.append(fig)
        return path
    monkeypatch.setattr(report, "_save", keep)
    return saved


def points(metric: MetricConfig, days: int = 20, kind: str = "closed") -> list[report.Point]:
    out = []
    for d in range(days):
        for i, key in enumerate(metric.public_partitions):
            value, sigma = (400.0 - 60 * i, 20.0) if metric is COUNT else (300.0 + 10 * i, 40.0)
            out.append(report.Point(1, kind, DAY + dt.timedelta(days=d), key, value, sigma))
    return out


def test_one_huge_sigma_does_not_flatten_the_latest_plot(figures, tmp_path):
    pts = points(COUNT, days=1)
    pts[-1] = report.Point(1, "closed", DAY, pts[-1].key, 3.0, 492_492.0)  # a handful of rows, enormous noise
    report.plot_latest(COUNT, pts, periodic=True, out=tmp_path)
    lo, hi = figures[0].axes[0].get_ylim()
    assert hi < 1_000 and lo > -1_000  # the typical bars fill the plot
    assert hi >= 400 and lo <= 3.0  # every value is shown
    assert figures[0].axes[0].get_ylabel() == COUNT.output and figures[0].axes[0].get_xlabel() == COUNT.group_by


def test_a_mean_series_stays_within_its_bounds_and_marks_noise_dominated_points(figures, tmp_path):
    pts = points(MEAN)
    pts[3] = report.Point(1, "closed", pts[3].period_start, pts[3].key, 3600.0, 50_000.0)
    report.plot_series(MEAN, pts, tmp_path)
    ax = figures[0].axes[0]
    lo, hi = ax.get_ylim()
    assert lo >= MEAN.min_value - 0.06 * 3600 and hi <= MEAN.max_value + 0.06 * 3600
    labels = ax.get_legend_handles_labels()[1]
    assert "hollow: noise-dominated (too few rows)" in labels
    # the x-axis is dates (the periods), not release numbers
    assert isinstance(ax.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)
    first, last = ax.get_xlim()
    assert mdates.num2date(first).date() <= DAY and mdates.num2date(last).date() >= DAY + dt.timedelta(days=19)


def test_reprocessed_values_are_their_own_series(figures, tmp_path):
    pts = points(COUNT, days=5) + [report.Point(2, "reprocess", DAY + dt.timedelta(days=2), "Africa", 350.0, 20.0)]
    report.plot_series(COUNT, pts, tmp_path)
    labels = figures[0].axes[0].get_legend_handles_labels()[1]
    assert "Africa (reprocessed)" in labels and labels.count("Africa") == 1


def test_the_history_across_releases_has_whole_release_ids(figures, tmp_path):
    pts = [report.Point(r, "incremental" if r < 4 else "reprocess", None, key, 100.0 + r, 5.0)
           for r in range(1, 6) for key in COUNT.public_partitions[:2]]
    report.plot_history(COUNT, pts, tmp_path)
    ax = figures[0].axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    labels = ax.get_legend_handles_labels()[1]
    assert f"{COUNT.public_partitions[0]} (reprocess)" in labels


def test_robust_limits_ignore_a_few_extreme_bands_but_show_every_value():
    values, sigmas = [100.0] * 40 + [-5.0], [10.0] * 40 + [1e6]
    lo, hi = report.robust_limits(values, sigmas)
    assert -200 < lo <= -5.0 and 120 <= hi < 300
    assert report.robust_limits([5.0], [0.0]) == pytest.approx((3.9, 6.1), rel=0.05)
    assert report.robust_limits([], []) == (0.0, 1.0)
