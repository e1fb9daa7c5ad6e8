"""The release plan, the periods and the tree's arithmetic: pure functions, no Spark.

Includes the scheduled job's long run: 60 days of hourly runs in both release modes, planned and
recorded exactly as a release does (plan_release -> check_caps -> audit_rows), with the record fed
back into the next run's plan.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter

import pytest

from dp import tree
from dp.plan import AuditState, MetricShare, ReleaseKind, audit_rows, check_caps, plan_release, plan_reprocess
from lakehouse import periods as P
from lakehouse.config import Period, PrivacyConfig, ReleaseMode
from lakehouse.errors import BudgetExceeded, LakehouseError

UTC = dt.UTC
SHARES = {"continents": MetricShare("continents", 1 / 3, 0.0, False),
          "devices": MetricShare("devices", 1 / 3, 0.0, False),
          "countries": MetricShare("countries", 1 / 3, 1e-6, True)}
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # the recorded release time of test releases
DAY = PrivacyConfig()  # the default: period day, closed, close after 2 h, horizon 32
CONTINUAL = dataclasses.replace(DAY, release=ReleaseMode.CONTINUAL)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


# ------------------------------------------------------------------------------------------
# periods


@pytest.mark.parametrize("period, moment, start, nxt", [
    (Period.DAY, "2026-11-30T23:59:59", "2026-11-30", "2026-12-01"),
    (Period.WEEK, "2026-12-06T12:00:00", "2026-11-30", "2026-12-07"),  # Sunday -> its Monday
    (Period.WEEK, "2026-11-30T00:00:00", "2026-11-30", "2026-12-07"),
    (Period.MONTH, "2026-12-31T23:00:00", "2026-12-01", "2027-01-01"),
    (Period.MONTH, "2026-02-14T00:00:00", "2026-02-01", "2026-03-01"),
])
def test_period_start_and_next(period, moment, start, nxt):
    assert P.period_start(at(moment), period) == d(start)
    assert P.next_start(d(start), period) == d(nxt)
    assert P.bounds(d(start), period) == (at(f"{start}T00:00:00"), at(f"{nxt}T00:00:00"))


def test_a_period_closes_close_after_hours_after_its_end():
    assert P.closes_at(d("2026-11-30"), Period.DAY, 2) == at("2026-12-01T02:00:00")
    assert P.last_closed(at("2026-12-01T01:59:59"), Period.DAY, 2) == d("2026-11-29")
    assert P.last_closed(at("2026-12-01T02:00:00"), Period.DAY, 2) == d("2026-11-30")
    assert P.open_periods(at("2026-12-01T01:00:00"), Period.DAY, 2) == [d("2026-11-30"), d("2026-12-01")]
    assert P.open_periods(at("2026-12-01T03:00:00"), Period.DAY, 2) == [d("2026-12-01")]
    assert P.last_closed(at("2026-12-08T00:30:00"), Period.WEEK, 0) == d("2026-11-30")
    assert P.last_closed(at("2026-12-01T05:00:00"), Period.MONTH, 6) == d("2026-10-01")


# ------------------------------------------------------------------------------------------
# the tree


def test_tree_levels_and_nodes():
    assert [tree.levels(h) for h in (1, 2, 8, 26, 32, 33)] == [1, 2, 4, 5, 6, 6]
    assert tree.completed_at(1) == [(0, 0)]
    assert tree.completed_at(4) == [(0, 3), (1, 1), (2, 0)]
    assert tree.completed_at(6) == [(0, 5), (1, 2)]
    assert tree.decomposition(5) == [(2, 0), (0, 4)]
    assert tree.decomposition(31) == [(4, 0), (3, 2), (2, 6), (1, 14), (0, 30)]
    assert tree.children((2, 1)) == ((1, 2), (1, 3))


@pytest.mark.parametrize("t", range(1, 65))
def test_tree_decomposition_tiles_the_leaves_and_uses_only_completed_nodes(t):
    nodes = tree.decomposition(t)
    covered = [leaf for level, j in nodes for leaf in range(j * 2 ** level + 1, (j + 1) * 2 ** level + 1)]
    assert covered == list(range(1, t + 1))
    assert len(nodes) == bin(t).count("1")
    done = {n for s in range(1, t + 1) for n in tree.completed_at(s)}
    assert set(nodes) <= done


def test_every_leaf_is_in_one_node_per_level():
    """What the sensitivity rests on: over H leaves, each level's completed nodes are disjoint, so a
    unit's contribution to one leaf reaches each level once."""
    horizon = 32
    done = [n for s in range(1, horizon + 1) for n in tree.completed_at(s)]
    for leaf in range(1, horizon + 1):
        holding = [(lv, j) for lv, j in done if j * 2 ** lv < leaf <= (j + 1) * 2 ** lv]
        assert sorted(lv for lv, _ in holding) == list(range(tree.levels(horizon)))


