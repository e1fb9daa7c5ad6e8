"""Continual release: running totals of open periods by tree aggregation (binary mechanism).

Every run is one leaf of each open period's tree: the rows that arrived since the period's previous
run (its first leaf: every row it holds so far). Two things make the whole period cost its budget
once, for up to ``max_releases_per_period`` runs:

* **Bounds across leaves.** The privacy unit is (user, period), so a user's contributions summed
  over all of a period's leaves must stay within the period's bounds. Contributions are kept first
  come, first kept: a row is kept if its partition is one of the unit's first
  ``max_partitions_contributed`` partitions (by first arrival) and the unit has fewer than
  ``max_contributions_per_partition`` kept rows there. Kept rows stay kept, so each unit's
  cumulative contribution only grows and its increments over all leaves sum to at most the
  period's bound. What was kept so far lives in ``silver.release_bounds`` (restricted), keyed by the
  attempt that wrote it: only attempts a release record holds count, so a crashed computation's
  state is ignored.
* **The tree.** Each level of the dyadic tree over the leaves sums disjoint leaves, so a unit moves
  each level by at most its sensitivity, and the whole tree by (levels x) that in L1 (sqrt(levels)
  x in L2): each node gets PipelineDP's Laplace or Gaussian noise for the metric's epsilon/delta
  at that scaled sensitivity. A node is noised once, when complete, and kept (exact and noisy) in
  ``silver.release_tree``; the running total after run t adds the popcount(t) nodes of t's binary
  decomposition, so its noise variance is exactly popcount(t) times a node's. (No Honaker
  variance reduction: its weights would make noise_stddev depend on which nodes exist; the plain
  sum keeps it exact and simple.)

MEAN runs two trees (count and normalized sum, half of the metric's budget each) and publishes
their clamped ratio; metrics with DP partition selection are released once, at close (dp.plan).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from dp import tree
from dp.engine_spark import metric_value, privacy_unit
from dp.metrics import MetricBudget
from dp.noise import Accumulator, MetricResult, Partition, PartitionResult, additive_mechanism, mean_parts, mean_result
from lakehouse import catalog, schemas
from lakehouse.config import MetricConfig, MetricKind
from lakehouse.errors import LakehouseError
from lakehouse.storage import Locations

# What each kind's tree sums: MEAN has two trees.
PARTS = {MetricKind.COUNT: ("count",), MetricKind.SUM: ("sum",), MetricKind.PRIVACY_ID_COUNT: ("users",),
         MetricKind.MEAN: ("count", "sum")}


def _by_metric(metrics: tuple[MetricConfig, ...], value: Callable[[MetricConfig], int]) -> Column:
    pairs = [x for m in metrics for x in (F.lit(m.name), F.lit(value(m)))]
    return F.create_map(*pairs)[F.col("metric")]


MARKER = ""  # a bounds row with this metric marks an attempt's leaf of a period, kept rows or not


def check_state(spark: SparkSession, loc: Locations, attempts: dict[dt.date, set[str]]) -> None:
    """Every earlier leaf of these periods left its marker in silver.release_bounds: a lost or
    rolled-back bounds table would silently restart first-come-first-kept, letting a user contribute
    the period's bound again."""
    if not attempts:
        return
    found: set[tuple[dt.date, str]] = set()
    if catalog.table_exists(spark, loc.release_bounds):
        found = {(r["period_start"], r["attempt"]) for r in catalog.read(spark, loc.release_bounds)
                 .where(F.col("period_start").isin(*attempts) & (F.col("metric") == MARKER))
                 .select("period_start", "attempt").distinct().collect()}
    lost = sorted((p, a) for p, ids in attempts.items() for a in ids if (p, a) not in found)
    if lost:
        raise LakehouseError(
            f"silver.release_bounds ({loc.release_bounds}) has lost the kept contributions of {len(lost)} earlier "
            f"run(s) of period {lost[0][0]}: continuing its running totals would let users contribute its bounds "
            "again. Restore the table (e.g. RESTORE TABLE ... TO VERSION AS OF, from a backup); nothing was released")


def markers(spark: SparkSession, starts: list[dt.date], attempt: str) -> DataFrame:
    return spark.createDataFrame([schemas.row(schemas.RELEASE_BOUNDS, {"period_start": p, "metric": MARKER, "unit": 0,
                                                                       "unit_check": 0, "key": "", "kept": 0,
                                                                       "attempt": attempt})
                                  for p in starts], schemas.RELEASE_BOUNDS)


