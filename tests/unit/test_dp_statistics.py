"""Statistical tests of every mechanism the releases use, with L0 > 1, computed against theory that
is derived here, independently of PipelineDP: Laplace b = L1 / epsilon with L1 = L0 * Linf * max|v|;
Gaussian sigma by Balle & Wang's analytic Gaussian for L2 = sqrt(L0) * Linf * max|v|; the tree's
node noise for L1 x levels and L2 x sqrt(levels), a running total's variance popcount(t) node
variances.

Each test draws >= 200 releases (RUNS x partitions noise samples) and asserts (a) the reported
stddev equals the theory, (b) the empirical stddev is within +-15 % of it - about 4.5 standard
errors of a sample stddev of 1,200 Laplace draws, so a correct mechanism fails with probability
~1e-5 while a scale off by L0, sqrt(L0) or the number of levels (factors >= 1.4 here) fails surely,
and (c) the mean error is within 4 standard errors of 0 (false-failure rate 6e-5).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np
import pytest
from oracle import analytic_gaussian_sigma
from scipy import stats

from dp import continual, tree
from dp.engine_spark import collect_accumulators
from dp.metrics import metric_budgets
from dp.noise import Accumulator, apply_noise, mean_parts
from lakehouse.config import MetricConfig, MetricKind, NoiseKind, PartitionSelection, PrivacyConfig

RUNS = 200
KEYS = ("Africa", "Americas", "Asia", "Europe", "Oceania", "(not set)")
L0, LINF = 2, 5
LO, HI = -10.0, 30.0  # value bounds: max |v| = 30, (HI - LO) / 2 = 20 for MEAN's normalized sum
EPSILON, DELTA = 1.0, 1e-5
DAY = dt.date(2026, 11, 30)


def metric(kind: MetricKind, **changes) -> MetricConfig:
    values = {"min_value": LO, "max_value": HI, "value": "total_time_on_page"} if kind.has_value else {}
    return MetricConfig(name=f"m_{kind.lower()}", kind=kind, group_by="continent", public_partitions=KEYS,
                        max_partitions_contributed=L0, max_contributions_per_partition=LINF, **{**values, **changes})


def privacy(noise: NoiseKind, epsilon: float = EPSILON) -> PrivacyConfig:
    return PrivacyConfig(epsilon_per_release=epsilon, delta_per_release=DELTA, epsilon_cap=1e9, delta_cap=0.5,
                         noise_kind=noise)


def theory(noise: NoiseKind, epsilon: float, delta: float, per_partition: float, levels: int = 1) -> float:
    """Noise stddev for a unit in L0 partitions, moving each by at most `per_partition`."""
    if noise == NoiseKind.LAPLACE:
        return math.sqrt(2) * levels * L0 * per_partition / epsilon
    return analytic_gaussian_sigma(epsilon, delta, math.sqrt(levels) * math.sqrt(L0) * per_partition)


PER_PARTITION = {MetricKind.COUNT: LINF, MetricKind.SUM: LINF * max(abs(LO), abs(HI)), MetricKind.PRIVACY_ID_COUNT: 1}
TRUTH = {k: Accumulator(count=400 + 10 * i, value_sum=5000.0 - 700 * i, users=90 + i) for i, k in enumerate(KEYS)}


def check(errors: np.ndarray, reported: list[float], expected: float) -> None:
    assert len(errors) >= RUNS * len(KEYS)
    # PipelineDP finds the analytic Gaussian sigma by a search that rounds up: within 0.1 %
    assert all(s == pytest.approx(expected, rel=1e-3) for s in reported), (reported[:3], expected)
    assert np.std(errors, ddof=1) == pytest.approx(expected, rel=0.15)
    assert abs(errors.mean()) < 4 * expected / math.sqrt(len(errors))


@pytest.mark.parametrize("noise", list(NoiseKind))
@pytest.mark.parametrize("kind", [MetricKind.COUNT, MetricKind.SUM, MetricKind.PRIVACY_ID_COUNT])
def test_additive_metrics_with_l0_above_one(kind, noise):
    m = metric(kind)
    (budget,) = metric_budgets((m,), privacy(noise))
    accumulators = {(DAY, k): acc for k, acc in TRUTH.items()}
    errors, reported = [], []
    for _ in range(RUNS):
        for p in apply_noise(budget, accumulators, [DAY]).partitions:
            errors.append(p.value - TRUTH[p.key].true_value(kind))
            reported.append(p.noise_stddev)
    check(np.array(errors), reported, theory(noise, EPSILON, DELTA, PER_PARTITION[kind]))


@pytest.mark.parametrize("noise", list(NoiseKind))
def test_mean_with_l0_above_one(noise):
    """MEAN: a noisy count and a noisy normalized sum, half of the metric's budget each (PipelineDP's
    split), then their ratio. The ratio's reported approx_stddev is the delta method's; with counts
    in the hundreds it matches the empirical spread within the same +-15 %, checked on the errors of
    all partitions pooled, each in units of its partition's approximation (2,400 draws: a Laplace
    ratio's sample stddev over 400 draws of one partition strays by 15 % in ~1 % of runs, so a
    per-partition check failed ~6 % of runs, as CI met; pooled, 0 of 5,000 simulated runs)."""
    m = metric(MetricKind.MEAN)
    (budget,) = metric_budgets((m,), privacy(noise))
    count_mech, sum_mech = mean_parts(budget)
    assert count_mech.std == pytest.approx(theory(noise, EPSILON / 2, DELTA / 2, LINF), rel=1e-3)
    assert sum_mech.std == pytest.approx(theory(noise, EPSILON / 2, DELTA / 2, LINF * (HI - LO) / 2), rel=1e-3)
    accumulators = {(DAY, k): acc for k, acc in TRUTH.items()}
    errors: dict[str, list[float]] = {k: [] for k in KEYS}
    approx: dict[str, list[float]] = {k: [] for k in KEYS}
    for _ in range(RUNS * 2):
        for p in apply_noise(budget, accumulators, [DAY]).partitions:
            truth = (LO + HI) / 2 + TRUTH[p.key].value_sum / TRUTH[p.key].count
            errors[p.key].append(p.value - truth)
            approx[p.key].append(p.approx_stddev)
            assert p.noise_stddev is None and LO <= p.value <= HI
    pooled = np.concatenate([np.array(errors[key]) / np.mean(approx[key]) for key in KEYS])
    assert np.std(pooled, ddof=1) == pytest.approx(1.0, rel=0.15)
    for key in KEYS:
        e = np.array(errors[key])
        assert abs(e.mean()) < 4 * np.std(e) / math.sqrt(len(e)), key


def tree_draws(m: MetricConfig, noise: NoiseKind, horizon: int, runs: int):
    """Many periods, each run through its whole tree: per t the errors and reported stddevs."""
    (budget,) = metric_budgets((m,), privacy(noise))
    levels = tree.levels(horizon)
    leaf = {(DAY, k): Accumulator(count=7 + i, value_sum=50.0 + i, users=3 + i) for i, k in enumerate(KEYS)}
    errors: dict[int, list[float]] = {t: [] for t in range(1, horizon + 1)}
    reported: dict[int, list[float]] = {t: [] for t in range(1, horizon + 1)}
    for _ in range(runs):
        nodes: continual.Nodes = {}
        for t in range(1, horizon + 1):
            result, _ = continual.running_totals(budget, leaf, {DAY: t}, levels, nodes, release_id=t)
            for p in result.partitions:
                errors[t].append(p.value - t * leaf[(DAY, p.key)].true_value(m.kind))
                reported[t].append(p.noise_stddev)
    return errors, reported, levels


@pytest.mark.parametrize("noise", list(NoiseKind))
@pytest.mark.parametrize("kind", [MetricKind.COUNT, MetricKind.SUM, MetricKind.PRIVACY_ID_COUNT])
def test_tree_running_totals_have_the_reported_noise(kind, noise):
    horizon = 8
    errors, reported, levels = tree_draws(metric(kind), noise, horizon, RUNS)
    node = theory(noise, EPSILON, DELTA, PER_PARTITION[kind], levels=levels)
    for t in range(1, horizon + 1):
        check(np.array(errors[t]), reported[t], math.sqrt(bin(t).count("1")) * node)


def test_tree_matches_the_notes_worked_numbers():
    """shared/notes/continual-release.md: epsilon 1/3 for the metric, L0 = 1, Linf = 5."""
    m = dataclasses.replace(metric(MetricKind.COUNT), max_partitions_contributed=1)
    for horizon, t, expected in [(8, 4, 84.9), (32, 31, 285.0)]:
        (budget,) = metric_budgets((m,), privacy(NoiseKind.LAPLACE, epsilon=1 / 3))
        result, _ = continual.running_totals(budget, {}, {DAY: 1}, tree.levels(horizon), {}, 1)
        node = result.partitions[0].noise_stddev
        assert math.sqrt(bin(t).count("1")) * node == pytest.approx(expected, rel=0.005)


def test_tree_beats_the_naive_split_by_the_predicted_factor():
    """At equal budget: the tree over H = 32 runs, against H releases at epsilon / H each whose
    increments are summed. At every t the running total's stddev is lower, by H sqrt(t) /
    (levels sqrt(popcount t)): empirically within +-25 % at each t, and within +-8 % on average
    over the 32. (Each t's ratio of two sample stddevs strays by 15 % in ~0.3 % of runs, which a
    +-15 % bound at every t met once in this session's test runs; simulated, 3,000 runs of this test's noise
    never strayed by 20 % at any t, nor by 6.5 % on average, while a tree off by a factor of
    sqrt(levels) or more is off by >= 40 % at every t.)"""
    horizon = 32
    m = metric(MetricKind.COUNT)
    errors, _, levels = tree_draws(m, NoiseKind.LAPLACE, horizon, RUNS)
    (naive_budget,) = metric_budgets((m,), privacy(NoiseKind.LAPLACE, epsilon=EPSILON / horizon))
    naive = {t: [] for t in range(1, horizon + 1)}
    leaf = {(DAY, k): Accumulator(count=5) for k in KEYS}
    for _ in range(RUNS):
        running = {k: 0.0 for k in KEYS}
        for t in range(1, horizon + 1):
            for p in apply_noise(naive_budget, leaf, [DAY]).partitions:
                running[p.key] += p.value
                naive[t].append(running[p.key] - 5 * t)
    ratios = []
    for t in range(1, horizon + 1):
        tree_std, naive_std = np.std(errors[t], ddof=1), np.std(naive[t], ddof=1)
        predicted = horizon * math.sqrt(t) / (levels * math.sqrt(bin(t).count("1")))
        assert tree_std < naive_std
        assert naive_std / tree_std == pytest.approx(predicted, rel=0.25), t
        ratios.append(naive_std / tree_std / predicted)
    assert np.mean(ratios) == pytest.approx(1.0, rel=0.08)


# ------------------------------------------------------------------------------------------
# bounding and partition selection, through the Spark engine


def _frame(spark, rows, schema="user_id string, continent string, total_time_on_page int"):
    from pyspark.sql import functions as F

    return spark.createDataFrame(rows, schema).withColumn("period_start", F.lit(DAY))


def _selected(spark, rows, l0: int, releases: int = 20) -> tuple[dict[str, int], dict[str, int]]:
    """(how often each partition was kept over `releases`, its bounded privacy-unit count)."""
    m = MetricConfig(name="by_country", kind=MetricKind.COUNT, group_by="continent", public_partitions=None,
                     max_partitions_contributed=l0, max_contributions_per_partition=1)
    (budget,) = metric_budgets((m,), dataclasses.replace(
        privacy(NoiseKind.LAPLACE), delta_per_release=1e-6, partition_selection=PartitionSelection.TRUNCATED_GEOMETRIC))
    accumulators, _ = collect_accumulators(_frame(spark, rows), (m,))
    kept: dict[str, int] = {}
    for _ in range(releases):
        for p in apply_noise(budget, accumulators[m.name], [DAY]).partitions:
            kept[p.key] = kept.get(p.key, 0) + 1
    return kept, {k: a.users for (_, k), a in accumulators[m.name].items()}


def test_partition_selection_counts_users_not_rows(spark):
    """3 users with 200 rows each must not open a partition (kept with probability 1e-5 per
    release); 300 users with one row each must (probability 1). Counting rows, the first would be
    kept every time."""
    rows = [(f"heavy{u}", "Busy", 0) for u in range(3) for _ in range(200)]
    rows += [(f"user{u}", "Crowd", 0) for u in range(300)]
    kept, users = _selected(spark, rows, l0=1)
    assert users == {"Busy": 3, "Crowd": 300}
    assert kept.get("Busy", 0) == 0 and kept["Crowd"] == 20


def test_partition_selection_bounds_partitions_per_user(spark):
    """60 users in the same 10 partitions, L0 = 2: each partition keeps ~12 users (selection
    probability <= 0.01 each); with L0 ignored in the bounding every partition has 60 users (kept
    every time), with L0 ignored in the selection's threshold ~12 users are kept ~10-90 % of the
    time. Correct: at most a handful of 200 partition-releases."""
    rows = [(f"u{u}", f"P{p}", 0) for u in range(60) for p in range(10)]
    kept, users = _selected(spark, rows, l0=2)
    assert sum(users.values()) == 60 * 2
    assert sum(kept.values()) <= 10, kept


def test_a_user_who_gives_up_partitions_keeps_a_uniformly_chosen_one(spark):
    """3,000 users each in the same 3 partitions, L0 = 1 (and L0 = 2): which partitions a user keeps
    is uniform, so each is kept by ~1,000 (~2,000) users; chi-square p > 1e-4 unless biased. A
    first-come, or alphabetical, choice puts all 3,000 in one partition."""
    rows = [(f"u{u}", c, 0) for u in range(3000) for c in ("Asia", "Europe", "Oceania")]
    df = _frame(spark, rows)
    for l0 in (1, 2):
        m = MetricConfig(name="c", kind=MetricKind.COUNT, group_by="continent", public_partitions=("Asia", "Europe",
                         "Oceania"), max_partitions_contributed=l0, max_contributions_per_partition=1)
        accumulators, _ = collect_accumulators(df, (m,))
        counts = [accumulators["c"][(DAY, k)].users for k in ("Asia", "Europe", "Oceania")]
        assert sum(counts) == 3000 * l0
        assert stats.chisquare(counts).pvalue > 1e-4, counts


def test_each_release_draws_its_own_partition_sample(spark):
    """One user in 3 partitions, L0 = 1, released 15 times: the kept partition is drawn afresh each
    time, so all 15 agree with probability 3^-14 (2e-7). A sample seeded alike in every release
    keeps the same partition every time."""
    rows = [("traveller", c, 0) for c in ("Asia", "Europe", "Oceania")]
    m = MetricConfig(name="c", kind=MetricKind.COUNT, group_by="continent", public_partitions=None,
                     max_partitions_contributed=1, max_contributions_per_partition=1)
    df = _frame(spark, rows)
    kept = set()
    for _ in range(15):
        (partition,) = collect_accumulators(df, (m,))[0]["c"]
        kept.add(partition)
    assert len(kept) > 1, kept


def test_a_user_over_the_cap_contributes_the_expected_sum_of_a_uniform_sample(spark):
    """Users with 1 to 9 rows in one partition, values of both signs beyond [-10, 10], Linf = 3: a user
    with n > 3 rows contributes 3 rows and 3 times the mean of their clamped values (a uniform
    3-of-n sample's expected sum), within the bound 3 * 10; one with n <= 3 all of them. Keeping
    the first rows, or leaving the sum unscaled or unclamped, would differ."""
    rng = np.random.default_rng(7)
    users = {f"u{u}": list(rng.integers(-25, 26, size=1 + u % 9)) for u in range(300)}
    rows = [(u, "Asia", int(v)) for u, values in users.items() for v in values]
    m = MetricConfig(name="s", kind=MetricKind.SUM, group_by="continent", public_partitions=("Asia",),
                     value="total_time_on_page", min_value=-10.0, max_value=10.0, max_partitions_contributed=1,
                     max_contributions_per_partition=3)
    accumulators, _ = collect_accumulators(_frame(spark, rows), (m,))
    acc = accumulators["s"][(DAY, "Asia")]
    clamped = {u: np.clip(values, -10, 10) for u, values in users.items()}
    expected = sum(c.sum() if len(c) <= 3 else 3 * c.mean() for c in clamped.values())
    assert acc.count == sum(min(len(c), 3) for c in clamped.values())
    assert abs(acc.value_sum - expected) < 1e-6, (acc.value_sum, expected)
