"""The DP release: plan (dp.plan, pure), measure (Spark + PipelineDP), stage and publish (dp.staging).

1. publish any release a crash left staged; read the restricted record (silver.release_audit) and
   check the published ledger against it (dp.budget);
2. plan: which periods get which release, over which Silver versions, at what cost; refuse if a
   period's cap would be passed - before any row is read;
3. measure: closed periods (and reprocessing, and period "none") through the engine; continual
   leaves through dp.continual; late rows counted;
4. stage the whole release as one file, then publish it table by table (dp.staging).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dp import budget as dp_budget
from dp import continual, engine_pipelinedp, engine_spark, staging, tree
from dp import metrics as dp_metrics
from dp.metrics import MetricBudget
from dp.noise import MetricResult, PartitionResult
from dp.plan import (
    MetricShare,
    PeriodTask,
    Plan,
    ReleaseKind,
    audit_rows,
    check_caps,
    plan_release,
    plan_reprocess,
)
from lakehouse import catalog, failpoints, jvm_bridge, schemas, silver
from lakehouse import periods as P
from lakehouse.config import Config, Engine, MetricKind, Period, PrivacyConfig
from lakehouse.errors import LakehouseError
from lakehouse.lock import RunLease
from lakehouse.log import progress
from lakehouse.storage import Locations

UTC = dt.UTC


@dataclass
class ReleaseOutcome:
    """What a release did. rows_in / rows_late are exact (restricted): never in summary()."""

    kind: ReleaseKind = ReleaseKind.INCREMENTAL
    release_id: int | None = None
    version_from: int = -1
    version_to: int = -1
    periods: list[dt.date | None] = field(default_factory=list)
    leaves: dict[dt.date, int] = field(default_factory=dict)  # continual: period -> this run's leaf
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows appended
    spend: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric -> (epsilon, delta) of one period
    recovered: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    message: str = ""
    rows_in: dict[dt.date | None, int] = field(default_factory=dict)
    rows_late: dict[dt.date, int] = field(default_factory=dict)
    status: dp_budget.BudgetStatus | None = None

    def summary(self) -> str:
        lines = [f"recovered release {r}: published the results staged before a crash" for r in self.recovered]
        lines += self.notes
        if self.release_id is None:
            lines.append(self.message)
        else:
            dated = sorted(p for p in self.periods if p is not None)
            what = (f"periods {dated[0]}..{dated[-1]} ({len(dated)})" if len(dated) > 1 else
                    f"period {dated[0]}" if dated else "the new rows")
            versions = (f"silver.sessions versions {self.version_from}..{self.version_to}"
                        if self.version_from <= self.version_to else
                        f"no new silver.sessions version (latest {self.version_to})")
            lines.append(f"release {self.release_id} ({self.kind}): {what}, {versions}")
            for period_start, leaf in sorted(self.leaves.items()):
                lines.append(f"  running totals of {period_start}: run {leaf}")
            per = " per period" if dated else ""
            for table, n in self.tables.items():
                if table.startswith("gold.") and table != staging.LEDGER and table.removeprefix("gold.") in self.spend:
                    eps, delta = self.spend.get(table.removeprefix("gold."), (0.0, 0.0))
                    cost = (f"epsilon {eps:.6g}, delta {delta:.6g}{per}" if eps or delta else
                            "no new spend (its periods' budget was spent at their first run)")
                    lines.append(f"  {table}: {n} rows, {cost}")
        if self.status is not None and self.status.period == Period.NONE:
            s = self.status.lifetime
            lines.append(f"epsilon spent: {s.epsilon:.6g} of {self.status.epsilon_cap:.6g} "
                         f"({max(0.0, self.status.epsilon_cap - s.epsilon):.6g} remaining)")
        return "\n".join(lines)


def metric_shares(budgets: list[MetricBudget], privacy: PrivacyConfig) -> dict[str, MetricShare]:
    """Each metric's share of a period's budget, with a spec of everything that fixes its mechanism
    and bounds: a continual tree only goes on while its spec is the one its first run paid for."""
    levels = tree.levels(privacy.max_releases_per_period)
    out = {}
    for b in budgets:
        m = b.metric
        spec = json.dumps({"kind": m.kind.value, "group_by": m.group_by, "value": m.value, "min": m.min_value,
                           "max": m.max_value, "l0": m.max_partitions_contributed,
                           "linf": m.max_contributions_per_partition, "partitions": m.public_partitions,
                           "noise": privacy.noise_kind.value, "levels": levels,
                           "mechanisms": [(s.eps, s.delta) for s in b.specs]}, sort_keys=True)
        out[m.name] = MetricShare(m.name, b.epsilon, b.delta, m.public_partitions is None, spec)
    return out


def release_time(now: dt.datetime | None) -> dt.datetime:
    """The release's clock: `now` (or the wall clock) in UTC, to the second; a naive `now` is UTC."""
    return P.utc(now or dt.datetime.now(UTC)).replace(microsecond=0)