# ------------------------------------------------------------------------------------------
# plans


def history(*rows_per_version: int) -> list[tuple[int, int]]:
    return list(enumerate(rows_per_version))


def record(state: AuditState, plan, release_id: int, privacy: PrivacyConfig = DAY) -> AuditState:
    rows = audit_rows(plan, privacy, SHARES, release_id, f"attempt-{release_id}", NOW, {}, {})
    return AuditState(state.rows + tuple(rows))


def test_closed_release_of_every_closed_period_from_the_first_with_data():
    plan = plan_release(AuditState(), DAY, SHARES, history(0, 50), at("2026-11-04T03:00:00"), lambda: d("2026-11-01"))
    assert [t.period_start for t in plan.tasks] == [d("2026-11-01"), d("2026-11-02"), d("2026-11-03")]
    assert {t.kind for t in plan.tasks} == {ReleaseKind.CLOSED}
    assert all(t.metrics == tuple(SHARES) for t in plan.tasks)
    assert plan.spend(d("2026-11-02")) == pytest.approx((1.0, 1e-6))


def test_a_released_period_is_not_released_again_and_nothing_is_due_until_the_next_closes():
    state = AuditState()
    first = plan_release(state, DAY, SHARES, history(0, 50), at("2026-11-04T03:00:00"), lambda: d("2026-11-01"))
    state = record(state, first, 1)
    again = plan_release(state, DAY, SHARES, history(0, 50, 9), at("2026-11-05T01:59:00"), lambda: 1 / 0)
    assert not again.tasks and "period 2026-11-04 closes at 2026-11-05 02:00 UTC" in again.message
    later = plan_release(state, DAY, SHARES, history(0, 50, 9), at("2026-11-05T02:00:00"), lambda: 1 / 0)
    assert [t.period_start for t in later.tasks] == [d("2026-11-04")]
    # rows that arrive now for 2026-11-02 are late: counted, not released; 2026-11-04's are in its release
    assert later.is_late(d("2026-11-02")) and not later.is_late(d("2026-11-04"))
    assert not later.is_late(d("2026-11-05"))  # still open: it will be released


def test_no_data_at_all_releases_nothing():
    plan = plan_release(AuditState(), DAY, SHARES, history(0), at("2026-11-04T03:00:00"), lambda: None)
    assert not plan.tasks and "holds no sessions yet" in plan.message


