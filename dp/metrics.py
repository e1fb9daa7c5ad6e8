"""Metric specs from config: PipelineDP parameters, Gold table schemas, and the per-release budget.

Both engines (``dp.engine_spark`` and ``dp.engine_pipelinedp``) take their privacy parameters from
here, and both request budget from one ``NaiveBudgetAccountant`` in exactly the order PipelineDP's
DPEngine does, so a metric gets the same epsilon/delta - and the same noise - from either engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline_dp import AggregateParams, Metrics, NaiveBudgetAccountant, NoiseKind, PartitionSelectionStrategy
from pipeline_dp.budget_accounting import MechanismSpec
from pyspark.sql import types as T

from lakehouse.config import MetricConfig, PrivacyConfig
from lakehouse.errors import LakehouseError

PIPELINE_DP_METRIC = {
    "COUNT": Metrics.COUNT,
    "SUM": Metrics.SUM,
    "MEAN": Metrics.MEAN,
    "PRIVACY_ID_COUNT": Metrics.PRIVACY_ID_COUNT,
}
NOISE_KIND = {"laplace": NoiseKind.LAPLACE, "gaussian": NoiseKind.GAUSSIAN}
SELECTION = {
    "truncated_geometric": PartitionSelectionStrategy.TRUNCATED_GEOMETRIC,
    "laplace_thresholding": PartitionSelectionStrategy.LAPLACE_THRESHOLDING,
    "gaussian_thresholding": PartitionSelectionStrategy.GAUSSIAN_THRESHOLDING,
}


def aggregate_params(metric: MetricConfig, privacy: PrivacyConfig) -> AggregateParams:
    """PipelineDP's AggregateParams for one metric; raises LakehouseError naming the metric."""
    metrics = [PIPELINE_DP_METRIC[metric.kind]]
    if metric.kind == "MEAN":
        metrics.append(Metrics.COUNT)  # the mean's own noisy count: no extra budget, used for error bars
    try:
        return AggregateParams(
            metrics=metrics,
            noise_kind=NOISE_KIND[privacy.noise_kind],
            max_partitions_contributed=metric.max_partitions_contributed,
            max_contributions_per_partition=metric.max_contributions_per_partition,
            min_value=metric.min_value,
            max_value=metric.max_value,
            budget_weight=metric.share,
            partition_selection_strategy=SELECTION[privacy.partition_selection],
            pre_threshold=metric.pre_threshold,
            output_noise_stddev=True,
        )
    except (ValueError, TypeError) as exc:
        raise LakehouseError(f"metric {metric.name}: PipelineDP rejects its parameters: {exc}") from None


def validate(metrics: tuple[MetricConfig, ...], privacy: PrivacyConfig) -> None:
    """All PipelineDP parameter checks, before any Spark work."""
    for metric in metrics:
        aggregate_params(metric, privacy)
    try:
        NaiveBudgetAccountant(privacy.epsilon_per_release, privacy.delta_per_release)
    except ValueError as exc:
        raise LakehouseError(f"[privacy]: {exc}") from None


@dataclass
class MetricBudget:
    """The mechanism specs one metric requested; filled with epsilon/delta by compute_budgets()."""

    metric: MetricConfig
    params: AggregateParams
    noise: list[MechanismSpec]  # COUNT/SUM/PRIVACY_ID_COUNT: [value]; MEAN: [count, normalized sum]
    selection: MechanismSpec | None  # private partition selection, if no public partitions

    @property
    def specs(self) -> list[MechanismSpec]:
        return self.noise + ([self.selection] if self.selection else [])

    @property
    def epsilon(self) -> float:
        return sum(s.eps for s in self.specs)

    @property
    def delta(self) -> float:
        return sum(s.delta or 0.0 for s in self.specs)


def request_budgets(accountant: NaiveBudgetAccountant, metrics: tuple[MetricConfig, ...],
                    privacy: PrivacyConfig) -> list[MetricBudget]:
    """Mirrors DPEngine.aggregate: per metric a scope of weight `share`; inside it the combiner's
    mechanisms (weight `share` each), then partition selection (weight 1)."""
    budgets = []
    for metric in metrics:
        params = aggregate_params(metric, privacy)
        mechanism = params.noise_kind.convert_to_mechanism_type()
        with accountant.scope(weight=params.budget_weight):
            names = ["MeanCount", "MeanSum"] if metric.kind == "MEAN" else [metric.kind.title()]
            noise = [accountant.request_budget(mechanism, name=n, weight=params.budget_weight) for n in names]
            selection = None
            if metric.public_partitions is None:
                selection = accountant.request_budget(params.partition_selection_strategy.mechanism_type,
                                                      name="PartitionSelection")
        budgets.append(MetricBudget(metric, params, noise, selection))
    return budgets


# ------------------------------------------------------------------------------------------
# Gold tables


def gold_schema(metric: MetricConfig) -> T.StructType:
    fields = [
        T.StructField("release_id", T.LongType(), False),
        T.StructField("silver_version", T.LongType(), False),
        T.StructField(metric.group_by, T.StringType(), False),
        T.StructField(metric.output, T.DoubleType(), False),
        # Standard deviation of the noise added to the value, from the mechanism's parameters;
        # null for MEAN (a ratio of two noisy values has no closed form).
        T.StructField("noise_stddev", T.DoubleType(), True),
    ]
    if metric.kind == "MEAN":
        fields += [
            T.StructField("dp_count", T.DoubleType(), False),  # the mean's own noisy denominator
            # Delta-method approximation of the mean's noise, from DP outputs only (post-processing).
            T.StructField("approx_stddev", T.DoubleType(), False),
        ]
    fields += [
        T.StructField("epsilon", T.DoubleType(), False),
        T.StructField("delta", T.DoubleType(), False),
        T.StructField("released_at", T.TimestampType(), False),
    ]
    return T.StructType(fields)


LEDGER_SCHEMA = T.StructType([
    T.StructField("release_id", T.LongType(), False),
    T.StructField("kind", T.StringType(), False),  # incremental | reprocess
    T.StructField("metric", T.StringType(), False),
    T.StructField("epsilon", T.DoubleType(), False),
    T.StructField("delta", T.DoubleType(), False),
    T.StructField("silver_version_from", T.LongType(), False),
    T.StructField("silver_version_to", T.LongType(), False),
    T.StructField("rows_in", T.LongType(), True),
    T.StructField("released_at", T.TimestampType(), False),
    T.StructField("noise_kind", T.StringType(), False),
    T.StructField("engine", T.StringType(), False),
])