def release_dp_metrics(spark: SparkSession, config: Config, loc: Locations, silver_version: int | None = None,
                       now: dt.datetime | None = None, lease: RunLease | None = None,
                       period: dt.date | None = None) -> ReleaseOutcome:
    """The periodic release (silver_version None), or reprocessing of Silver as of silver_version
    (`period`: only the period holding that day). `now` replaces the wall clock."""
    privacy = config.privacy
    lease = lease or RunLease()
    now = release_time(now)
    dp_metrics.validate(config.metrics, privacy)  # every parameter error before any Spark work
    if not catalog.table_exists(spark, loc.silver_sessions):
        raise LakehouseError(f"silver.sessions does not exist at {loc.silver_sessions}: run `lakehouse ingest` first")
    outcome = ReleaseOutcome(recovered=staging.recover(spark, loc, lease))
    record = dp_budget.read_record(spark, loc, [loc.gold_table(m.name) for m in config.metrics])
    state = record.state
    lease.check("repairing gold.privacy_ledger")
    dp_budget.repair_ledger(spark, loc, state, record.ledger_gap)
    budgets = dp_metrics.metric_budgets(config.metrics, privacy)
    history = silver.inserted_per_version(record.silver_history)
    latest = max(v for v, _ in history)
    version = latest if silver_version is None else min(silver_version, latest)
    first = lambda: silver.first_period(spark, loc.silver_sessions, version, privacy.period)  # noqa: E731
    shares = metric_shares(budgets, privacy)
    if silver_version is None:
        plan = plan_release(state, privacy, shares, history, now, first)
    else:
        plan = plan_reprocess(state, privacy, shares, silver_version, latest, now, first, period)
    outcome.kind, outcome.notes = plan.kind, list(plan.notes)
    outcome.status = dp_budget.status(state, config)
    if not plan.tasks:
        outcome.message = plan.message
        return outcome
    check_caps(state, plan, privacy)

    release_id = state.last_release_id + 1
    attempt = uuid.uuid4().hex
    released_at = now  # aware: PySpark would convert a naive time from the process's local zone
    progress(f"release {release_id}: {_describe(plan)} (engine {privacy.engine}, {privacy.noise_kind} noise)")
    measured = _measure(spark, config, loc, plan, state, budgets, history, release_id, attempt, lease)
    tables = _tables(config, plan, shares, measured, release_id, attempt, released_at)
    failpoints.reached("release-before-stage")
    lease.check(f"staging release {release_id}")
    staging.stage(spark, loc, release_id, tables)
    failpoints.reached("release-after-stage")
    outcome.tables = staging.publish(spark, loc, release_id, tables, lease)
    outcome.release_id, outcome.version_from, outcome.version_to = release_id, plan.version_from, plan.version_to
    if plan.kind in (ReleaseKind.CLOSED, ReleaseKind.REPROCESS):
        outcome.version_from = 0
    outcome.periods = list(dict.fromkeys(plan.periods()))
    outcome.leaves = {t.period_start: t.leaf for t in plan.tasks if t.leaf is not None and t.period_start is not None}
    outcome.rows_in, outcome.rows_late = measured.rows_in, measured.rows_late
    for (metric, _), (eps, delta) in plan.cost.items():  # every period of a metric costs the same share
        e, d = outcome.spend.get(metric, (0.0, 0.0))
        outcome.spend[metric] = (max(e, eps), max(d, delta))
    new_rows = staging.audit_rows_of(tables)
    outcome.status = dp_budget.status(dp_budget.AuditState(state.rows + tuple(new_rows)), config)
    return outcome


def _describe(plan: Plan) -> str:
    parts = []
    for kind in (ReleaseKind.INCREMENTAL, ReleaseKind.CLOSED, ReleaseKind.REPROCESS, ReleaseKind.CONTINUAL):
        starts = sorted(p for p in plan.periods(kind) if p is not None)
        if kind == ReleaseKind.INCREMENTAL and plan.periods(kind):
            parts.append(f"DP over silver.sessions versions {plan.version_from}..{plan.version_to}")
        elif starts:
            span = f"{starts[0]}..{starts[-1]}" if len(starts) > 1 else f"{starts[0]}"
            parts.append(f"{kind} {'periods' if len(starts) > 1 else 'period'} {span}")
    return "; ".join(parts)