def test_continual_opens_a_tree_that_spends_once_and_closes_into_the_selection_metric():
    state, now = AuditState(), at("2026-11-04T00:30:00")
    first = plan_release(state, CONTINUAL, SHARES, history(0, 5), now, lambda: d("2026-11-03"))
    # 2026-11-03 ended 30 min ago but closes at 02:00: both days are open
    assert [(t.period_start, t.kind, t.leaf, t.spends) for t in first.tasks] == [
        (d("2026-11-03"), ReleaseKind.CONTINUAL, 1, True), (d("2026-11-04"), ReleaseKind.CONTINUAL, 1, True)]
    assert first.tasks[0].metrics == ("continents", "devices")  # countries need partition selection: at close
    state = record(state, first, 1)
    second = plan_release(state, CONTINUAL, SHARES, history(0, 5, 7), now + dt.timedelta(hours=1), lambda: 1 / 0)
    assert [(t.leaf, t.spends, t.after_version) for t in second.tasks] == [(2, False, 1), (2, False, 1)]
    assert second.spend(d("2026-11-03")) == (0.0, 0.0)
    state = record(state, second, 2)
    closing = plan_release(state, CONTINUAL, SHARES, history(0, 5, 7), at("2026-11-04T02:00:00"), lambda: 1 / 0)
    assert [(t.period_start, t.kind, t.metrics) for t in closing.tasks] == [
        (d("2026-11-03"), ReleaseKind.CLOSED, ("countries",)), (d("2026-11-04"), ReleaseKind.CONTINUAL,
                                                               ("continents", "devices"))]
    assert closing.is_late(d("2026-11-03"))  # its tree has closed: rows after its last leaf are late for it
    state = record(state, closing, 3)
    assert state.spent[d("2026-11-03")] == pytest.approx((1.0, 1e-6))


def test_continual_runs_past_the_horizon_publish_nothing_new():
    privacy = dataclasses.replace(CONTINUAL, max_releases_per_period=3)
    state, now = AuditState(), at("2026-11-04T03:00:00")
    for i in range(3):
        plan = plan_release(state, privacy, SHARES, history(0, 5), now + dt.timedelta(hours=i), lambda: d("2026-11-04"))
        assert [t.leaf for t in plan.tasks] == [i + 1]
        state = record(state, plan, i + 1)
    plan = plan_release(state, privacy, SHARES, history(0, 5), now + dt.timedelta(hours=3), lambda: 1 / 0)
    assert not plan.tasks
    assert "period 2026-11-04: its 3 runs ([privacy] max_releases_per_period) are published" in plan.notes[0]
    assert plan.is_late(d("2026-11-04"))


def test_caps_refuse_the_whole_plan():
    privacy = dataclasses.replace(DAY, epsilon_cap=2.0)
    state = AuditState()
    for version in (1, 2):
        plan = plan_reprocess(state, privacy, SHARES, version, 2, at("2026-11-04T03:00:00"), lambda: 1 / 0,
                              only=d("2026-11-02"))
        check_caps(state, plan, privacy)
        state = record(state, plan, version)
    plan = plan_reprocess(state, privacy, SHARES, 2, 2, at("2026-11-04T03:00:00"), lambda: 1 / 0, only=d("2026-11-02"))
    with pytest.raises(BudgetExceeded, match="exhausted of period 2026-11-02: this release needs epsilon 1 but 2"):
        check_caps(state, plan, privacy)
    delta_capped = dataclasses.replace(DAY, delta_cap=1.5e-6)
    with pytest.raises(BudgetExceeded, match="delta_cap"):
        check_caps(state, plan, delta_capped)


def test_reprocess_only_closed_periods_and_never_another_privacy_unit():
    with pytest.raises(LakehouseError, match="has not closed yet"):
        plan_reprocess(AuditState(), DAY, SHARES, 1, 1, at("2026-11-04T01:00:00"), lambda: 1 / 0, only=d("2026-11-03"))
    with pytest.raises(LakehouseError, match="versions 0..1; --silver-version 5 does not exist"):
        plan_reprocess(AuditState(), DAY, SHARES, 5, 1, at("2026-11-04T03:00:00"), lambda: 1 / 0)
    state = record(AuditState(), plan_release(AuditState(), DAY, SHARES, history(0, 5), at("2026-11-04T03:00:00"),
                                              lambda: d("2026-11-03")), 1)
    weekly = dataclasses.replace(DAY, period=Period.WEEK)
    with pytest.raises(LakehouseError, match="releases were made with period 'day'"):
        plan_release(state, weekly, SHARES, history(0, 5), at("2026-11-10T03:00:00"), lambda: 1 / 0)