# The unit_check of contributions kept before silver.release_bounds had the column (null there), and
# of every unit of their periods: units are told apart by their first hash alone in those periods,
# as they were when those rows were kept, so the periods' bounds hold across the upgrade.
ONE_HASH = 0


def kept_so_far(spark: SparkSession, loc: Locations, starts: list[dt.date], attempts: set[str]) -> DataFrame:
    """(period_start, metric, unit, unit_check, key, prev_kept) of the units' earlier leaves in these
    periods."""
    empty = spark.createDataFrame([], schemas.RELEASE_BOUNDS)
    bounds = catalog.read(spark, loc.release_bounds) if starts and attempts and catalog.table_exists(
        spark, loc.release_bounds) else empty
    if "unit_check" not in bounds.columns:  # written before the column existed
        bounds = bounds.withColumn("unit_check", F.lit(None).cast("long"))
    return (bounds.where(F.col("period_start").isin(*starts) & F.col("attempt").isin(*attempts)
                         & (F.col("metric") != MARKER))
            .groupBy("period_start", "metric", "unit", F.coalesce("unit_check", F.lit(ONE_HASH)).alias("unit_check"),
                     "key").agg(F.sum("kept").alias("prev_kept")))


@dataclass
class Leaf:
    """One run's leaf: bounded totals per metric and partition, the rows read per period, and the
    new kept contributions (to append to silver.release_bounds under the run's attempt)."""

    totals: dict[str, dict[Partition, Accumulator]]
    rows_in: dict[dt.date, int]
    kept: DataFrame
    _cached: DataFrame

    def release(self) -> None:
        self._cached.unpersist()


def bounded_leaf(rows: DataFrame, metrics: tuple[MetricConfig, ...], previous: DataFrame) -> Leaf:
    """First come, first kept, continuing what `previous` (kept_so_far) holds. `rows`: new Silver
    rows with period_start."""
    columns = sorted({m.group_by for m in metrics} | {m.value for m in metrics if m.value})
    unit, unit_check = privacy_unit()
    one_hash = F.broadcast(previous.where(F.col("unit_check") == ONE_HASH).select("period_start").distinct()
                           .withColumn("one_hash", F.lit(True)))
    base = rows.join(one_hash, "period_start", "left").select(
        unit.alias("unit"), F.when(F.col("one_hash"), F.lit(ONE_HASH)).otherwise(unit_check).alias("unit_check"),
        "period_start", "session_start", "session_id", *columns)
    entries = []
    for m in metrics:
        assert m.public_partitions is not None, m.name  # only public-partition metrics have running totals
        entry = F.struct(F.lit(m.name).alias("metric"), F.col(m.group_by).alias("key"), metric_value(m).alias("value"))
        entries.append(F.when(F.col(m.group_by).isin(*m.public_partitions), entry))
    row_columns = ["unit", "unit_check", "period_start", "session_start", "session_id"]
    per_row = (base.select(*row_columns, F.explode(F.array(*entries)).alias("e"))
               .where(F.col("e").isNotNull()).select(*row_columns, "e.*"))
    unit_metric = ["unit", "unit_check", "period_start", "metric"]
    unit_key = [*unit_metric, "key"]
    prev_n = previous.groupBy(*unit_metric).agg(F.count(F.lit(1)).alias("prev_n"))
    keys = (per_row.groupBy(*unit_key).agg(F.min(F.struct("session_start", "session_id")).alias("first"))
            .join(previous, unit_key, "left").join(prev_n, unit_metric, "left")
            .withColumn("is_new", F.col("prev_kept").isNull()))
    # a unit's new partitions in order of first arrival, admitted while it has fewer than L0
    rank = F.row_number().over(Window.partitionBy(*unit_metric, "is_new").orderBy("first", "key"))
    keys = (keys.withColumn("rank", rank)
            .where(~F.col("is_new") | (F.coalesce("prev_n", F.lit(0)) + F.col("rank")
                                       <= _by_metric(metrics, lambda m: m.max_partitions_contributed)))
            .select(*unit_key, "is_new", (_by_metric(metrics, lambda m: m.max_contributions_per_partition)
                                          - F.coalesce("prev_kept", F.lit(0))).alias("allowance")))
    order = Window.partitionBy(*unit_key).orderBy("session_start", "session_id")
    kept = (per_row.join(keys, unit_key).withColumn("n", F.row_number().over(order))
            .where(F.col("n") <= F.col("allowance"))).cache()
    totals: dict[str, dict[Partition, Accumulator]] = {m.name: {} for m in metrics}
    for r in kept.groupBy("metric", "period_start", "key").agg(
            F.count(F.lit(1)).alias("count"), F.sum("value").alias("value_sum"),
            F.count(F.when(F.col("is_new") & (F.col("n") == 1), 1)).alias("users")).collect():
        totals[r["metric"]][(r["period_start"], r["key"])] = Accumulator(int(r["count"]), float(r["value_sum"]),
                                                                          int(r["users"]))
    rows_in = {r["period_start"]: int(r["count"]) for r in rows.groupBy("period_start").count().collect()}
    new_kept = (kept.groupBy("period_start", "metric", "unit", "unit_check", "key")
                .agg(F.count(F.lit(1)).cast("int").alias("kept")))
    return Leaf(totals, rows_in, new_kept, kept)


