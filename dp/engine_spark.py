"""The default DP engine: contribution bounding and aggregation in Spark, noise by PipelineDP.

PipelineDP's SparkRDDBackend moves every row through Python. Here the rows never leave the JVM:
Spark enforces the same contribution bounds PipelineDP would (per user and partition keep at most
``max_contributions_per_partition`` rows, chosen uniformly at random; then per user keep at most
``max_partitions_contributed`` partitions, chosen uniformly at random; clamp values), aggregates
per partition, and hands PipelineDP's own mechanisms (``dp.noise``) a few numbers per partition.
The budget comes from the same NaiveBudgetAccountant requests as the reference engine
(``dp.engine_pipelinedp``), so both add noise of the same distribution.
"""

from __future__ import annotations

import functools

from pipeline_dp import NaiveBudgetAccountant
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from dp.metrics import MetricBudget, request_budgets
from dp.noise import Accumulator, MetricResult, apply_noise
from lakehouse.config import MetricConfig, PrivacyConfig


def metric_rows(sessions: DataFrame, metric: MetricConfig) -> DataFrame:
    """(user_id, key, value) for one metric; value is what gets summed after bounding:
    SUM the clamped value, MEAN the clamped value minus the middle of the bounds (PipelineDP's
    normalization), COUNT / PRIVACY_ID_COUNT nothing."""
    if metric.kind in ("SUM", "MEAN"):
        clamped = F.least(F.greatest(F.col(metric.value).cast("double"), F.lit(metric.min_value)),
                          F.lit(metric.max_value))
        value: Column = clamped - F.lit((metric.min_value + metric.max_value) / 2) if metric.kind == "MEAN" else clamped
    else:
        value = F.lit(0.0)
    rows = sessions.select("user_id", F.col(metric.group_by).alias("key"), value.alias("value"))
    if metric.public_partitions is not None:
        # As PipelineDP: rows outside the public partitions are dropped before bounding.
        rows = rows.where(F.col("key").isin(*metric.public_partitions))
    return rows


def bound_contributions(rows: DataFrame, max_partitions: int, max_per_partition: int) -> DataFrame:
    """(user_id, key, value) -> (user_id, key, count, value_sum), one row per kept (user, partition).

    Per (user, partition) a uniform random sample of at most ``max_per_partition`` rows, then per
    user a uniform random sample of at most ``max_partitions`` partitions: the order PipelineDP's
    SamplingCrossAndPerPartitionContributionBounder uses.
    """
    by_user_partition = Window.partitionBy("user_id", "key").orderBy("_r")
    per_partition = (rows.withColumn("_r", F.rand())
                     .withColumn("_n", F.row_number().over(by_user_partition))
                     .where(F.col("_n") <= max_per_partition)
                     .groupBy("user_id", "key")
                     .agg(F.count(F.lit(1)).alias("count"), F.sum("value").alias("value_sum")))
    by_user = Window.partitionBy("user_id").orderBy("_r")
    return (per_partition.withColumn("_r", F.rand())
            .withColumn("_n", F.row_number().over(by_user))
            .where(F.col("_n") <= max_partitions)
            .drop("_r", "_n"))


def partition_accumulators(bounded: DataFrame) -> DataFrame:
    """(user_id, key, count, value_sum) -> (key, count, value_sum, users)."""
    return bounded.groupBy("key").agg(F.sum("count").alias("count"), F.sum("value_sum").alias("value_sum"),
                                      F.count(F.lit(1)).alias("users"))


def collect_accumulators(sessions: DataFrame, metrics: tuple[MetricConfig, ...]) -> dict[str, dict[str, Accumulator]]:
    """metric name -> partition -> bounded totals, for all metrics in one Spark job."""
    per_metric = [
        partition_accumulators(bound_contributions(metric_rows(sessions, m), m.max_partitions_contributed,
                                                   m.max_contributions_per_partition))
        .withColumn("metric", F.lit(m.name))
        for m in metrics
    ]
    out: dict[str, dict[str, Accumulator]] = {m.name: {} for m in metrics}
    for r in functools.reduce(DataFrame.unionByName, per_metric).collect():
        out[r["metric"]][r["key"]] = Accumulator(int(r["count"]), float(r["value_sum"] or 0.0), int(r["users"]))
    return out


def release_from_accumulators(accumulators: dict[str, dict[str, Accumulator]], metrics: tuple[MetricConfig, ...],
                              privacy: PrivacyConfig) -> list[MetricResult]:
    """The DP part of a release, on the driver: one budget accountant, PipelineDP's mechanisms."""
    accountant = NaiveBudgetAccountant(privacy.epsilon_per_release, privacy.delta_per_release)
    budgets: list[MetricBudget] = request_budgets(accountant, metrics, privacy)
    accountant.compute_budgets()
    return [apply_noise(b, accumulators[b.metric.name]) for b in budgets]


def release_metrics(sessions: DataFrame, metrics: tuple[MetricConfig, ...], privacy: PrivacyConfig,
                    ) -> list[MetricResult]:
    return release_from_accumulators(collect_accumulators(sessions, metrics), metrics, privacy)