def test_period_none_releases_new_rows_only():
    none = dataclasses.replace(DAY, period=Period.NONE)
    plan = plan_release(AuditState(), none, SHARES, history(0, 5, 0), at("2026-11-04T03:00:00"), lambda: 1 / 0)
    assert (plan.version_from, plan.version_to, [t.kind for t in plan.tasks]) == (0, 2, [ReleaseKind.INCREMENTAL])
    state = record(AuditState(), plan, 1, none)
    assert plan_release(state, none, SHARES, history(0, 5, 0, 0), at("2026-11-05T00:00:00"), lambda: 1 / 0).message


@pytest.mark.parametrize("privacy", [DAY, CONTINUAL], ids=["closed", "continual"])
def test_sixty_days_of_hourly_runs_never_refuse_and_release_each_closed_day_once(privacy):
    """The scheduled job: a run every hour at :17 for 60 days, new rows every hour. Every run's plan
    fits every cap; every closed day is released exactly once (each metric); continual trees stay
    within the horizon and spend once per day; the spend per day is exactly epsilon_per_release."""
    state, version, release_id = AuditState(), 0, 0
    start = at("2026-09-01T00:17:00")
    runs = 60 * 24
    for hour in range(runs):
        now = start + dt.timedelta(hours=hour)
        version += 1
        plan = plan_release(state, privacy, SHARES, history(*([10] * (version + 1))), now, lambda: d("2026-09-01"))
        check_caps(state, plan, privacy)  # never refused
        if plan.tasks:
            release_id += 1
            state = AuditState(state.rows + tuple(audit_rows(plan, privacy, SHARES, release_id, f"a{release_id}", now,
                                                             {}, {})))
    last_closed = P.last_closed(start + dt.timedelta(hours=runs - 1), Period.DAY, privacy.close_after_hours)
    closed_days = P.starts_between(d("2026-09-01"), last_closed, Period.DAY)
    assert len(closed_days) == 59
    released = Counter((r.period_start, r.metric) for r in state.rows
                       if r.kind == ReleaseKind.CLOSED or (r.kind == ReleaseKind.CONTINUAL and r.leaf == 1))
    assert {released[(day, m)] for day in closed_days for m in SHARES} == {1}
    for day in closed_days:
        eps, delta = state.spent[day]
        assert eps == pytest.approx(privacy.epsilon_per_release) and delta == pytest.approx(1e-6)
        assert eps <= privacy.epsilon_cap and delta <= privacy.delta_cap
    if privacy.release == ReleaseMode.CONTINUAL:
        # a day is open from 00:00 to 02:00 the next day: 26 hourly runs, all within the horizon of 32
        leaves = Counter(r.period_start for r in state.rows if r.kind == ReleaseKind.CONTINUAL and r.metric == "devices")
        assert {leaves[day] for day in closed_days[1:]} == {26}
        assert max(state.leaves.values()) <= privacy.max_releases_per_period
    else:
        assert {r.kind for r in state.rows} == {ReleaseKind.CLOSED}
        assert release_id == len(closed_days)  # one release a day, at the first run after 02:00


def test_a_run_never_goes_back_in_time():
    """From an earlier `now`, a closed period would look open (and release again)."""
    state = record(AuditState(), plan_release(AuditState(), DAY, SHARES, history(0, 5), at("2026-11-04T03:00:00"),
                                              lambda: d("2026-11-03")), 1)
    later = dataclasses.replace(state.rows[0], released_at=dt.datetime(2026, 11, 4, 3, 0))
    state = AuditState((later,) + state.rows[1:])
    with pytest.raises(LakehouseError, match="is before the latest release"):
        plan_release(state, CONTINUAL, SHARES, history(0, 5), at("2026-11-03T10:00:00"), lambda: 1 / 0)


