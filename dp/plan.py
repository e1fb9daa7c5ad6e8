"""What a release run does and what it costs, decided before any row is read. Pure: no Spark, no I/O.

Input: the restricted record of every earlier release (:class:`AuditState`, read from
``silver.release_audit``), the privacy config, each metric's share of a period's budget, Silver's
commit history and the clock. Output: a :class:`Plan` - which periods get which kind of release,
over which Silver versions, and what each (metric, period) spends - or a refusal when a period's cap
would be passed. The release module then only measures (Spark) and writes (Delta).

Which periods are released depends only on the clock and on the record, never on the data (but for
the first period with data, which starts the series): every period from that first one up to the
last closed one is released, with noisy zeros where it had no rows.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from lakehouse import periods as P
from lakehouse.config import Period, PrivacyConfig, ReleaseMode
from lakehouse.errors import BudgetExceeded, LakehouseError
from lakehouse.schemas import ReleaseKind

# Sums of shares like 1/3 + 1/3 + 1/3 are not exactly 1.0 in floating point; a release that fits the
# cap up to this much rounding is not refused.
EPSILON_SLACK = 1e-9


@dataclass(frozen=True)
class AuditRow:
    """One row of silver.release_audit (fields by name, as lakehouse.schemas.RELEASE_AUDIT)."""

    release_id: int
    attempt: str
    kind: ReleaseKind
    metric: str
    period: str
    period_start: dt.date | None
    epsilon: float
    delta: float
    silver_version_from: int
    silver_version_to: int
    rows_in: int
    rows_late: int
    leaf: int | None
    noise_kind: str
    engine: str
    released_at: dt.datetime
    spec: str  # continual: the metric's mechanism and bounds the period's tree was opened with

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AuditRow:
        fields = {name: values[name] for name in cls.__dataclass_fields__}
        fields["kind"] = ReleaseKind(fields["kind"])
        return cls(**fields)


@dataclass(frozen=True)
class AuditState:
    """Everything earlier releases decided, derived from the audit rows."""

    rows: tuple[AuditRow, ...] = ()

    @cached_property
    def last_release_id(self) -> int:
        return max((r.release_id for r in self.rows), default=0)

    @cached_property
    def spent(self) -> dict[dt.date | None, tuple[float, float]]:
        """(epsilon, delta) spent per period (None: period "none", the lakehouse's life)."""
        out: dict[dt.date | None, tuple[float, float]] = defaultdict(lambda: (0.0, 0.0))
        for r in self.rows:
            eps, delta = out[r.period_start]
            out[r.period_start] = (eps + r.epsilon, delta + r.delta)
        return dict(out)

    @cached_property
    def period_kinds(self) -> set[str]:
        return {r.period for r in self.rows}

    @cached_property
    def released(self) -> dict[dt.date, set[str]]:
        """Per period, the metrics released by a closed or continual release (reprocess excluded)."""
        out: dict[dt.date, set[str]] = defaultdict(set)
        for r in self.rows:
            if r.kind in (ReleaseKind.CLOSED, ReleaseKind.CONTINUAL) and r.period_start is not None:
                out[r.period_start].add(r.metric)
        return dict(out)

    @cached_property
    def leaves(self) -> dict[dt.date, int]:
        """Per period with a continual tree, the last leaf published."""
        out: dict[dt.date, int] = {}
        for r in self.rows:
            if r.kind == ReleaseKind.CONTINUAL and r.leaf is not None and r.period_start is not None:
                out[r.period_start] = max(out.get(r.period_start, 0), r.leaf)
        return out

    @cached_property
    def tree_specs(self) -> dict[dt.date, dict[str, str]]:
        """Per period with a tree, each tree metric's spec at the tree's first leaf (what was paid for)."""
        out: dict[dt.date, dict[str, str]] = defaultdict(dict)
        for r in self.rows:
            if r.kind == ReleaseKind.CONTINUAL and r.leaf == 1 and r.period_start is not None:
                out[r.period_start][r.metric] = r.spec
        return dict(out)

    @cached_property
    def closed_periods(self) -> set[dt.date]:
        """Periods with a closed release of any metric: never reopened for running totals."""
        return {r.period_start for r in self.rows if r.kind == ReleaseKind.CLOSED and r.period_start is not None}

    @cached_property
    def last_released_at(self) -> dt.datetime | None:
        return max((P.utc(r.released_at) for r in self.rows), default=None)

    @cached_property
    def leaf_versions(self) -> dict[dt.date, int]:
        """Per period with a tree, the Silver version its last leaf read up to."""
        out: dict[dt.date, int] = {}
        for r in self.rows:
            if r.kind == ReleaseKind.CONTINUAL and r.period_start is not None:
                out[r.period_start] = max(out.get(r.period_start, -1), r.silver_version_to)
        return out

    @cached_property
    def last_version(self) -> int:
        """The Silver version the latest run accounted for: rows of later versions are new."""
        return max((r.silver_version_to for r in self.rows if r.kind != ReleaseKind.REPROCESS), default=-1)

    @cached_property
    def last_incremental_version(self) -> int:
        return max((r.silver_version_to for r in self.rows if r.kind == ReleaseKind.INCREMENTAL), default=-1)

    def attempts(self, period_start: dt.date) -> set[str]:
        """The computations whose continual state (kept contributions) counts for a period."""
        return {r.attempt for r in self.rows if r.kind == ReleaseKind.CONTINUAL and r.period_start == period_start}


@dataclass(frozen=True)
class MetricShare:
    """A metric's share of one release's (one period's) budget, and how it is released."""

    name: str
    epsilon: float
    delta: float
    selection: bool  # DP partition selection (no public partitions): never a running total
    spec: str = ""  # everything that fixes the metric's mechanism and bounds (a tree keeps its first run's)


@dataclass(frozen=True)
class PeriodTask:
    period_start: dt.date | None
    kind: ReleaseKind
    metrics: tuple[str, ...]
    leaf: int | None = None  # continual: this run's leaf t
    spends: bool = True  # continual: only the tree's first leaf spends (the whole period's share)
    after_version: int = -1  # continual t > 1: the leaf holds rows committed after this version


@dataclass(frozen=True)
class Plan:
    kind: ReleaseKind  # the run's main kind (for the summary); tasks carry their own
    version_from: int
    version_to: int
    tasks: tuple[PeriodTask, ...] = ()
    # New rows (versions version_from..version_to) of a period are late - counted in the audit, in
    # no release - if the period is closed (<= late_through) and no closed release of this run
    # covers it, or if its running totals ended (tree closed, or past the horizon).
    late_through: dt.date | None = None
    covered: frozenset[dt.date] = frozenset()
    late_trees: frozenset[dt.date] = frozenset()
    notes: tuple[str, ...] = ()
    message: str = ""  # why nothing is released
    cost: Mapping[tuple[str, dt.date | None], tuple[float, float]] = field(default_factory=dict)

    def is_late(self, period_start: dt.date) -> bool:
        return period_start in self.late_trees or (
            self.late_through is not None and period_start <= self.late_through and period_start not in self.covered)

    def periods(self, kind: ReleaseKind | None = None) -> list[dt.date | None]:
        return [t.period_start for t in self.tasks if kind is None or t.kind == kind]

    def spend(self, period_start: dt.date | None) -> tuple[float, float]:
        eps = sum(e for (_, p), (e, _) in self.cost.items() if p == period_start)
        delta = sum(d for (_, p), (_, d) in self.cost.items() if p == period_start)
        return eps, delta


def _costs(tasks: Iterable[PeriodTask], shares: Mapping[str, MetricShare]) -> dict:
    cost: dict[tuple[str, dt.date | None], tuple[float, float]] = {}
    for task in tasks:
        for name in task.metrics:
            share = shares[name]
            cost[(name, task.period_start)] = (share.epsilon, share.delta) if task.spends else (0.0, 0.0)
    return cost


def check_period(state: AuditState, privacy: PrivacyConfig) -> None:
    """A lakehouse keeps one privacy unit: changing [privacy] period would mix units whose spends
    do not compose per period (a week overlaps seven days' budgets)."""
    recorded = state.period_kinds - {privacy.period.value}
    if recorded:
        raise LakehouseError(
            f"[privacy] period is {privacy.period.value!r} but this lakehouse's releases were made with period "
            f"{sorted(recorded)[0]!r}: set it back, or start a new lakehouse (a new --root) for the new privacy unit")


def check_clock(state: AuditState, now: dt.datetime) -> None:
    """A run never goes back in time: from an earlier `now` a closed period would look open again."""
    last = state.last_released_at
    if last is not None and now < last:
        raise LakehouseError(f"the run's time ({now:%Y-%m-%d %H:%M:%S} UTC) is before the latest release "
                             f"({last:%Y-%m-%d %H:%M:%S} UTC): releases must move forward in time (a period released "
                             "closed could otherwise be released again); check --now or this machine's clock")


def check_caps(state: AuditState, plan: Plan, privacy: PrivacyConfig) -> None:
    """Refuses the whole plan if any period would pass its epsilon or delta cap."""
    for period_start in dict.fromkeys(p for _, p in plan.cost):
        spent_eps, spent_delta = state.spent.get(period_start, (0.0, 0.0))
        eps, delta = plan.spend(period_start)
        where = "" if period_start is None else f" of period {period_start}"
        if spent_eps + eps > privacy.epsilon_cap + EPSILON_SLACK:
            raise BudgetExceeded(
                f"privacy budget exhausted{where}: this release needs epsilon {eps:.6g} but {spent_eps:.6g} of the "
                f"cap {privacy.epsilon_cap:.6g} ([privacy] epsilon_cap) is spent; nothing was released or written")
        if spent_delta + delta > privacy.delta_cap * (1 + EPSILON_SLACK):
            raise BudgetExceeded(
                f"privacy budget exhausted{where}: this release needs delta {delta:.6g} but {spent_delta:.6g} of the "
                f"cap {privacy.delta_cap:.6g} ([privacy] delta_cap) is spent; nothing was released or written")


def plan_release(state: AuditState, privacy: PrivacyConfig, shares: Mapping[str, MetricShare],
                 history: list[tuple[int, int]], now: dt.datetime,
                 first_period: Callable[[], dt.date | None]) -> Plan:
    """The periodic release. `history`: (Silver version, rows it inserted) per commit;
    `first_period`: the period of Silver's earliest session (called only while no period is released)."""
    check_period(state, privacy)
    check_clock(state, now)
    latest = max((v for v, _ in history), default=-1)
    if privacy.period == Period.NONE:
        return _plan_incremental(state, shares, history, latest)
    configured = (P.period_start(dt.date.fromisoformat(privacy.first_period), privacy.period)
                  if privacy.first_period else None)
    start = configured or min(state.released, default=None) or first_period()
    window = (state.last_version + 1, latest)
    if start is None:
        return Plan(ReleaseKind.CLOSED, *window, message="nothing to release: silver.sessions holds no sessions yet")
    period, close_after = privacy.period, privacy.close_after_hours
    last_closed = P.last_closed(now, period, close_after)
    names = tuple(shares)
    tree = tuple(n for n in names if not shares[n].selection)
    continual = privacy.release == ReleaseMode.CONTINUAL
    tasks: list[PeriodTask] = []
    late_trees: set[dt.date] = set()
    for p in P.starts_between(start, last_closed, period):
        missing = tuple(n for n in names if n not in state.released.get(p, set()))
        if not missing:
            continue
        if state.leaves.get(p):  # its tree ran while it was open: only the selection metrics remain
            late_trees.add(p)
        tasks.append(PeriodTask(p, ReleaseKind.CLOSED, missing))
    notes: list[str] = []
    if continual and tree:
        horizon = privacy.max_releases_per_period
        for p in P.open_periods(now, period, close_after):
            if p < start:
                continue
            if p in state.closed_periods:  # released whole already (e.g. close_after_hours was raised)
                continue
            leaf = state.leaves.get(p, 0) + 1
            if leaf > horizon:
                notes.append(f"period {p}: its {horizon} runs ([privacy] max_releases_per_period) are published; "
                             "nothing new until it closes")
                late_trees.add(p)
                continue
            opened = state.tree_specs.get(p, {})
            if leaf > 1 and opened != {n: shares[n].spec for n in tree}:
                # the tree's budget and bounds were fixed at its first run: with others it would spend more
                notes.append(f"period {p}: its metrics or their parameters changed since its running totals began "
                             "(their budget was fixed then): no more running totals for it; it is released at close")
                late_trees.add(p)
                continue
            tasks.append(PeriodTask(p, ReleaseKind.CONTINUAL, tree, leaf=leaf, spends=leaf == 1,
                                    after_version=state.leaf_versions.get(p, -1) if leaf > 1 else -1))
    # rows of a closed period that no closed release of this run covers arrived after its release
    # (or before the first released period): they are counted, not published
    covered = frozenset(t.period_start for t in tasks if t.kind == ReleaseKind.CLOSED and t.period_start) - late_trees
    if not tasks:
        nxt = P.next_start(last_closed, period)
        message = (f"nothing to release: period {nxt} closes at "
                   f"{P.closes_at(nxt, period, close_after):%Y-%m-%d %H:%M} UTC; no budget spent")
        return Plan(ReleaseKind.CLOSED, *window, notes=tuple(notes), message=message, late_through=last_closed,
                    covered=covered, late_trees=frozenset(late_trees))
    kind = ReleaseKind.CONTINUAL if any(t.kind == ReleaseKind.CONTINUAL for t in tasks) else ReleaseKind.CLOSED
    return Plan(kind, *window, tasks=tuple(tasks), notes=tuple(notes), cost=_costs(tasks, shares),
                late_through=last_closed, covered=covered, late_trees=frozenset(late_trees))


def _plan_incremental(state: AuditState, shares: Mapping[str, MetricShare], history: list[tuple[int, int]],
                      latest: int) -> Plan:
    v_from, v_to = state.last_incremental_version + 1, latest
    if not any(rows for version, rows in history if v_from <= version <= v_to):
        return Plan(ReleaseKind.INCREMENTAL, v_from, v_to,
                    message=f"nothing to release: no rows added to silver.sessions since version "
                            f"{state.last_incremental_version} (latest {latest}); no budget spent")
    tasks = (PeriodTask(None, ReleaseKind.INCREMENTAL, tuple(shares)),)
    return Plan(ReleaseKind.INCREMENTAL, v_from, v_to, tasks=tasks, cost=_costs(tasks, shares))


def plan_reprocess(state: AuditState, privacy: PrivacyConfig, shares: Mapping[str, MetricShare], version: int,
                   latest: int, now: dt.datetime, first_period: Callable[[], dt.date | None],
                   only: dt.date | None = None) -> Plan:
    """Re-release over Silver as of `version`: with period "none" the whole table, else its closed
    periods (or the one holding `only`), each against its own period's cap."""
    check_period(state, privacy)
    if version > latest:
        raise LakehouseError(f"silver.sessions has versions 0..{latest}; --silver-version {version} does not exist")
    names = tuple(shares)
    if privacy.period == Period.NONE:
        if only is not None:
            raise LakehouseError('--period needs a [privacy] period; this lakehouse has period = "none"')
        tasks: tuple[PeriodTask, ...] = (PeriodTask(None, ReleaseKind.REPROCESS, names),)
    else:
        last_closed = P.last_closed(now, privacy.period, privacy.close_after_hours)
        if only is not None:
            start = P.period_start(only, privacy.period)
            if start > last_closed:
                raise LakehouseError(f"period {start} has not closed yet; reprocess re-releases closed periods only")
            starts = [start]
        else:
            first = first_period()
            starts = P.starts_between(first, last_closed, privacy.period) if first else []
        if not starts:
            return Plan(ReleaseKind.REPROCESS, 0, version,
                        message=f"nothing to reprocess: silver.sessions version {version} holds no closed period")
        tasks = tuple(PeriodTask(p, ReleaseKind.REPROCESS, names) for p in starts)
    return Plan(ReleaseKind.REPROCESS, 0, version, tasks=tasks, cost=_costs(tasks, shares))


def audit_rows(plan: Plan, privacy: PrivacyConfig, shares: Mapping[str, MetricShare], release_id: int, attempt: str,
               released_at: dt.datetime, rows_in: Mapping[dt.date | None, int],
               rows_late: Mapping[dt.date, int]) -> list[AuditRow]:
    """The restricted record of a planned release once measured: one row per (task, metric) with
    its spend and the exact rows read, and one "late" row per period that received rows after its
    release."""
    def record(kind: ReleaseKind, metric: str, period_start: dt.date | None, epsilon: float, delta: float,
               version_from: int, rows_in: int, rows_late: int, leaf: int | None, spec: str = "") -> AuditRow:
        return AuditRow(release_id=release_id, attempt=attempt, kind=kind, metric=metric, period=privacy.period.value,
                        period_start=period_start, epsilon=epsilon, delta=delta, silver_version_from=version_from,
                        silver_version_to=plan.version_to, rows_in=rows_in, rows_late=rows_late, leaf=leaf,
                        noise_kind=privacy.noise_kind.value, engine=privacy.engine.value, released_at=released_at,
                        spec=spec)

    rows = []
    for task in plan.tasks:
        if task.kind == ReleaseKind.CONTINUAL and (task.leaf or 0) > 1:
            v_from = task.after_version + 1  # the rows committed since the period's previous run
        elif task.kind == ReleaseKind.INCREMENTAL:
            v_from = plan.version_from
        else:
            v_from = 0  # every row of the period as of version_to
        for name in task.metrics:
            eps, delta = plan.cost[(name, task.period_start)]
            rows.append(record(task.kind, name, task.period_start, eps, delta, v_from,
                               rows_in.get(task.period_start, 0), 0, task.leaf,
                               shares[name].spec if task.kind == ReleaseKind.CONTINUAL else ""))
    for period_start, n in sorted(rows_late.items()):
        rows.append(record(ReleaseKind.LATE, "", period_start, 0.0, 0.0, plan.version_from, 0, n, None))
    return rows
