"""The reference DP engine: PipelineDP's DPEngine end to end (``[privacy] engine = "pipelinedp"``).

On Spark it runs on PipelineDP's SparkRDDBackend, every row passing through Python workers; the
tests also run it on LocalBackend over plain lists. Its results are the yardstick the default
engine (``dp.engine_spark``) is checked against.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline_dp import DataExtractors, DPEngine, LocalBackend, NaiveBudgetAccountant, SparkRDDBackend

from dp.metrics import MetricBudget, aggregate_params
from dp.noise import MetricResult, PartitionResult, mean_result, value_noise_stddev
from lakehouse.config import MetricConfig, PrivacyConfig

_EXTRACTORS = DataExtractors(privacy_id_extractor=lambda row: row[0], partition_extractor=lambda row: row[1],
                             value_extractor=lambda row: row[2])
_OUTPUT_NAME = {"COUNT": "count", "SUM": "sum", "PRIVACY_ID_COUNT": "privacy_id_count", "MEAN": "mean"}


def _release(columns: list, backend, metrics: tuple[MetricConfig, ...], privacy: PrivacyConfig) -> list[MetricResult]:
    """columns[i]: the (user_id, key, value) collection for metrics[i]."""
    accountant = NaiveBudgetAccountant(privacy.epsilon_per_release, privacy.delta_per_release)
    engine = DPEngine(accountant, backend)
    pending = []
    for metric, col in zip(metrics, columns):
        params = aggregate_params(metric, privacy)
        before = len(accountant.mechanism_specs)
        out = engine.aggregate(col, params, _EXTRACTORS, public_partitions=
                               list(metric.public_partitions) if metric.public_partitions is not None else None)
        specs = accountant.mechanism_specs[before:]
        budget = MetricBudget(metric, params, [s for s in specs if s.name != "PartitionSelection"],
                              next((s for s in specs if s.name == "PartitionSelection"), None))
        pending.append((budget, out))
    accountant.compute_budgets()  # lazily evaluated pipelines read their budget when collected below

    results = []
    for budget, out in pending:
        rows = out.collect() if hasattr(out, "collect") else list(out)
        name = _OUTPUT_NAME[budget.metric.kind]
        if budget.metric.kind == "MEAN":
            parts = [mean_result(budget, key, m.mean, m.count) for key, m in rows]
        else:
            std = value_noise_stddev(budget)
            parts = [PartitionResult(key, getattr(m, name), getattr(m, f"{name}_noise_stddev", std)) for key, m in rows]
        results.append(MetricResult(budget, sorted(parts, key=lambda p: p.key)))
    return results


def release_metrics(sessions, metrics: tuple[MetricConfig, ...], privacy: PrivacyConfig
                    ) -> tuple[list[MetricResult], int]:
    """On a Spark DataFrame of Silver sessions, with PipelineDP's SparkRDDBackend; also returns the
    number of rows."""
    sc = sessions.sparkSession.sparkContext
    columns = []
    for metric in metrics:
        value_col = metric.value or "user_id"  # COUNT / PRIVACY_ID_COUNT ignore the value
        columns.append(sessions.select("user_id", metric.group_by, value_col).rdd.map(tuple))
    return _release(columns, SparkRDDBackend(sc), metrics, privacy), sessions.count()


def release_metrics_local(rows_per_metric: list[Iterable[tuple]], metrics: tuple[MetricConfig, ...],
                          privacy: PrivacyConfig) -> list[MetricResult]:
    """On in-memory (user_id, key, value) tuples with PipelineDP's LocalBackend (tests, notebooks)."""
    return _release([list(r) for r in rows_per_metric], LocalBackend(), metrics, privacy)
