"""Would a periodic release do nothing? Answered for a local lakehouse with delta-rs, without Spark:
the same record (silver.release_audit), the same checks and the same pure planner (dp.plan) as
release_dp_metrics, so an hourly run between two period closes costs a second.

It errs one way only: it answers only when the plan has no task, nothing is staged and the ledger is
whole; otherwise (work to do, a repair, a file without statistics) it returns None and the release
runs on Spark as always. It never spends, writes or decides anything the Spark path would not.
"""

from __future__ import annotations

import datetime as dt

from dp import budget as dp_budget
from dp import metrics as dp_metrics
from dp import staging
from dp.plan import plan_release
from dp.release import ReleaseOutcome, metric_shares, release_time
from lakehouse import periods as P
from lakehouse import silver
from lakehouse.config import Config
from lakehouse.readers import LocalReader, local
from lakehouse.storage import Locations


class _NeedsSpark(Exception):
    """Raised where only a Spark read can answer."""


def idle_release(config: Config, loc: Locations, now: dt.datetime | None = None) -> ReleaseOutcome | None:
    """The outcome of a periodic release that has nothing to do; None when it must run on Spark."""
    if not local(loc.silver, loc.gold):
        return None
    tables, privacy = LocalReader(), config.privacy
    if not tables.exists(loc.silver_sessions) or staging.local_pending(loc):
        return None
    dp_metrics.validate(config.metrics, privacy)
    try:
        record = dp_budget.read_record_with(tables, loc, [loc.gold_table(m.name) for m in config.metrics])
    except dp_budget.LOCAL_READ_ERRORS:
        return None  # what delta-rs cannot read (or a file without statistics), Spark reads - or fails closed on
    if record.ledger_gap:
        return None  # republished by the Spark path
    state, history = record.state, silver.inserted_per_version(record.silver_history)
    shares = metric_shares(dp_metrics.metric_budgets(config.metrics, privacy), privacy)
    def first_period() -> dt.date | None:  # from the files' statistics, as Spark answers min() too
        try:
            earliest = tables.min_value(loc.silver_sessions, "session_start")
        except ValueError as exc:
            raise _NeedsSpark from exc
        return None if earliest is None else P.period_start(earliest, privacy.period)

    try:
        plan = plan_release(state, privacy, shares, history, release_time(now), first_period)
    except _NeedsSpark:
        return None
    if plan.tasks:
        return None
    return ReleaseOutcome(kind=plan.kind, notes=list(plan.notes), message=plan.message,
                          status=dp_budget.status(state, config))
