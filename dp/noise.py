"""The DP mechanisms of a metric, built by PipelineDP from its budget, and the per-partition results.

Everything here works on a handful of per-partition numbers on the driver; nothing touches rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline_dp import dp_computations as dpc
from pipeline_dp import partition_selection

from dp.metrics import MetricBudget


@dataclass(frozen=True)
class PartitionResult:
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


def _sensitivities(budget: MetricBudget) -> dpc.Sensitivities:
    params, kind = budget.params, budget.metric.kind
    if kind == "SUM":
        return dpc.compute_sensitivities_for_sum(params)
    if kind == "PRIVACY_ID_COUNT":
        return dpc.compute_sensitivities_for_privacy_id_count(params)
    return dpc.compute_sensitivities_for_count(params)


def additive_mechanism(budget: MetricBudget) -> dpc.AdditiveMechanism:
    """COUNT / SUM / PRIVACY_ID_COUNT: the one additive mechanism."""
    return dpc.create_additive_mechanism(budget.noise[0], _sensitivities(budget))


def mean_mechanisms(budget: MetricBudget) -> tuple[dpc.MeanMechanism, dpc.AdditiveMechanism, dpc.AdditiveMechanism]:
    """MEAN: PipelineDP's mean mechanism plus its count and normalized-sum parts (for their std)."""
    params = budget.params
    count_sens = dpc.compute_sensitivities_for_count(params)
    sum_sens = dpc.compute_sensitivities_for_normalized_sum(params)
    middle = dpc.compute_middle(params.min_value, params.max_value)
    return (dpc.create_mean_mechanism(middle, budget.noise[0], count_sens, budget.noise[1], sum_sens),
            dpc.create_additive_mechanism(budget.noise[0], count_sens),
            dpc.create_additive_mechanism(budget.noise[1], sum_sens))


def value_noise_stddev(budget: MetricBudget) -> float | None:
    """From the mechanism's parameters only: never from data."""
    return None if budget.metric.kind == "MEAN" else additive_mechanism(budget).std


def mean_result(budget: MetricBudget, key: str, dp_mean: float, dp_count: float) -> PartitionResult:
    """Post-processing of a DP mean: clamp to the value bounds (the true mean lies within them) and
    approximate its noise by the delta method from the noisy count and the mechanisms' std."""
    params = budget.params
    _, count_mech, sum_mech = mean_mechanisms(budget)
    middle = dpc.compute_middle(params.min_value, params.max_value)
    denominator = max(1.0, dp_count)
    approx = math.sqrt(sum_mech.std ** 2 + (dp_mean - middle) ** 2 * count_mech.std ** 2) / denominator
    clamped = min(max(dp_mean, params.min_value), params.max_value)
    return PartitionResult(key, clamped, None, dp_count=dp_count, approx_stddev=approx)


def apply_noise(budget: MetricBudget, accumulators: dict[str, Accumulator]) -> MetricResult:
    """Partition selection (or the public partitions) and noise, with PipelineDP's mechanisms."""
    metric, params = budget.metric, budget.params
    if metric.public_partitions is not None:
        keys = list(metric.public_partitions)
    else:
        spec = budget.selection
        selector = partition_selection.create_partition_selection_strategy(
            params.partition_selection_strategy, spec.eps, spec.delta, params.max_partitions_contributed,
            params.pre_threshold)
        keys = sorted(k for k, acc in accumulators.items() if selector.should_keep(acc.users))
    empty = Accumulator()
    results = []
    if metric.kind == "MEAN":
        mean_mech = mean_mechanisms(budget)[0]
        for key in keys:
            acc = accumulators.get(key, empty)
            dp_count, _, dp_mean = mean_mech.compute_mean(acc.count, acc.value_sum)
            results.append(mean_result(budget, key, dp_mean, dp_count))
    else:
        mech = additive_mechanism(budget)
        for key in keys:
            acc = accumulators.get(key, empty)
            true_value = {"COUNT": acc.count, "SUM": acc.value_sum, "PRIVACY_ID_COUNT": acc.users}[metric.kind]
            results.append(PartitionResult(key, mech.add_noise(true_value), mech.std))
    return MetricResult(budget, results)