@dataclass
class _Measured:
    results: dict[tuple[str, dt.date | None], list[PartitionResult]] = field(default_factory=dict)
    rows_in: dict[dt.date | None, int] = field(default_factory=dict)
    rows_late: dict[dt.date, int] = field(default_factory=dict)
    tree_rows: list[tuple] = field(default_factory=list)

    def add(self, results: list[MetricResult], wanted: dict[dt.date | None, tuple[str, ...]]) -> None:
        for result in results:
            name = result.budget.metric.name
            for part in result.partitions:
                if name in wanted.get(part.period_start, ()):
                    self.results.setdefault((name, part.period_start), []).append(part)
            for period_start, names in wanted.items():
                if name in names:
                    self.results.setdefault((name, period_start), [])


def _expected_rows(spark: SparkSession, loc: Locations, plan: Plan, history: list[tuple[int, int]],
                   rows: DataFrame) -> int:
    """About how many rows `rows` holds, before reading them: exactly for new rows (Silver's commit
    metrics); for periods, Silver's rows times the share of its bytes that skipping files by their
    time range leaves."""
    if plan.kind == ReleaseKind.INCREMENTAL:
        return sum(n for v, n in history if plan.version_from <= v <= plan.version_to)
    total = sum(n for v, n in history if v <= plan.version_to)
    whole = jvm_bridge.estimated_bytes(catalog.read(spark, loc.silver_sessions, plan.version_to))
    return total if whole <= 0 else int(total * min(1.0, jvm_bridge.estimated_bytes(rows) / whole))


def _measure(spark: SparkSession, config: Config, loc: Locations, plan: Plan, state: dp_budget.AuditState,
             budgets: list[MetricBudget], history: list[tuple[int, int]], release_id: int, attempt: str,
             lease: RunLease) -> _Measured:
    privacy, measured = config.privacy, _Measured()
    whole = [t for t in plan.tasks if t.kind != ReleaseKind.CONTINUAL]
    if whole:
        wanted = {t.period_start: t.metrics for t in whole}
        names = {n for t in whole for n in t.metrics}
        chosen = [b for b in budgets if b.metric.name in names]
        if plan.kind == ReleaseKind.INCREMENTAL:
            rows = silver.new_rows(spark, loc.silver_sessions, plan.version_from, plan.version_to, Period.NONE)
        elif privacy.period == Period.NONE:  # reprocessing the lakehouse's whole life
            rows = catalog.read(spark, loc.silver_sessions, plan.version_to).withColumn(
                "period_start", silver.period_column(Period.NONE))
        else:
            rows = silver.period_rows(spark, loc.silver_sessions, plan.version_to, privacy.period,
                                       [p for p in wanted if p is not None])
        starts = list(wanted)
        if privacy.engine == Engine.PIPELINEDP:
            if len(chosen) != len(budgets):  # its accountant splits the budget over the metrics it is given
                raise LakehouseError("the pipelinedp engine releases all metrics together; this release has a subset")
            results, rows_in = engine_pipelinedp.release_metrics(rows, config.metrics, privacy, starts)
        else:
            results, rows_in = engine_spark.release_metrics(rows, chosen, starts,
                                                            _expected_rows(spark, loc, plan, history, rows))
        measured.add(results, wanted)
        measured.rows_in.update({p: rows_in.get(p, 0) for p in starts})
    leaves = [t for t in plan.tasks if t.kind == ReleaseKind.CONTINUAL]
    if leaves:
        _measure_leaves(spark, config, loc, plan, state, budgets, leaves, release_id, attempt, lease, measured)
    if plan.kind != ReleaseKind.REPROCESS and plan.late_through is not None and plan.version_from <= plan.version_to:
        window = silver.new_rows(spark, loc.silver_sessions, plan.version_from, plan.version_to, privacy.period)
        for r in window.groupBy("period_start").count().collect():
            if plan.is_late(r["period_start"]):
                measured.rows_late[r["period_start"]] = int(r["count"])
    return measured


