"""The DP mechanisms of a metric, built by PipelineDP from its budget, and the per-partition results.

Everything here works on a handful of per-partition numbers on the driver; nothing touches rows.
A partition is (period_start, key): with a period, every period's partitions are released together
in one mechanism call each, its privacy unit being (user, period).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from pipeline_dp import dp_computations as dpc
from pipeline_dp import partition_selection

from dp.metrics import MetricBudget
from lakehouse.config import MetricKind

Partition = tuple[dt.date | None, str]  # (period_start, key); period_start None with period "none"


@dataclass(frozen=True)
class PartitionResult:
    period_start: dt.date | None
    key: str
    value: float
    noise_stddev: float | None  # of the noise added to value; None for MEAN
    dp_count: float | None = None  # MEAN: the noisy denominator
    approx_stddev: float | None = None  # MEAN: delta-method approximation (post-processing)


@dataclass
class MetricResult:
    budget: MetricBudget
    partitions: list[PartitionResult]


@dataclass(frozen=True)
class Accumulator:
    """Per-partition totals after contribution bounding."""

    count: int = 0  # contributions (rows)
    value_sum: float = 0.0  # SUM: sum of clamped values; MEAN: sum of (clamped value - middle)
    users: int = 0  # privacy units

    def true_value(self, kind: MetricKind) -> float:
        """What COUNT, SUM and PRIVACY_ID_COUNT release (MEAN uses count and value_sum)."""
        return {MetricKind.COUNT: self.count, MetricKind.SUM: self.value_sum,
                MetricKind.PRIVACY_ID_COUNT: self.users}[kind]


def sensitivities(budget: MetricBudget) -> dpc.Sensitivities:
    """Per privacy unit: L0 partitions, Linf per partition (PipelineDP's rules)."""
    params, kind = budget.params, budget.metric.kind
    if kind == MetricKind.SUM:
        return dpc.compute_sensitivities_for_sum(params)
    if kind == MetricKind.PRIVACY_ID_COUNT:
        return dpc.compute_sensitivities_for_privacy_id_count(params)
    return dpc.compute_sensitivities_for_count(params)


def scaled(sens: dpc.Sensitivities, levels: int) -> dpc.Sensitivities:
    """The sensitivities of a tree of `levels` levels over the same unit: each level's nodes
    partition the leaves, so L1 adds up over levels and L2 adds up in squares."""
    return dpc.Sensitivities(l1=levels * sens.l1, l2=math.sqrt(levels) * sens.l2)


def additive_mechanism(budget: MetricBudget, levels: int = 1) -> dpc.AdditiveMechanism:
    """COUNT / SUM / PRIVACY_ID_COUNT: the one additive mechanism (of a tree's node, if levels > 1)."""
    return dpc.create_additive_mechanism(budget.noise[0], scaled(sensitivities(budget), levels))


def mean_parts(budget: MetricBudget, levels: int = 1) -> tuple[dpc.AdditiveMechanism, dpc.AdditiveMechanism]:
    """MEAN: the count and the normalized-sum mechanisms, each with its half of the metric's budget."""
    params = budget.params
    count_sens = scaled(dpc.compute_sensitivities_for_count(params), levels)
    sum_sens = scaled(dpc.compute_sensitivities_for_normalized_sum(params), levels)
    return (dpc.create_additive_mechanism(budget.noise[0], count_sens),
            dpc.create_additive_mechanism(budget.noise[1], sum_sens))


def middle(budget: MetricBudget) -> float:
    return dpc.compute_middle(budget.params.min_value, budget.params.max_value)


def mean_result(budget: MetricBudget, partition: Partition, dp_normalized_sum: float, dp_count: float,
                count_std: float, sum_std: float) -> PartitionResult:
    """Post-processing of a noisy count and normalized sum into a DP mean, as PipelineDP's
    MeanMechanism does (denominator at least 1), clamped to the value bounds (the true mean lies
    within them), with the delta method's approximation of its noise from DP outputs only."""
    params = budget.params
    denominator = max(1.0, dp_count)
    dp_mean = middle(budget) + dp_normalized_sum / denominator
    approx = math.sqrt(sum_std ** 2 + (dp_mean - middle(budget)) ** 2 * count_std ** 2) / denominator
    clamped = min(max(dp_mean, params.min_value), params.max_value)
    return PartitionResult(partition[0], partition[1], clamped, None, dp_count=dp_count, approx_stddev=approx)


def release_partitions(budget: MetricBudget, accumulators: dict[Partition, Accumulator],
                       periods: list[dt.date | None]) -> list[Partition]:
    """The partitions to publish: every public key in every period, or those DP partition selection
    keeps among the ones with data (per (period, key), counting privacy units)."""
    metric, params = budget.metric, budget.params
    if metric.public_partitions is not None:
        return [(p, k) for p in periods for k in metric.public_partitions]
    spec = budget.selection
    assert spec is not None, budget.metric.name  # request_budgets asks for it when there are no public partitions
    selector = partition_selection.create_partition_selection_strategy(
        params.partition_selection_strategy, spec.eps, spec.delta, params.max_partitions_contributed,
        params.pre_threshold)
    wanted = set(periods)
    return sorted((part for part, acc in accumulators.items() if part[0] in wanted and selector.should_keep(acc.users)),
                  key=lambda part: (part[0] or dt.date.min, part[1]))


def apply_noise(budget: MetricBudget, accumulators: dict[Partition, Accumulator],
                periods: list[dt.date | None]) -> MetricResult:
    """Partition selection (or the public partitions) and noise, with PipelineDP's mechanisms."""
    empty = Accumulator()
    results = []
    if budget.metric.kind == MetricKind.MEAN:
        count_mech, sum_mech = mean_parts(budget)
        for part in release_partitions(budget, accumulators, periods):
            acc = accumulators.get(part, empty)
            results.append(mean_result(budget, part, sum_mech.add_noise(acc.value_sum), count_mech.add_noise(acc.count),
                                       count_mech.std, sum_mech.std))
    else:
        mech = additive_mechanism(budget)
        for part in release_partitions(budget, accumulators, periods):
            acc = accumulators.get(part, empty)
            results.append(PartitionResult(part[0], part[1], mech.add_noise(acc.true_value(budget.metric.kind)), mech.std))
    return MetricResult(budget, results)