def test_a_period_released_closed_never_gets_running_totals():
    """Raising close_after_hours (or switching to continual) must not reopen a closed period."""
    state = record(AuditState(), plan_release(AuditState(), DAY, SHARES, history(0, 5), at("2026-11-04T03:00:00"),
                                              lambda: d("2026-11-03")), 1)
    reopened = dataclasses.replace(CONTINUAL, close_after_hours=48)
    plan = plan_release(state, reopened, SHARES, history(0, 5), at("2026-11-04T04:00:00"), lambda: 1 / 0)
    assert d("2026-11-03") not in [t.period_start for t in plan.tasks]
    assert [t.period_start for t in plan.tasks] == [d("2026-11-04")]


def test_a_tree_stops_when_its_paid_for_parameters_change():
    """The tree's budget and bounds are fixed at its first run; a later run with another epsilon,
    horizon, bound or metric set would spend more than was recorded: it publishes nothing more."""
    opened = {n: dataclasses.replace(s, spec=f"v1-{n}") for n, s in SHARES.items()}
    state = AuditState()
    plan = plan_release(state, CONTINUAL, opened, history(0, 5), at("2026-11-04T03:00:00"), lambda: d("2026-11-04"))
    state = AuditState(tuple(audit_rows(plan, CONTINUAL, opened, 1, "a1", at("2026-11-04T03:00:00"), {}, {})))
    same = plan_release(state, CONTINUAL, opened, history(0, 5), at("2026-11-04T04:00:00"), lambda: 1 / 0)
    assert [t.leaf for t in same.tasks] == [2]
    changed = {**opened, "devices": dataclasses.replace(opened["devices"], spec="v2-devices")}
    plan = plan_release(state, CONTINUAL, changed, history(0, 5), at("2026-11-04T04:00:00"), lambda: 1 / 0)
    assert not plan.tasks and "its metrics or their parameters changed" in plan.notes[0]
    assert plan.is_late(d("2026-11-04"))
    fewer = {n: s for n, s in opened.items() if n != "devices"}
    assert not plan_release(state, CONTINUAL, fewer, history(0, 5), at("2026-11-04T04:00:00"), lambda: 1 / 0).tasks


def test_a_configured_first_period_starts_the_series_whatever_the_data():
    privacy = dataclasses.replace(DAY, first_period="2026-11-02")
    plan = plan_release(AuditState(), privacy, SHARES, history(0, 5), at("2026-11-04T03:00:00"),
                        lambda: d("2000-01-01"))  # one bogus early session would start the series in 2000
    assert [t.period_start for t in plan.tasks] == [d("2026-11-02"), d("2026-11-03")]
    assert plan.is_late(d("2026-11-01"))


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Tokyo"])
def test_a_naive_time_is_utc_whatever_the_process_time_zone(zone):
    """A library caller's naive `now` (datetime.utcnow(), say), and a released_at staged naive by an
    earlier version, are UTC as everywhere else in the lakehouse: `astimezone` took them as local
    time, and in Tokyo a run at 01:30 UTC on Jan 2 planned from Jan 1, 16:30."""
    import json

    from pyspark.sql import types as T
    from support import process_time_zone

    from dp.release import release_time
    from dp.staging import parse_staged

    with process_time_zone(zone):
        assert release_time(dt.datetime(2024, 1, 2, 1, 30, 5, 7)) == dt.datetime(2024, 1, 2, 1, 30, 5, tzinfo=UTC)
        assert release_time(dt.datetime(2024, 1, 2, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=9)))) == \
            dt.datetime(2024, 1, 2, 1, 30, tzinfo=UTC)
        schema = T.StructType([T.StructField("released_at", T.TimestampType())])
        staged = json.dumps({"tables": {"t": {"schema": schema.jsonValue(),
                                              "rows": [{"released_at": "2026-11-03T12:00:00"}]}}})
        assert parse_staged(staged, "release-1.json")["t"][1] == [(dt.datetime(2026, 11, 3, 12, tzinfo=UTC),)]
