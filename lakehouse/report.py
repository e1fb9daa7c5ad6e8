"""PNG plots of Gold: the latest DP values with +-2 sigma noise error bars, and their history.

``--compare-raw`` adds raw-vs-DP plots computed from Silver. Raw values are not private, so those
plots go to ``<root>/_restricted/`` (never beside Gold) with a warning.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on a scheduler or in a container
import matplotlib.pyplot as plt  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from lakehouse import catalog  # noqa: E402
from lakehouse.config import Config, MetricConfig  # noqa: E402
from lakehouse.errors import LakehouseError  # noqa: E402
from lakehouse.log import warn  # noqa: E402
from lakehouse.storage import Locations, is_url, join  # noqa: E402

HISTORY_PARTITIONS = 8  # a history plot with 150 countries is unreadable: show the largest ones


def _sigma(row) -> float:
    return float(row["sigma"] or 0.0)


def _gold_rows(spark: SparkSession, loc: Locations, metric: MetricConfig) -> list:
    path = loc.gold_table(metric.name)
    if not catalog.is_delta_table(spark, path):
        return []
    df = spark.read.format("delta").load(path)
    # MEAN has no closed-form noise_stddev; its delta-method approx_stddev draws the error bar instead.
    sigma = F.coalesce(F.col("noise_stddev"), F.col("approx_stddev")) if "approx_stddev" in df.columns \
        else F.col("noise_stddev")
    return df.select("release_id", F.col(metric.group_by).alias("key"), F.col(metric.output).alias("value"),
                     sigma.alias("sigma")).orderBy("release_id").collect()


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bar(ax, keys, values, sigmas, label, offset=0.0, width=0.8):
    xs = [i + offset for i in range(len(keys))]
    ax.bar(xs, values, width=width, yerr=[2 * s for s in sigmas], capsize=3, label=label)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys, rotation=45, ha="right")


def plot_latest(metric: MetricConfig, rows: list, out: Path) -> Path:
    latest = max(r["release_id"] for r in rows)
    current = sorted((r for r in rows if r["release_id"] == latest), key=lambda r: -r["value"])
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(current) + 3), 4.5))
    _bar(ax, [r["key"] for r in current], [r["value"] for r in current], [_sigma(r) for r in current], "DP value")
    ax.set_title(f"gold.{metric.name}, release {latest}\nerror bars: +-2 sigma of the added noise")
    ax.set_ylabel(metric.output)
    return _save(fig, out / f"{metric.name}_latest.png")


def plot_history(metric: MetricConfig, rows: list, out: Path) -> Path:
    series: dict[str, list] = defaultdict(list)
    for r in rows:
        series[r["key"]].append(r)
    largest = sorted(series, key=lambda k: -max(r["value"] for r in series[k]))[:HISTORY_PARTITIONS]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key in largest:
        pts = sorted(series[key], key=lambda r: r["release_id"])
        xs = [r["release_id"] for r in pts]
        ys = [r["value"] for r in pts]
        ax.errorbar(xs, ys, yerr=[2 * _sigma(r) for r in pts], marker="o", capsize=3, label=key)
    ax.set_xlabel("release_id")
    ax.set_ylabel(metric.output)
    ax.set_title(f"gold.{metric.name} across releases (+-2 sigma)")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, out / f"{metric.name}_history.png")


def _raw_values(spark: SparkSession, loc: Locations, metric: MetricConfig, version_from: int,
                version_to: int) -> dict[str, float]:
    from dp.release import silver_increment

    rows = silver_increment(spark, loc.silver_sessions, version_from, version_to)
    agg = {"COUNT": F.count(F.lit(1)), "SUM": F.sum(metric.value or "num_pageviews"),
           "MEAN": F.avg(metric.value or "num_pageviews"), "PRIVACY_ID_COUNT": F.countDistinct("user_id")}[metric.kind]
    return {r[0]: float(r[1]) for r in rows.groupBy(metric.group_by).agg(agg).collect()}


def plot_raw_vs_dp(spark: SparkSession, loc: Locations, metric: MetricConfig, rows: list, out: Path) -> Path | None:
    latest = max(r["release_id"] for r in rows)
    ledger = (spark.read.format("delta").load(loc.privacy_ledger)
              .where((F.col("release_id") == latest) & (F.col("metric") == metric.name)).first())
    if ledger is None:
        return None
    raw = _raw_values(spark, loc, metric, ledger["silver_version_from"], ledger["silver_version_to"])
    current = sorted((r for r in rows if r["release_id"] == latest), key=lambda r: -r["value"])
    keys = [r["key"] for r in current]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(keys) + 3), 4.5))
    _bar(ax, keys, [raw.get(k, 0.0) for k in keys], [0.0] * len(keys), "raw (NOT private)", offset=-0.2, width=0.4)
    _bar(ax, keys, [r["value"] for r in current], [_sigma(r) for r in current], "DP", offset=0.2, width=0.4)
    ax.set_title(f"RESTRICTED - raw vs DP, gold.{metric.name} release {latest}")
    ax.legend()
    return _save(fig, out / f"{metric.name}_raw_vs_dp.png")


def write_report(spark: SparkSession, config: Config, loc: Locations, out_dir: str | None,
                 compare_raw: bool = False) -> list[str]:
    if out_dir is None:
        if is_url(loc.root) or not loc.root:
            raise LakehouseError("the storage root is remote: pass --out DIR for the report")
        out_dir = join(loc.root, "reports")
    if is_url(out_dir):
        raise LakehouseError(f"--out must be a local folder, got {out_dir}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    restricted = None
    for metric in config.metrics:
        rows = _gold_rows(spark, loc, metric)
        if not rows:
            warn(f"gold.{metric.name} has no rows yet: run `lakehouse release` first")
            continue
        written.append(str(plot_latest(metric, rows, out)))
        written.append(str(plot_history(metric, rows, out)))
        if compare_raw:
            if restricted is None:
                if is_url(loc.restricted):
                    raise LakehouseError("--compare-raw writes to local disk only; run it with a local root")
                restricted = Path(loc.restricted)
                restricted.mkdir(parents=True, exist_ok=True)
                warn(f"--compare-raw plots NON-PRIVATE values from Silver; they are written to {restricted} "
                     "only. Do not share them with anyone who may not read Silver.")
            path = plot_raw_vs_dp(spark, loc, metric, rows, restricted)
            if path:
                written.append(str(path))
    if not written:
        raise LakehouseError("no Gold results to plot yet: run `lakehouse release` first")
    return written
