"""The release's contribution bounding (lakehouse/jvm/Bounding.java), against a plain-Python statement
of the contract, and called directly where a case needs a fixed seed or a unit id chosen by hand.

The statistics of the sample (uniform, fresh per release) are in test_dp_statistics.py."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections import defaultdict

import pytest
from pyspark.sql import DataFrame

from dp.engine_spark import collect_accumulators
from lakehouse import jvm_bridge
from lakehouse.config import MetricConfig, MetricKind

NO_SAMPLE = 1000  # max_partitions_contributed above any user's partitions: bounding is deterministic
METRICS = (
    MetricConfig(name="count", kind="COUNT", group_by="continent", max_partitions_contributed=NO_SAMPLE,
                 max_contributions_per_partition=2),
    MetricConfig(name="sum", kind="SUM", group_by="device", value="total_time_on_page", min_value=-5.0,
                 max_value=50.0, max_partitions_contributed=NO_SAMPLE, max_contributions_per_partition=3),
    MetricConfig(name="mean", kind="MEAN", group_by="country", value="num_pageviews", min_value=0.0, max_value=10.0,
                 max_partitions_contributed=NO_SAMPLE, max_contributions_per_partition=1),
    MetricConfig(name="public", kind="COUNT", group_by="continent", public_partitions=("Asia", "Europe", "Atlantis"),
                 max_partitions_contributed=NO_SAMPLE, max_contributions_per_partition=4),
)
CONTINENTS = ["Asia", "Europe", "Africa", "(not set)"]
DEVICES = ["desktop", "mobile", "Asia"]  # "Asia" a device too: the same bytes as a key of another metric
COUNTRIES = ["", "é", "日本", None] + [f"C{i}" for i in range(20)]
# before 1970 (negative epoch days), both ends of the date range, and today
DAYS = [dt.date(1, 1, 1), dt.date(1969, 12, 31), dt.date(1970, 1, 1), dt.date(2026, 11, 30), dt.date(9999, 12, 31)]
SCHEMA = ("user_id string, period_start date, continent string, device string, country string, "
          "total_time_on_page int, num_pageviews int")


def _rows(periods: list[dt.date | None], users: int = 700) -> list[tuple]:
    rng = random.Random(5)
    return [(f"user{u}", p, rng.choice(CONTINENTS), rng.choice(DEVICES), rng.choice(COUNTRIES),
             rng.randint(-20, 80), rng.randint(0, 15))
            for u in range(users) for p in rng.sample(periods, rng.randint(1, len(periods)))
            for _ in range(rng.choice([1, 1, 2, 3, 7]))]


def _reference(rows: list[tuple]) -> tuple[dict, dict]:
    """The contract in plain Python: per (unit, partition) at most max_contributions_per_partition
    rows, the sum scaled to them; rows outside public partitions dropped; every row read counted."""
    per_unit = defaultdict(lambda: [0, 0.0])  # (metric, user, period, key) -> rows, sum
    rows_in: dict = defaultdict(int)
    for user, period, continent, device, country, seconds, pageviews in rows:
        rows_in[period] += 1
        columns = {"continent": continent, "device": device, "country": country,
                   "total_time_on_page": seconds, "num_pageviews": pageviews}
        for m in METRICS:
            key = columns[m.group_by]
            if m.public_partitions is not None and key not in m.public_partitions:
                continue
            value = 0.0
            if m.value:
                value = min(max(float(columns[m.value]), m.min_value), m.max_value)
                value -= (m.min_value + m.max_value) / 2 if m.kind == MetricKind.MEAN else 0.0
            entry = per_unit[(m.name, user, period, key)]
            entry[0] += 1
            entry[1] += value
    totals: dict = {m.name: defaultdict(lambda: [0, 0.0, 0]) for m in METRICS}
    caps = {m.name: m.max_contributions_per_partition for m in METRICS}
    for (name, _, period, key), (n, value_sum) in per_unit.items():
        kept = min(n, caps[name])
        total = totals[name][(period, key)]
        total[0] += kept
        total[1] += value_sum * kept / n
        total[2] += 1
    return totals, dict(rows_in)


@pytest.mark.parametrize(("periods", "tasks"), [(DAYS, 1), (DAYS, 3), ([None], 2)])
def test_bounded_totals_match_the_contract(spark, periods, tasks):
    """Metrics of different columns, public partitions with a key of no rows, null and multi-byte keys,
    dates before 1970; one task holding every unit (its tables grow many times) or several."""
    rows = _rows(periods)
    expected, expected_rows_in = _reference(rows)
    configured = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", str(tasks))
    try:
        totals, rows_in = collect_accumulators(spark.createDataFrame(rows, SCHEMA), METRICS)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", configured)
    assert rows_in == expected_rows_in
    for m in METRICS:
        got = {k: (a.count, a.value_sum, a.users) for k, a in totals[m.name].items()}
        assert got.keys() == expected[m.name].keys(), m.name
        for key, (count, value_sum, users) in expected[m.name].items():
            assert got[key][0] == count and got[key][2] == users, (m.name, key)
            assert got[key][1] == pytest.approx(value_sum, rel=1e-9, abs=1e-9), (m.name, key)


INPUT = "unit long, unit_check long, period_start date, key0 string, value0 double, kept0 boolean"


def _totals(spark, rows: list[tuple], cap: int, max_partitions: int, seed: int) -> list[tuple]:
    """Bounding.totals of one metric over `rows` (its input columns) in one task, in their order."""
    frame = spark.createDataFrame(rows, INPUT).coalesce(1)
    ints = lambda v: jvm_bridge.int_array(spark, [v])  # noqa: E731
    out = jvm_bridge.bounding(spark).totals(frame._jdf, ints(cap), ints(max_partitions), seed)
    return sorted(tuple(r) for r in DataFrame(out, spark).collect() if r["m"] == 0)


def test_the_partition_sample_does_not_depend_on_the_order_of_the_rows(spark):
    """A task Spark recomputes reads its rows in another order: it must keep the same partitions, or
    a unit's totals could mix two samples. One unit in 4 partitions, L0 = 2, 6 row orders per seed;
    over 10 seeds the kept pair must vary (else there is no sample)."""
    rows = [(7, 70, None, key, 1.0, True) for key in ("Asia", "Europe", "Oceania", "Africa")]
    kept_per_seed = []
    for seed in range(10):
        kept = {tuple(r[2] for r in _totals(spark, list(order), 1, 2, seed))
                for order in itertools.islice(itertools.permutations(rows), 0, 24, 4)}
        assert len(kept) == 1, (seed, kept)
        kept_per_seed.append(kept.pop())
    assert len(set(kept_per_seed)) > 1, kept_per_seed


def test_units_whose_ids_collide_keep_their_periods(spark):
    """Two (user, period) units hashed to one id are still two units."""
    rows = [(42, 1, dt.date(2026, 11, 1), "Asia", 1.0, True), (42, 1, dt.date(2026, 11, 2), "Europe", 1.0, True),
            (42, 1, dt.date(2026, 11, 2), "Europe", 1.0, True)]
    assert _totals(spark, rows, 5, 1, 0) == [(0, dt.date(2026, 11, 1), "Asia", 1, 1.0, 1),
                                             (0, dt.date(2026, 11, 2), "Europe", 2, 2.0, 1)]


def test_units_whose_first_hashes_collide_are_not_merged(spark):
    """Users A and B whose unit ids collide (p ~ 1e-8 per million units), A in Asia, B in Europe,
    L0 = 1: merged into one unit, one of the two partitions would be dropped, and removing A could
    move B's count to the other one (twice the sensitivity). The unit check keeps them apart, in
    every row order, whatever the seed."""
    rows = [(42, 1, None, "Asia", 1.0, True), (42, 2, None, "Europe", 1.0, True), (42, 2, None, "Europe", 1.0, True)]
    for seed in range(4):
        for order in (rows, rows[::-1]):
            assert _totals(spark, order, 5, 1, seed) == [(0, None, "Asia", 1, 1.0, 1), (0, None, "Europe", 2, 2.0, 1)]


def test_a_unit_with_many_partitions_keeps_exactly_its_least_priorities(spark):
    """One unit in 3,000 partitions (free text from Bronze can make a key per row): the sample keeps
    exactly L0 of them, the same ones in any row order, whether L0 picks them by selection (<= 8) or
    by sorting; and since both keep the least priorities, L0 + 1 keeps L0's set and one more."""
    rows = [(9, 90, None, f"k{i}", 1.0, True) for i in range(3_000)]
    shuffled = random.Random(3).sample(rows, len(rows))
    for seed in (1, 2):
        kept = {}
        for max_partitions in (1, 8, 9, 100):
            got = _totals(spark, rows, 1, max_partitions, seed)
            assert len(got) == max_partitions and all(r[3:] == (1, 1.0, 1) for r in got), (max_partitions, got[:3])
            assert _totals(spark, shuffled, 1, max_partitions, seed) == got, max_partitions
            kept[max_partitions] = {r[2] for r in got}
        assert kept[1] < kept[8] < kept[9] < kept[100], seed
