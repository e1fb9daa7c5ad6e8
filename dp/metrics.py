"""Metric specs from config: PipelineDP parameters and the split of a release's budget.

Both engines (``dp.engine_spark`` and ``dp.engine_pipelinedp``) take their privacy parameters from
here, and both request budget from one ``NaiveBudgetAccountant`` in exactly the order PipelineDP's
DPEngine does, so a metric gets the same epsilon/delta - and the same noise - from either engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline_dp import AggregateParams, Metrics, NaiveBudgetAccountant, NoiseKind, PartitionSelectionStrategy
from pipeline_dp.budget_accounting import MechanismSpec

from lakehouse.config import MetricConfig, MetricKind, PartitionSelection, PrivacyConfig
from lakehouse.config import NoiseKind as ConfigNoiseKind
from lakehouse.errors import LakehouseError

PIPELINE_DP_METRIC = {
    MetricKind.COUNT: Metrics.COUNT,
    MetricKind.SUM: Metrics.SUM,
    MetricKind.MEAN: Metrics.MEAN,
    MetricKind.PRIVACY_ID_COUNT: Metrics.PRIVACY_ID_COUNT,
}
PIPELINE_DP_NOISE = {ConfigNoiseKind.LAPLACE: NoiseKind.LAPLACE, ConfigNoiseKind.GAUSSIAN: NoiseKind.GAUSSIAN}
PIPELINE_DP_SELECTION = {
    PartitionSelection.TRUNCATED_GEOMETRIC: PartitionSelectionStrategy.TRUNCATED_GEOMETRIC,
    PartitionSelection.LAPLACE_THRESHOLDING: PartitionSelectionStrategy.LAPLACE_THRESHOLDING,
    PartitionSelection.GAUSSIAN_THRESHOLDING: PartitionSelectionStrategy.GAUSSIAN_THRESHOLDING,
}


def aggregate_params(metric: MetricConfig, privacy: PrivacyConfig) -> AggregateParams:
    """PipelineDP's AggregateParams for one metric; raises LakehouseError naming the metric."""
    metrics = [PIPELINE_DP_METRIC[metric.kind]]
    if metric.kind == MetricKind.MEAN:
        metrics.append(Metrics.COUNT)  # the mean's own noisy count: no extra budget, used for error bars
    try:
        return AggregateParams(
            metrics=metrics,
            noise_kind=PIPELINE_DP_NOISE[privacy.noise_kind],
            max_partitions_contributed=metric.max_partitions_contributed,
            max_contributions_per_partition=metric.max_contributions_per_partition,
            min_value=metric.min_value,
            max_value=metric.max_value,
            budget_weight=metric.share,
            partition_selection_strategy=PIPELINE_DP_SELECTION[privacy.partition_selection],
            pre_threshold=metric.pre_threshold,
            output_noise_stddev=True,
        )
    except (ValueError, TypeError) as exc:
        raise LakehouseError(f"metric {metric.name}: PipelineDP rejects its parameters: {exc}") from exc


def validate(metrics: tuple[MetricConfig, ...], privacy: PrivacyConfig) -> None:
    """All PipelineDP parameter checks, before any Spark work."""
    for metric in metrics:
        aggregate_params(metric, privacy)
    try:
        NaiveBudgetAccountant(privacy.epsilon_per_release, privacy.delta_per_release)
    except ValueError as exc:
        raise LakehouseError(f"[privacy]: {exc}") from exc


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
            names = ["MeanCount", "MeanSum"] if metric.kind == MetricKind.MEAN else [metric.kind.title()]
            noise = [accountant.request_budget(mechanism, name=n, weight=params.budget_weight) for n in names]
            selection = None
            if metric.public_partitions is None:
                selection = accountant.request_budget(params.partition_selection_strategy.mechanism_type,
                                                      name="PartitionSelection")
        budgets.append(MetricBudget(metric, params, noise, selection))
    return budgets


def metric_budgets(metrics: tuple[MetricConfig, ...], privacy: PrivacyConfig) -> list[MetricBudget]:
    """Every metric's share of one release's (or, per period, one period's) epsilon and delta."""
    accountant = NaiveBudgetAccountant(privacy.epsilon_per_release, privacy.delta_per_release)
    budgets = request_budgets(accountant, metrics, privacy)
    accountant.compute_budgets()
    return budgets