# ------------------------------------------------------------------------------------------
# the tree, on the driver

NodeKey = tuple[dt.date, str, str, str]  # (period_start, metric, part, key)
Nodes = dict[NodeKey, dict[tree.Node, tuple[float, float]]]  # -> (level, index) -> (exact, noisy)


def stored_nodes(spark: SparkSession, loc: Locations, starts: list[dt.date]) -> Nodes:
    out: Nodes = defaultdict(dict)
    if starts and catalog.table_exists(spark, loc.release_tree):
        for r in catalog.read(spark, loc.release_tree).where(F.col("period_start").isin(*starts)).collect():
            out[(r["period_start"], r["metric"], r["part"], r["key"])][(r["level"], r["node"])] = (
                r["true_value"], r["noisy_value"])
    return out


def _require(known: dict[tree.Node, tuple[float, float]], nodes: Iterable[tree.Node], metric: str, part: str,
             key: str, period_start: dt.date, t: int) -> None:
    lost = [n for n in nodes if n not in known]
    if lost:
        raise LakehouseError(
            f"silver.release_tree lacks node {lost[0]} of {metric}/{part}/{key} for period {period_start} (run {t}): "
            "the table was lost or rolled back; restore it (RESTORE TABLE ... TO VERSION AS OF, or from a backup); "
            "nothing was released")


def _part_value(acc: Accumulator, part: str) -> float:
    return {"count": acc.count, "sum": acc.value_sum, "users": acc.users}[part]


def running_totals(budget: MetricBudget, leaf: dict[Partition, Accumulator], leaves: dict[dt.date, int],
                   levels: int, nodes: Nodes, release_id: int) -> tuple[MetricResult, list[tuple]]:
    """The running total of every public partition of every period in `leaves` (period -> this
    run's leaf t), and the tree rows this run completes (to append to silver.release_tree)."""
    metric = budget.metric
    if metric.kind == MetricKind.MEAN:
        mechanisms = dict(zip(("count", "sum"), mean_parts(budget, levels), strict=True))
    else:
        mechanisms = {PARTS[metric.kind][0]: additive_mechanism(budget, levels)}
    empty, results, new_rows = Accumulator(), [], []
    assert metric.public_partitions is not None, metric.name
    for period_start, t in leaves.items():
        for key in metric.public_partitions:
            totals, stds = {}, {}
            for part, mech in mechanisms.items():
                known = nodes.setdefault((period_start, metric.name, part, key), {})
                for node in tree.completed_at(t):  # lowest level first: a parent's children exist by then
                    _require(known, tree.children(node) if node[0] else (), metric.name, part, key, period_start, t)
                    exact = (_part_value(leaf.get((period_start, key), empty), part) if node[0] == 0
                             else sum(known[child][0] for child in tree.children(node)))
                    known[node] = (exact, mech.add_noise(exact))
                    new_rows.append(schemas.row(schemas.RELEASE_TREE, {
                        "period_start": period_start, "metric": metric.name, "part": part, "key": key,
                        "level": node[0], "node": node[1], "true_value": float(exact),
                        "noisy_value": float(known[node][1]), "release_id": release_id}))
                decomposition = tree.decomposition(t)
                _require(known, decomposition, metric.name, part, key, period_start, t)
                totals[part] = sum(known[node][1] for node in decomposition)
                stds[part] = math.sqrt(len(decomposition)) * mech.std
            if metric.kind == MetricKind.MEAN:
                results.append(mean_result(budget, (period_start, key), totals["sum"], totals["count"],
                                           stds["count"], stds["sum"]))
            else:
                part = PARTS[metric.kind][0]
                results.append(PartitionResult(period_start, key, totals[part], stds[part]))
    return MetricResult(budget, results), new_rows
