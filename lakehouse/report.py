"""PNG plots of Gold: the latest DP values with +-2 sigma noise error bars, and their time series.

Every plot reads at a glance on any data the pipeline accepts: y-axes are set from the values and
their +-2 sigma bands by robust quantiles (one huge sigma - a mean over a handful of rows - cannot
flatten the rest; a MEAN's band is cut to its value bounds, where the true mean lies), x-axes are
dates (periods) or whole release ids, each release kind is its own series, everything is labelled.

``--compare-raw`` adds raw-vs-DP plots computed from Silver. Raw values are not private, so those
plots go to ``<root>/_restricted/`` (never beside Gold) with a warning.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display on a scheduler or in a container
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse import catalog
from lakehouse.config import Config, MetricConfig, MetricKind, Period
from lakehouse.errors import LakehouseError
from lakehouse.log import warn
from lakehouse.schemas import ReleaseKind
from lakehouse.storage import Locations, is_url, join

SERIES_PARTITIONS = 8  # a plot with 150 countries is unreadable: show the largest ones
KIND_STYLE = {ReleaseKind.CLOSED: ("-", "o"), ReleaseKind.CONTINUAL: ("-", "."), ReleaseKind.INCREMENTAL: ("-", "o"),
              ReleaseKind.REPROCESS: ("none", "x")}


@dataclass(frozen=True)
class Point:
    release_id: int
    kind: ReleaseKind
    period_start: dt.date | None
    key: str
    value: float
    sigma: float  # of the noise; a MEAN's delta-method approximation


def gold_points(spark: SparkSession, loc: Locations, metric: MetricConfig) -> list[Point]:
    path = loc.gold_table(metric.name)
    if not catalog.table_exists(spark, path):
        return []
    df = catalog.read(spark, path)
    # MEAN has no closed-form noise_stddev; its delta-method approx_stddev draws the band instead.
    sigma = F.coalesce("noise_stddev", "approx_stddev") if "approx_stddev" in df.columns else F.col("noise_stddev")
    rows = df.select("release_id", "kind", "period_start", F.col(metric.group_by).alias("key"),
                     F.col(metric.output).alias("value"), sigma.alias("sigma")).collect()
    return [Point(r["release_id"], ReleaseKind(r["kind"]), r["period_start"], r["key"], float(r["value"]),
                  float(r["sigma"] or 0.0)) for r in rows]


def robust_limits(values: list[float], sigmas: list[float], bounds: tuple[float, float] | None = None
                  ) -> tuple[float, float]:
    """y-limits that show every value and the +-2 sigma band of the typical one: each sigma counts
    at most 3x the median sigma (a few enormous ones do not stretch the axis; their bands are cut at
    its edge), the values themselves always fit, and a MEAN stays within its bounds."""
    if not values:
        return 0.0, 1.0
    typical = sorted(sigmas)[len(sigmas) // 2] if sigmas else 0.0
    capped = [min(s, 3 * typical) for s in sigmas]
    lo = min(min(values), min(v - 2 * s for v, s in zip(values, capped, strict=True)))
    hi = max(max(values), max(v + 2 * s for v, s in zip(values, capped, strict=True)))
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        lo, hi = (lo - 1, lo + 1) if math.isfinite(lo) else (0.0, 1.0)
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


def _bounds(metric: MetricConfig) -> tuple[float, float] | None:
    if metric.kind != MetricKind.MEAN or metric.min_value is None or metric.max_value is None:
        return None
    return metric.min_value, metric.max_value


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _title(ax: Axes, text: str, note: str) -> None:
    ax.set_title(f"{text}\n{note}", fontsize=10)


def latest(points: list[Point], periodic: bool) -> list[Point]:
    """The newest value of each partition: of the latest period (periodic) or the latest release."""
    if not points:
        return []
    if periodic:
        newest_period = max(p.period_start for p in points if p.period_start)
        chosen: dict[str, Point] = {}
        for p in points:
            if p.period_start == newest_period and p.kind != ReleaseKind.REPROCESS:
                if p.key not in chosen or p.release_id > chosen[p.key].release_id:
                    chosen[p.key] = p
        return sorted(chosen.values(), key=lambda p: -p.value)
    newest_release = max(p.release_id for p in points)
    return sorted((p for p in points if p.release_id == newest_release), key=lambda p: -p.value)


def plot_latest(metric: MetricConfig, points: list[Point], periodic: bool, out: Path) -> Path:
    current = latest(points, periodic)
    keys = [p.key for p in current]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(current) + 3), 4.8))
    bounds = _bounds(metric)
    lo, hi = robust_limits([p.value for p in current], [p.sigma for p in current], bounds)
    # error bars cut to the axis: a bar whose band leaves the plot shows an arrow-free cut end
    yerr = [[min(2 * p.sigma, p.value - lo) for p in current], [min(2 * p.sigma, hi - p.value) for p in current]]
    ax.bar(range(len(current)), [p.value for p in current], yerr=yerr, capsize=3, color="tab:blue",
           label="DP value, +-2 sigma of the noise")
    ax.set_xticks(range(len(current)))
    ax.set_xticklabels(keys, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(metric.group_by)
    ax.set_ylabel(metric.output)
    ref = current[0] if current else None
    what = (f"period {ref.period_start}" if periodic and ref else f"release {ref.release_id}" if ref else "no rows")
    _title(ax, f"gold.{metric.name}: {what}", "error bars: +-2 sigma of the added noise")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, out / f"{metric.name}_latest.png")


def _largest(points: list[Point]) -> list[str]:
    totals: dict[str, list[float]] = defaultdict(list)
    for p in points:
        totals[p.key].append(p.value)
    return sorted(totals, key=lambda k: -sum(totals[k]) / len(totals[k]))[:SERIES_PARTITIONS]


def noise_dominated(metric: MetricConfig, point: Point) -> bool:
    """A MEAN whose +-2 sigma spans more than half its value range says little but "few rows"."""
    bounds = _bounds(metric)
    return bounds is not None and 2 * point.sigma > (bounds[1] - bounds[0]) / 2


def plot_series(metric: MetricConfig, points: list[Point], out: Path) -> Path:
    """One line per partition over period_start (its latest closed or continual value), a +-2 sigma
    band around it, reprocessed values as separate markers. A MEAN's noise-dominated points are
    hollow and get no band: their band would cover the whole plot and hide the others."""
    fig, ax = plt.subplots(figsize=(9, 4.8))
    keys = _largest(points)
    hollow_shown = False
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    shown_values, shown_sigmas = [], []
    for i, key in enumerate(keys):
        color = colors[i % len(colors)]
        newest: dict[dt.date, Point] = {}
        again: list[Point] = []
        for p in points:
            if p.key != key or p.period_start is None:
                continue
            if p.kind == ReleaseKind.REPROCESS:
                again.append(p)
            elif p.period_start not in newest or p.release_id > newest[p.period_start].release_id:
                newest[p.period_start] = p
        series = [newest[d] for d in sorted(newest)]
        xs: list[Any] = [p.period_start for p in series]
        ys = [p.value for p in series]
        ax.plot(xs, ys, marker="o", markersize=3, color=color, label=key)
        masked = [noise_dominated(metric, p) for p in series]
        ax.fill_between(xs, [p.value - 2 * p.sigma for p in series], [p.value + 2 * p.sigma for p in series],
                        where=[not m for m in masked], interpolate=False, color=color, alpha=0.15, linewidth=0)
        if any(masked):
            ax.plot([x for x, m in zip(xs, masked, strict=True) if m], [y for y, m in zip(ys, masked, strict=True) if m],
                    linestyle="none",
                    marker="o", markersize=6, markerfacecolor="white", color=color,
                    label=None if hollow_shown else "hollow: noise-dominated (too few rows)")
            hollow_shown = True
        if again:
            again_x: list[Any] = [p.period_start for p in again]
            ax.plot(again_x, [p.value for p in again], linestyle="none", marker="x",
                    color=color, label=f"{key} (reprocessed)")
        shown_values += ys + [p.value for p in again]
        shown_sigmas += [0.0 if m else p.sigma for p, m in zip(series, masked, strict=True)] + [p.sigma for p in again]
    ax.set_ylim(*robust_limits(shown_values, shown_sigmas, _bounds(metric)))
    ax.xaxis.set_major_locator(mdates.AutoDateLocator())
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.set_xlabel("period_start (UTC)")
    ax.set_ylabel(metric.output)
    _title(ax, f"gold.{metric.name} per period", "bands: +-2 sigma of the added noise; latest value of each period")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, out / f"{metric.name}_series.png")


def plot_history(metric: MetricConfig, points: list[Point], out: Path) -> Path:
    """Period "none": each partition across releases (whole release ids), one series per kind."""
    fig, ax = plt.subplots(figsize=(9, 4.8))
    keys = _largest(points)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, key in enumerate(keys):
        for kind in sorted({p.kind for p in points}):
            pts = sorted((p for p in points if p.key == key and p.kind == kind), key=lambda p: p.release_id)
            if not pts:
                continue
            linestyle, marker = KIND_STYLE.get(kind, ("-", "o"))
            ax.errorbar([p.release_id for p in pts], [p.value for p in pts], yerr=[2 * p.sigma for p in pts],
                        linestyle=linestyle, marker=marker, capsize=2, color=colors[i % len(colors)],
                        label=key if kind == ReleaseKind.INCREMENTAL else f"{key} ({kind})")
    ax.set_ylim(*robust_limits([p.value for p in points if p.key in keys],
                               [p.sigma for p in points if p.key in keys], _bounds(metric)))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("release_id")
    ax.set_ylabel(metric.output)
    _title(ax, f"gold.{metric.name} across releases", "error bars: +-2 sigma of the added noise")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, out / f"{metric.name}_history.png")


def _raw_values(spark: SparkSession, loc: Locations, config: Config, metric: MetricConfig,
                period_start: dt.date | None) -> dict[str, float]:
    from lakehouse.silver import period_rows

    if period_start is None:
        rows = catalog.read(spark, loc.silver_sessions)
    else:
        rows = period_rows(spark, loc.silver_sessions, catalog.latest_version(spark, loc.silver_sessions),
                           config.privacy.period, [period_start])
    value = F.col(metric.value) if metric.value else F.lit(0)
    agg = {MetricKind.COUNT: F.count(F.lit(1)), MetricKind.SUM: F.sum(value), MetricKind.MEAN: F.avg(value),
           MetricKind.PRIVACY_ID_COUNT: F.countDistinct("user_id")}[metric.kind]
    return {r[0]: float(r[1]) for r in rows.groupBy(metric.group_by).agg(agg).collect()}


def plot_raw_vs_dp(spark: SparkSession, loc: Locations, config: Config, metric: MetricConfig, points: list[Point],
                   out: Path) -> Path:
    periodic = config.privacy.period != Period.NONE
    current = latest(points, periodic)
    period_start = current[0].period_start if current else None
    raw = _raw_values(spark, loc, config, metric, period_start)
    keys = [p.key for p in current]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(keys) + 3), 5.2))
    xs = range(len(keys))
    ax.bar([x - 0.2 for x in xs], [raw.get(k, 0.0) for k in keys], width=0.4, color="tab:gray",
           label="raw from Silver (NOT private, all rows)")
    ax.bar([x + 0.2 for x in xs], [p.value for p in current], width=0.4, yerr=[2 * p.sigma for p in current],
           capsize=3, color="tab:blue", label="DP (bounded, noised), +-2 sigma")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(keys, rotation=45, ha="right", fontsize=8)
    ax.set_xlabel(metric.group_by)
    ax.set_ylabel(metric.output)
    where = f"period {period_start}" if period_start else f"release {current[0].release_id}" if current else ""
    bound = (f"contribution bounding: each user counts in at most {metric.max_partitions_contributed} "
             f"{metric.group_by} value(s), at most {metric.max_contributions_per_partition} rows each"
             + (" per period" if periodic else " per release") + " - DP below raw is that, not noise")
    _title(ax, f"RESTRICTED - raw vs DP, gold.{metric.name}, {where}", bound)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, out / f"{metric.name}_raw_vs_dp.png")


def write_report(spark: SparkSession, config: Config, loc: Locations, out_dir: str | None,
                 compare_raw: bool = False) -> list[str]:
    if out_dir is None:
        if is_url(loc.root) or not loc.root:
            raise LakehouseError("the storage root is remote: pass --out DIR for the report")
        out_dir = join(loc.root, "reports")
    if is_url(out_dir):
        raise LakehouseError(f"--out must be a local folder, got {out_dir}")
    periodic = config.privacy.period != Period.NONE
    found = {metric.name: gold_points(spark, loc, metric) for metric in config.metrics}
    if not any(found.values()):
        raise LakehouseError("no Gold results to plot yet: run `lakehouse release` first")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, restricted = [], None
    for metric in config.metrics:
        points = found[metric.name]
        if not points:
            warn(f"gold.{metric.name} has no rows yet: run `lakehouse release` first")
            continue
        written.append(str(plot_latest(metric, points, periodic, out)))
        written.append(str(plot_series(metric, points, out) if periodic else plot_history(metric, points, out)))
        if compare_raw:
            if restricted is None:
                if is_url(loc.restricted):
                    raise LakehouseError("--compare-raw writes to local disk only; run it with a local root")
                restricted = Path(loc.restricted)
                restricted.mkdir(parents=True, exist_ok=True)
                warn(f"--compare-raw plots NON-PRIVATE values from Silver; they are written to {restricted} "
                     "only. Do not share them with anyone who may not read Silver.")
            written.append(str(plot_raw_vs_dp(spark, loc, config, metric, points, restricted)))
    return written
