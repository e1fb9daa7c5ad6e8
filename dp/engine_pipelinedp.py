"""The reference DP engine: PipelineDP's DPEngine end to end (``[privacy] engine = "pipelinedp"``).

On Spark it runs on PipelineDP's SparkRDDBackend, every row passing through Python workers; the
tests also run it on LocalBackend over plain lists. Its results are the yardstick the default
engine (``dp.engine_spark``) is checked against. With a period, the privacy id is (user_id,
period_start) and a partition is (period_start, key), so PipelineDP bounds each user per period.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from pipeline_dp import DataExtractors, DPEngine, LocalBackend, NaiveBudgetAccountant, SparkRDDBackend
from pyspark.sql import DataFrame

from dp.metrics import MetricBudget, aggregate_params
from dp.noise import MetricResult, PartitionResult, additive_mechanism, mean_parts, mean_result, middle
from lakehouse.config import MetricConfig, MetricKind, PrivacyConfig

# (privacy id, partition, value): privacy id (user_id, period_start), partition (period_start, key)
_EXTRACTORS = DataExtractors(privacy_id_extractor=lambda row: (row[0], row[1]),
                             partition_extractor=lambda row: (row[1], row[2]), value_extractor=lambda row: row[3])
# the field of PipelineDP's output that holds each kind's value
_OUTPUT_FIELD = {MetricKind.COUNT: "count", MetricKind.SUM: "sum", MetricKind.PRIVACY_ID_COUNT: "privacy_id_count",
                 MetricKind.MEAN: "mean"}


def _release(columns: list, backend: Any, metrics: tuple[MetricConfig, ...], privacy: PrivacyConfig,
             periods: list[dt.date | None]) -> list[MetricResult]:
    """columns[i]: the (user_id, period_start, key, value) collection for metrics[i]."""
    accountant = NaiveBudgetAccountant(privacy.epsilon_per_release, privacy.delta_per_release)
    engine = DPEngine(accountant, backend)
    pending = []
    for metric, col in zip(metrics, columns, strict=True):
        params = aggregate_params(metric, privacy)
        before = len(accountant.mechanism_specs)
        public = ([(p, k) for p in periods for k in metric.public_partitions]
                  if metric.public_partitions is not None else None)
        out = engine.aggregate(col, params, _EXTRACTORS, public_partitions=public)
        specs = accountant.mechanism_specs[before:]
        budget = MetricBudget(metric, params, [s for s in specs if s.name != "PartitionSelection"],
                              next((s for s in specs if s.name == "PartitionSelection"), None))
        pending.append((budget, out))
    accountant.compute_budgets()  # lazily evaluated pipelines read their budget when collected below

    results = []
    wanted = set(periods)
    for budget, out in pending:
        rows = [(part, m) for part, m in (out.collect() if hasattr(out, "collect") else list(out)) if part[0] in wanted]
        kind = budget.metric.kind
        if kind == MetricKind.MEAN:
            count_mech, sum_mech = mean_parts(budget)
            # PipelineDP returns the mean and its noisy count; the noisy normalized sum follows from them
            parts = [mean_result(budget, part, (m.mean - middle(budget)) * max(1.0, m.count), m.count,
                                 count_mech.std, sum_mech.std) for part, m in rows]
        else:
            name, std = _OUTPUT_FIELD[kind], additive_mechanism(budget).std
            parts = [PartitionResult(part[0], part[1], getattr(m, name), getattr(m, f"{name}_noise_stddev", std))
                     for part, m in rows]
        results.append(MetricResult(budget, sorted(parts, key=lambda p: (p.period_start or dt.date.min, p.key))))
    return results


def release_metrics(sessions: DataFrame, metrics: tuple[MetricConfig, ...], privacy: PrivacyConfig,
                    periods: list[dt.date | None]) -> tuple[list[MetricResult], dict[dt.date | None, int]]:
    """On a Spark DataFrame of Silver sessions (with period_start), with PipelineDP's SparkRDDBackend;
    also returns the rows read per period."""
    sc = sessions.sparkSession.sparkContext
    columns = []
    for metric in metrics:
        value_col = metric.value or "user_id"  # COUNT / PRIVACY_ID_COUNT ignore the value
        columns.append(sessions.select("user_id", "period_start", metric.group_by, value_col).rdd.map(tuple))
    rows_in = {r["period_start"]: int(r["count"]) for r in sessions.groupBy("period_start").count().collect()}
    return _release(columns, SparkRDDBackend(sc), metrics, privacy, periods), rows_in


def release_metrics_local(rows_per_metric: list[Iterable[tuple]], metrics: tuple[MetricConfig, ...],
                          privacy: PrivacyConfig, periods: list[dt.date | None] | None = None) -> list[MetricResult]:
    """On in-memory (user_id, period_start, key, value) tuples with PipelineDP's LocalBackend (tests,
    notebooks); periods defaults to [None] (period "none")."""
    return _release([list(r) for r in rows_per_metric], LocalBackend(), metrics, privacy, periods or [None])