def _measure_leaves(spark: SparkSession, config: Config, loc: Locations, plan: Plan, state: dp_budget.AuditState,
                    budgets: list[MetricBudget], tasks: list[PeriodTask], release_id: int, attempt: str,
                    lease: RunLease, measured: _Measured) -> None:
    privacy = config.privacy
    sessions_path = loc.silver_sessions
    # a continual task always has a period and a leaf (plan_release makes them so)
    leaves = {t.period_start: t.leaf for t in tasks if t.period_start is not None and t.leaf is not None}
    assert len(leaves) == len(tasks), tasks
    parts: list[DataFrame] = []
    fresh = [p for p, leaf in leaves.items() if leaf == 1]
    if fresh:  # a tree's first leaf: every row the period holds so far
        parts.append(silver.period_rows(spark, sessions_path, plan.version_to, privacy.period, fresh))
    by_version: dict[int, list[dt.date]] = defaultdict(list)
    for t in tasks:
        if t.period_start is not None and leaves[t.period_start] > 1 and t.after_version < plan.version_to:
            by_version[t.after_version].append(t.period_start)
    for after, starts in by_version.items():  # later leaves: the rows committed since the last one
        parts.append(silver.new_rows(spark, sessions_path, after + 1, plan.version_to, privacy.period)
                     .where(F.col("period_start").isin(*starts)))
    tree_budgets = [b for b in budgets if b.metric.name in tasks[0].metrics]
    metrics = tuple(b.metric for b in tree_budgets)
    continuing = [p for p, leaf in leaves.items() if leaf > 1]
    continual.check_state(spark, loc, {p: state.attempts(p) for p in continuing})
    attempts = {a for p in continuing for a in state.attempts(p)}
    previous = continual.kept_so_far(spark, loc, continuing, attempts)
    columns = [f.name for f in schemas.SILVER_SESSIONS.fields] + ["period_start"]
    rows = spark.createDataFrame([], schemas.SILVER_SESSIONS).withColumn("period_start", F.lit(None).cast("date"))
    for part in parts:
        rows = rows.unionByName(part.select(*columns))
    leaf = continual.bounded_leaf(rows, metrics, previous)
    lease.check(f"writing the continual state of release {release_id}")
    (leaf.kept.withColumn("attempt", F.lit(attempt)).select(*schemas.RELEASE_BOUNDS.names)
     .unionByName(continual.markers(spark, list(leaves), attempt))
     .write.format("delta").mode("append").partitionBy("period_start")
     .option("mergeSchema", "true")  # adds unit_check to a table kept before it existed
     .save(loc.release_bounds))
    leaf.release()
    failpoints.reached("release-after-bounds")
    levels = tree.levels(privacy.max_releases_per_period)
    nodes = continual.stored_nodes(spark, loc, continuing)
    for b in tree_budgets:
        result, node_rows = continual.running_totals(b, leaf.totals[b.metric.name], leaves, levels, nodes, release_id)
        measured.add([result], {t.period_start: t.metrics for t in tasks})
        measured.tree_rows += node_rows
    measured.rows_in.update({p: leaf.rows_in.get(p, 0) for p in leaves})


def _tables(config: Config, plan: Plan, shares: dict[str, MetricShare], measured: _Measured, release_id: int,
            attempt: str,
            released_at: dt.datetime) -> staging.Tables:
    record = audit_rows(plan, config.privacy, shares, release_id, attempt, released_at, measured.rows_in,
                        measured.rows_late)
    tables: staging.Tables = {
        staging.AUDIT: (schemas.RELEASE_AUDIT, [schemas.row(schemas.RELEASE_AUDIT, asdict(r)) for r in record]),
        staging.TREE: (schemas.RELEASE_TREE, measured.tree_rows),
        staging.LEDGER: (schemas.PRIVACY_LEDGER, [dp_budget.ledger_row(r) for r in record
                                                  if r.kind != ReleaseKind.LATE])}
    kinds = {t.period_start: t.kind for t in plan.tasks}
    for metric in config.metrics:
        schema = schemas.gold_metric(metric)
        rows = []
        for task in plan.tasks:
            if metric.name not in task.metrics:
                continue
            eps, delta = plan.cost[(metric.name, task.period_start)]
            for p in measured.results.get((metric.name, task.period_start), []):
                values = {"release_id": release_id, "kind": kinds[task.period_start].value,
                          "period_start": p.period_start, "silver_version": plan.version_to, metric.group_by: p.key,
                          metric.output: float(p.value), "noise_stddev": p.noise_stddev, "epsilon": eps,
                          "delta": delta, "released_at": released_at}
                if metric.kind == MetricKind.MEAN:
                    assert p.dp_count is not None and p.approx_stddev is not None, p  # noise.mean_result sets both
                    values.update(dp_count=float(p.dp_count), approx_stddev=float(p.approx_stddev))
                rows.append(schemas.row(schema, values))
        tables[metric.table] = (schema, rows)
    return tables
