"""The default DP engine: contribution bounding and aggregation in Spark, noise by PipelineDP.

PipelineDP's SparkRDDBackend moves every row through Python. Here the rows never leave the JVM,
and all metrics share one pass: the release's rows are grouped once per privacy unit - the user,
or (user, period) when the privacy unit has a period - and for every metric Spark enforces the
contribution bounds PipelineDP would enforce per unit -

* drop rows outside the public partitions (if the metric has them),
* keep at most ``max_partitions_contributed`` of the unit's partitions, chosen uniformly at random,
* in each kept partition count at most ``max_contributions_per_partition`` of the unit's rows,
  with values clamped to ``[min_value, max_value]``: a unit with n rows there over that cap k
  contributes k rows and k times the mean of its n clamped values

- then sums per partition, a partition being (period_start, key). PipelineDP's own mechanisms
(``dp.noise``) turn those few numbers per partition into DP results, with the budget from the same
NaiveBudgetAccountant requests as the reference engine (``dp.engine_pipelinedp``), so both add noise
of the same distribution. (PipelineDP samples rows per partition first and partitions second; both
samples are uniform and independent, so the order does not change the distribution.)

Rows over the cap: PipelineDP keeps a uniform random sample of k of the n rows; this engine keeps
k times their mean, which is that sample's expected sum. The bound is the same (k rows, each value
within its bounds: at most k * max |v|, the sensitivity both engines' noise is scaled to), and it
adds no sampling variance; it needs no sort of the rows, which the sample took (~1 s of a 1M-row
release, measured).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from dp.metrics import MetricBudget
from dp.noise import Accumulator, MetricResult, Partition, apply_noise
from lakehouse.config import MetricConfig, MetricKind

ALL_ROWS = -1  # the metric index of the pseudo-metric that counts every row read (rows_in)


def metric_value(metric: MetricConfig) -> Column:
    """What gets summed after bounding: SUM the clamped value, MEAN the clamped value minus the
    middle of the bounds (PipelineDP's normalization), COUNT / PRIVACY_ID_COUNT nothing."""
    if not metric.kind.has_value:
        return F.lit(0.0)
    # config validation guarantees a value column and both bounds for SUM and MEAN
    assert metric.value is not None and metric.min_value is not None and metric.max_value is not None, metric
    clamped = F.least(F.greatest(F.col(metric.value).cast("double"), F.lit(metric.min_value)), F.lit(metric.max_value))
    return clamped - F.lit((metric.min_value + metric.max_value) / 2) if metric.kind == MetricKind.MEAN else clamped


def _per_metric(metrics: tuple[MetricConfig, ...], value: Callable[[MetricConfig], int]) -> Column:
    """A per-row bound chosen by the row's metric index ``m``; no bound for the ALL_ROWS count."""
    bounds = F.element_at(F.array(*[F.lit(value(m)) for m in metrics]), F.col("m") + 1)
    return F.when(F.col("m") == ALL_ROWS, F.lit(2**62)).otherwise(bounds)


def privacy_unit() -> Column:
    """The privacy unit as a 64-bit hash of (user_id, period_start): shuffles and sorts on a long are
    ~2x faster than on the 64-character pseudonym (measured). A collision (p ~ n^2 / 2^65: ~1e-8 for
    a million units) merges two units into one, whose contributions are then bounded jointly -
    fewer contributions, never more, so the sensitivity and the guarantee are unchanged."""
    return F.xxhash64("user_id", "period_start")


# Rows of the release per task of its shuffle by unit: each task's aggregation and sort then hold
# a bounded share, however large the release (a 10M-row release in 8 tasks took the JVM to its 2 GB
# heap, peak RSS 2.5 GB and 87 s; in 64 tasks 1.3 GB and 65 s, measured).
ROWS_PER_TASK = 150_000


def unit_partitions(sessions: DataFrame, expected_rows: int) -> int:
    """Tasks for the shuffle by unit: Spark's shuffle partitions, or more for a large release."""
    configured = int(sessions.sparkSession.conf.get("spark.sql.shuffle.partitions") or 200)
    return max(configured, -(-expected_rows // ROWS_PER_TASK))


def bounded_contributions(sessions: DataFrame, metrics: tuple[MetricConfig, ...], expected_rows: int = 0) -> DataFrame:
    """Sessions (with ``period_start``, null for period "none") -> (unit, period_start, m, key, count,
    value_sum): one row per kept (unit, metric, partition), m the metric's index in ``metrics``; and
    one row per unit with m = ALL_ROWS counting all of its rows, unbounded (the exact rows_in).

    The rows are shuffled by unit once; everything after runs within those partitions:

    * rows outside a metric's public partitions are dropped before bounding, as PipelineDP does;
    * per (unit, partition) at most ``max_contributions_per_partition`` rows: the count is capped,
      and the sum of values scaled to the capped count (k rows at the mean of the unit's n);
    * per unit at most ``max_partitions_contributed`` partitions, uniformly at random.

    Every metric's rows go through one exploded pipeline (one row per session and metric), so the
    session rows are scanned and shuffled once for all metrics (measured, 1M rows and the three
    default metrics: 5 s, against 8 s for a shuffled checkpoint scanned once per metric).
    """
    columns = sorted({m.group_by for m in metrics} | {m.value for m in metrics if m.value})
    rows = (sessions.select(privacy_unit().alias("unit"), "period_start", *columns)
            .repartition(unit_partitions(sessions, expected_rows), "unit"))
    entries = [F.struct(F.lit(ALL_ROWS).alias("m"), F.lit(None).cast("string").alias("key"), F.lit(0.0).alias("value"))]
    for i, m in enumerate(metrics):
        entry = F.struct(F.lit(i).alias("m"), F.col(m.group_by).alias("key"), metric_value(m).alias("value"))
        entries.append(entry if m.public_partitions is None else
                       F.when(F.col(m.group_by).isin(*m.public_partitions), entry))
    cap = _per_metric(metrics, lambda m: m.max_contributions_per_partition)
    per_partition = (rows.select("unit", "period_start", F.explode(F.array(*entries)).alias("e"))
                     .where(F.col("e").isNotNull()).select("unit", "period_start", "e.*")
                     .groupBy("unit", "period_start", "m", "key")
                     .agg(F.count(F.lit(1)).alias("rows"), F.sum("value").alias("value_sum"))
                     .withColumn("count", F.least("rows", cap))
                     .withColumn("value_sum", F.when(F.col("rows") > F.col("count"),
                                                     F.col("value_sum") * F.col("count") / F.col("rows"))
                                 .otherwise(F.col("value_sum")))  # x * n / n can be x plus an ulp
                     .drop("rows"))
    # The window's sort leads with a hash of (unit, m): rows of a unit, one per metric and partition,
    # then differ in the sort's 8-byte prefix, and only a unit's several partitions of one metric
    # need a full comparison (sorted by unit first, every row of a unit did: 0.5 s of ~2 s, measured).
    by_unit_metric = Window.partitionBy("_g", "unit", "m").orderBy("_r")
    return (per_partition.withColumn("_g", F.xxhash64("unit", "m")).withColumn("_r", F.rand())
            .withColumn("_n", F.row_number().over(by_unit_metric))
            .where(F.col("_n") <= _per_metric(metrics, lambda m: m.max_partitions_contributed))
            .drop("_g", "_r", "_n"))


def accumulators_frame(sessions: DataFrame, metrics: tuple[MetricConfig, ...], expected_rows: int = 0) -> DataFrame:
    """(m, period_start, key, count, value_sum, users) for every metric's partitions, and per period
    the ALL_ROWS total."""
    return (bounded_contributions(sessions, metrics, expected_rows).groupBy("m", "period_start", "key")
            .agg(F.sum("count").alias("count"), F.sum("value_sum").alias("value_sum"),
                 F.count(F.lit(1)).alias("users")))


Accumulators = dict[str, dict[Partition, Accumulator]]  # metric name -> partition -> bounded totals


def collect_accumulators(sessions: DataFrame, metrics: tuple[MetricConfig, ...], expected_rows: int = 0
                         ) -> tuple[Accumulators, dict[dt.date | None, int]]:
    """Bounded totals per metric and partition, and the rows read per period: one Spark job."""
    out: Accumulators = {m.name: {} for m in metrics}
    rows_in: dict[dt.date | None, int] = {}
    for r in accumulators_frame(sessions, metrics, expected_rows).collect():
        if r["m"] == ALL_ROWS:
            rows_in[r["period_start"]] = int(r["count"])
        else:
            out[metrics[r["m"]].name][(r["period_start"], r["key"])] = Accumulator(
                int(r["count"]), float(r["value_sum"] or 0.0), int(r["users"]))
    return out, rows_in


def release_metrics(sessions: DataFrame, budgets: list[MetricBudget], periods: list[dt.date | None],
                    expected_rows: int = 0) -> tuple[list[MetricResult], dict[dt.date | None, int]]:
    """DP results of every metric for `periods` (Spark bounds and sums, PipelineDP adds noise on the
    driver), and the exact rows read per period. `expected_rows`, an estimate of the rows in
    `sessions`, sizes the shuffle (unit_partitions)."""
    accumulators, rows_in = collect_accumulators(sessions, tuple(b.metric for b in budgets), expected_rows)
    return [apply_noise(b, accumulators[b.metric.name], periods) for b in budgets], rows_in
