"""Privacy per period through the CLI, with `--now` standing in for the wall clock: closed-period
releases (each day once, after it closed; late sessions counted, reprocessing), continual running
totals (tree aggregation, bounds kept across a day's runs, the horizon), and `make run`'s path."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
from collections import defaultdict
from pathlib import Path

import pytest
from oracle import pseudonym
from support import Template, process_time_zone, run_cli, session, versions

CONTINENTS = ("Africa", "Americas", "Asia", "Europe", "Oceania", "(not set)")
UTC = dt.UTC


def cli(conf: Path, root: Path, *args: str):
    return run_cli("--conf", str(conf), "--root", str(root), *args)


def sql(conf: Path, root: Path, query: str) -> list[dict]:
    r = cli(conf, root, "sql", query, "--format", "json")
    assert r.code == 0, r.err
    return [json.loads(line) for line in r.out.splitlines()]


def visit(user: int, when: str, continent: str = "Europe", device: str = "desktop", seconds: int = 60) -> dict:
    start = int(dt.datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp())
    return session(fullVisitorId=f"{user:010d}", visitId=str(start), visitStartTime=str(start),
                   geoNetwork={"continent": continent, "country": "Germany"},
                   device={"deviceCategory": device, "browser": "Chrome", "operatingSystem": "Linux"},
                   totals={"pageviews": "2", "timeOnSite": str(seconds)})


def land(root: Path, name: str, sessions: list[dict]) -> None:
    bronze = root / "bronze"
    bronze.mkdir(parents=True, exist_ok=True)
    (bronze / name).write_text("".join(json.dumps(s) + "\n" for s in sessions))


def day_of(day: str, users: range, continent_of=lambda u: CONTINENTS[u % 5 + 1], hour: int = 9) -> list[dict]:
    return [visit(u, f"{day}T{hour:02d}:{u % 60:02d}:00", continent_of(u)) for u in users]


# ------------------------------------------------------------------------------------------
# closed periods


@pytest.fixture
def closed_conf(tmp_path) -> Path:
    conf = tmp_path / "closed.toml"
    conf.write_text('[privacy]\nperiod = "day"\nrelease = "closed"\nclose_after_hours = 2\n')
    return conf


def test_each_day_is_released_once_after_it_closed_with_late_sessions_counted(spark, root, closed_conf):
    land(root, "d1.jsonl", day_of("2026-11-01", range(0, 120)))
    land(root, "d2.jsonl", day_of("2026-11-02", range(0, 150)))
    land(root, "d3.jsonl", day_of("2026-11-03", range(0, 90)))
    r = cli(closed_conf, root, "run", "--now", "2026-11-03T12:00:00Z")
    assert r.code == 0, r.err
    assert "release 1 (closed): periods 2026-11-01..2026-11-02 (2)" in r.out  # 11-03 is still open
    gold = sql(closed_conf, root, "SELECT period_start, continent, kind, epsilon FROM gold.sessions_per_continent")
    assert sorted({(g["period_start"], g["kind"]) for g in gold}) == [("2026-11-01", "closed"), ("2026-11-02", "closed")]
    assert len(gold) == 2 * len(CONTINENTS) and [g["epsilon"] for g in gold] == pytest.approx([1 / 3] * len(gold))

    r = cli(closed_conf, root, "run", "--now", "2026-11-04T01:59:00Z")
    assert r.code == 0 and "nothing to release: period 2026-11-03 closes at 2026-11-04 02:00 UTC" in r.out
    r = cli(closed_conf, root, "run", "--now", "2026-11-04T02:00:00Z")
    assert "release 2 (closed): period 2026-11-03" in r.out

    # sessions of 11-02 arriving now are late; 11-04 had none (noisy zeros, every partition); 11-05 has some
    land(root, "late.jsonl", day_of("2026-11-02", range(500, 530), hour=20))
    land(root, "d5.jsonl", day_of("2026-11-05", range(0, 60)))
    r = cli(closed_conf, root, "run", "--now", "2026-11-06T03:00:00Z", "--counts")
    assert r.code == 0, r.err
    assert "release 3 (closed): periods 2026-11-04..2026-11-05 (2)" in r.out
    assert "rows late for 2026-11-02: 30" in r.out
    audit = sql(closed_conf, root, "SELECT kind, period_start, rows_in, rows_late, epsilon FROM silver.release_audit "
                "WHERE release_id = 3 ORDER BY period_start, metric")
    assert {(a["kind"], a["period_start"], a["rows_late"], a["epsilon"]) for a in audit if a["kind"] == "late"} == {
        ("late", "2026-11-02", 30, 0.0)}
    assert {a["rows_in"] for a in audit if a["period_start"] == "2026-11-04"} == {0}
    zeros = sql(closed_conf, root, "SELECT continent FROM gold.sessions_per_continent WHERE period_start = '2026-11-04'")
    assert sorted(z["continent"] for z in zeros) == sorted(CONTINENTS)
    assert sql(closed_conf, root, "SELECT count(*) AS n FROM gold.sessions_per_continent "
               "WHERE period_start = '2026-11-02'") == [{"n": len(CONTINENTS)}]  # the late rows are in no release

    # reprocessing that day releases it again, with the late sessions, against its own cap
    version = max(h["version"] for h in sql(closed_conf, root, "DESCRIBE HISTORY silver.sessions"))
    r = cli(closed_conf, root, "reprocess", "--silver-version", str(version), "--period", "2026-11-02",
            "--now", "2026-11-06T04:00:00Z")
    assert r.code == 0, r.err
    assert "release 4 (reprocess): period 2026-11-02" in r.out
    rows = sql(closed_conf, root, "SELECT DISTINCT rows_in FROM silver.release_audit WHERE release_id = 4")
    assert rows == [{"rows_in": 150 + 30}]
    budget = cli(closed_conf, root, "budget").out
    assert "each user's sessions in any one UTC day, by what that day's releases spent" in budget
    assert "epsilon 1 and delta 1e-06 for its release, never more than epsilon 10" in budget
    lines = {line.split()[0]: line.split() for line in budget.splitlines() if line.startswith("2026-11-")}
    assert lines["2026-11-02"][1:2] == ["2"] and lines["2026-11-03"][1:2] == ["1"]  # epsilon spent per day
    assert set(lines) == {f"2026-11-0{i}" for i in range(1, 6)}


def test_bounds_hold_per_user_per_day(spark):
    """A user's contributions are bounded per (user, day): eight sessions on each of two days count
    five on each day (max_contributions_per_partition), not five over both."""
    from pyspark.sql import functions as F

    from dp.engine_spark import collect_accumulators
    from lakehouse.config import DEFAULT_METRICS

    rows = [("heavy", "Europe", dt.date(2026, 11, d)) for d in (1, 2) for _ in range(8)]
    df = spark.createDataFrame(rows, "user_id string, continent string, period_start date").withColumn(
        "device", F.lit("desktop")).withColumn("country", F.lit("Germany")).withColumn("total_time_on_page", F.lit(10))
    accumulators, rows_in = collect_accumulators(df, DEFAULT_METRICS[:1])
    counts = {k: a.count for k, a in accumulators["sessions_per_continent"].items()}
    assert counts == {(dt.date(2026, 11, 1), "Europe"): 5, (dt.date(2026, 11, 2), "Europe"): 5}
    assert rows_in == {dt.date(2026, 11, 1): 8, dt.date(2026, 11, 2): 8}


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Tokyo"])
def test_a_library_caller_off_utc_releases_whole_utc_days_at_utc_times(spark, root, zone):
    """PySpark converts naive datetimes to and from the process's time zone, not Spark's session
    zone. The CLI sets TZ=UTC; code calling ingest() and release_dp_metrics() directly, as the
    bench's hourly simulation does, may run in New York: there a day's window started 5 h late
    (its first hours' sessions were left out of its release), the first period came out a day
    early, and released_at was stored 5 h off, so the next release refused as going back in time.
    In Tokyo the window ended 9 h early."""
    from dp.release import release_dp_metrics
    from lakehouse.config import Config, StorageConfig
    from lakehouse.readers import LocalReader
    from lakehouse.storage import Locations
    from streaming.ingest import ingest

    config = Config(storage=StorageConfig(root=str(root)))
    loc = Locations.from_config(config)
    land(root, "d.jsonl", day_of("2026-11-01", range(0, 40), hour=2) + day_of("2026-11-02", range(40, 60), hour=23))
    now = dt.datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
    with process_time_zone(zone):
        ingest(spark, config, loc)
        first = release_dp_metrics(spark, config, loc, now=now)
        second = release_dp_metrics(spark, config, loc, now=now + dt.timedelta(hours=1))
        stored = spark.sql(f"SELECT DISTINCT CAST(released_at AS STRING) AS t FROM delta.`{loc.privacy_ledger}`")
        stored = [r.t for r in stored.collect()]
    assert first.rows_in == {dt.date(2026, 11, 1): 40, dt.date(2026, 11, 2): 20}
    assert second.release_id is None and "nothing to release" in second.message, second.message
    assert stored == ["2026-11-03 12:00:00"]
    assert {r["released_at"] for r in LocalReader().rows(loc.privacy_ledger)} == {now}


# ------------------------------------------------------------------------------------------
# continual release

CONTINUAL = """
[privacy]
period = "day"
release = "continual"
close_after_hours = 2
max_releases_per_period = 4
"""
HEAVY = 7  # the user who arrives in Europe, then travels: first come, first kept


def arrivals(day: str) -> list[list[dict]]:
    """The day's sessions in the order four runs see them: 39 users with a session in each run, and
    a heavy user with three sessions in each run - the first run's in Europe, the rest in Asia."""
    batches = []
    for i, hours in enumerate(((0, 6), (6, 12), (12, 18), (18, 24))):
        batch = [visit(u, f"{day}T{hours[0] + u % 6:02d}:{10 + i:02d}:00", CONTINENTS[u % 5 + 1]) for u in range(40)
                 if u != HEAVY]
        heavy = [visit(HEAVY, f"{day}T{hours[0]:02d}:{m:02d}:00", "Europe" if i == 0 else "Asia")
                 for m in range(0, 60, 20)]
        batches.append(batch + heavy)
    return batches


def first_come_first_kept(batches: list[list[dict]], l0: int = 1, linf: int = 5) -> dict[str, int]:
    """The bounded truth across runs, the obvious way: in arrival order (run, then time), a user
    keeps a session if its continent is among their first l0 and they kept < linf there."""
    kept: dict[str, dict[str, int]] = defaultdict(dict)
    totals = {c: 0 for c in CONTINENTS}
    for batch in batches:
        for s in sorted(batch, key=lambda s: (int(s["visitStartTime"]), pseudonym(f"{s['fullVisitorId']}/{s['visitId']}"))):
            mine, continent = kept[s["fullVisitorId"]], s["geoNetwork"]["continent"]
            if continent in mine or len(mine) < l0:
                if mine.get(continent, 0) < linf:
                    mine[continent] = mine.get(continent, 0) + 1
                    totals[continent] += 1
    return totals


DAY = "2026-11-10"
NOWS = ["2026-11-10T06:30:00Z", "2026-11-10T12:30:00Z", "2026-11-10T18:30:00Z", "2026-11-11T00:30:00Z"]


@pytest.fixture(scope="module")
def two_continual_runs(spark, tmp_path_factory) -> Template:
    """The day's first two continual runs, which five tests start from (built once: two runs are
    ~30 s)."""
    base = tmp_path_factory.mktemp("continual")
    conf = base / "continual.toml"
    conf.write_text(CONTINUAL)
    template = Template(base / "lakehouse")
    for i, batch in enumerate(arrivals(DAY)[:2]):
        land(template.root, f"run{i}.jsonl", batch)
        r = cli(conf, template.root, "run", "--now", NOWS[i])
        assert r.code == 0 and f"running totals of {DAY}: run {i + 1}" in r.out, r.err
    template.save()
    return template


@pytest.mark.xdist_group("continual")  # one worker builds two_continual_runs once
def test_continual_running_totals_over_a_day(spark, two_continual_runs, tmp_path):
    conf = tmp_path / "continual.toml"
    conf.write_text(CONTINUAL)
    day, batches = DAY, arrivals(DAY)
    root = two_continual_runs.restore(spark)
    for i in (2, 3):
        land(root, f"run{i}.jsonl", batches[i])
        r = cli(conf, root, "run", "--now", NOWS[i])
        assert r.code == 0, r.err
    assert "running totals of 2026-11-10: run 4" in r.out and "running totals of 2026-11-11: run 1" in r.out

    gold = sql(conf, root, f"SELECT release_id, continent, dp_sessions, noise_stddev, epsilon FROM "
               f"gold.sessions_per_continent WHERE period_start = '{day}' ORDER BY release_id, continent")
    # noise of a running total: popcount(t) nodes of sqrt(2) * levels * L0 * Linf / epsilon (levels = 3 for H = 4)
    node = math.sqrt(2) * 3 * 1 * 5 / (1 / 3)
    for t in range(1, 5):
        rows = [g for g in gold if g["release_id"] == t]
        assert len(rows) == len(CONTINENTS)
        assert [g["noise_stddev"] for g in rows] == pytest.approx([math.sqrt(bin(t).count("1")) * node] * len(rows))
        assert [g["epsilon"] for g in rows] == pytest.approx([1 / 3 if t == 1 else 0.0] * len(rows))  # spent once

    # the bounds held across the four runs: the tree's leaves (exact, restricted) sum to the
    # first-come-first-kept truth, in which the heavy user's Asian sessions are all dropped
    truth = first_come_first_kept(batches)
    leaves = sql(conf, root, f"SELECT key, sum(true_value) AS total FROM silver.release_tree WHERE period_start = '{day}'"
                 " AND metric = 'sessions_per_continent' AND level = 0 GROUP BY key")
    assert {row["key"]: row["total"] for row in leaves} == {c: float(v) for c, v in truth.items()}
    kept = sql(conf, root, f"SELECT key, sum(kept) AS n FROM silver.release_bounds WHERE period_start = '{day}' AND "
               "metric = 'sessions_per_continent' GROUP BY key")
    assert sum(k["n"] for k in kept) == sum(truth.values())
    # the final running total is within the tree's error of the truth (5 standard deviations of the
    # sum over the six continents: a correct mechanism fails this with probability ~1e-6)
    final = [g for g in gold if g["release_id"] == 4]
    error = sum(g["dp_sessions"] - truth[g["continent"]] for g in final)
    assert abs(error) <= 5 * math.sqrt(sum(g["noise_stddev"] ** 2 for g in final))

    # the day closes: its country metric (partition selection) is released once; the day spent epsilon 1
    r = cli(conf, root, "run", "--now", "2026-11-11T02:30:00Z")
    assert r.code == 0, r.err
    ledger = sql(conf, root, f"SELECT metric, sum(epsilon) AS eps, count(*) AS n FROM gold.privacy_ledger "
                 f"WHERE period_start = '{day}' GROUP BY metric ORDER BY metric")
    assert [(row["metric"], round(row["eps"], 9), row["n"]) for row in ledger] == [
        ("avg_session_duration_per_device", round(1 / 3, 9), 4), ("sessions_per_continent", round(1 / 3, 9), 4),
        ("sessions_per_country", round(1 / 3, 9), 1)]
    # a session of the closed day arriving now is late for it
    land(root, "late.jsonl", [visit(900, f"{day}T23:00:00")])
    r = cli(conf, root, "run", "--now", "2026-11-11T03:30:00Z", "--counts")
    assert r.code == 0 and f"rows late for {day}: 1" in r.out

    # 2026-11-11 had runs 1 (00:30), 2 (02:30), 3 (03:30); the horizon is 4
    assert "running totals of 2026-11-11: run 4" in cli(conf, root, "run", "--now", "2026-11-11T04:30:00Z").out
    r = cli(conf, root, "run", "--now", "2026-11-11T05:30:00Z")
    assert r.code == 0 and "period 2026-11-11: its 4 runs ([privacy] max_releases_per_period) are published" in r.out
    assert "nothing to release" in r.out


# ------------------------------------------------------------------------------------------
# idle runs: an hourly run with nothing new and nothing due starts no JVM


@pytest.fixture
def no_spark(monkeypatch):
    """Within it, any use of the CLI's Spark session fails the test (BaseException: not caught by the CLI)."""
    from lakehouse import cli as lakehouse_cli

    @contextlib.contextmanager
    def forbidden():
        with monkeypatch.context() as m:
            m.setattr(lakehouse_cli.Context, "spark", property(lambda self: pytest.fail("the run started Spark")))
            yield
    return forbidden


def test_an_idle_run_starts_no_spark_and_misses_no_new_file_and_no_closing_day(spark, root, closed_conf, no_spark,
                                                                               monkeypatch):
    land(root, "d1.jsonl", day_of("2026-11-01", range(0, 40)))
    (root / "bronze" / "notes.txt").write_text("not events\n")
    (root / "bronze" / "_incoming").mkdir()  # hidden: never read, by the stream or the idle check
    (root / "bronze" / "_incoming" / "partial.jsonl").write_text('{"fullVisitorId": "1"')
    r = cli(closed_conf, root, "run", "--now", "2026-11-01T12:00:00Z")
    assert r.code == 0 and "nothing to release: period 2026-11-01 closes at 2026-11-02 02:00 UTC" in r.out, r.err
    before = versions(spark, root)

    with no_spark():
        r = cli(closed_conf, root, "run", "--now", "2026-11-01T13:00:00Z")
    assert r.code == 0, r.err
    assert "ingest: nothing new in" in r.out and "(1 event files," in r.out and "the stream was not started" in r.out
    assert "nothing to release: period 2026-11-01 closes at 2026-11-02 02:00 UTC" in r.out
    assert "notes.txt" in r.err  # the same warning as the stream's ingest gives
    assert versions(spark, root) == before

    # a new file in a new sub-folder is not missed: the stream runs and takes it
    (root / "bronze" / "late").mkdir()
    land(root, "late/d1b.jsonl", day_of("2026-11-01", range(40, 50)))
    r = cli(closed_conf, root, "run", "--now", "2026-11-01T14:00:00Z")
    assert r.code == 0 and "the stream was not started" not in r.out, r.err
    assert spark.read.format("delta").load(str(root / "silver" / "sessions")).count() == 50

    # nothing new, but the day has closed: the release runs (on Spark) and publishes it
    r = cli(closed_conf, root, "run", "--now", "2026-11-02T02:00:00Z")
    assert r.code == 0 and "the stream was not started" in r.out, r.err
    assert "release 1 (closed): period 2026-11-01" in r.out
    with no_spark():
        r = cli(closed_conf, root, "run", "--now", "2026-11-02T03:00:00Z")
        assert r.code == 0 and "nothing to release: period 2026-11-02 closes at 2026-11-03 02:00 UTC" in r.out, r.err
        # the checks of the Spark path hold on the idle path: a wrong key, a clock set back
        with monkeypatch.context() as m:
            m.setenv("LAKEHOUSE_PSEUDONYM_KEY", "another-key")
            r = cli(closed_conf, root, "run", "--now", "2026-11-02T04:00:00Z")
        assert r.code == 1 and "is not the key silver.sessions was built with" in r.error
        r = cli(closed_conf, root, "release", "--now", "2026-11-01T23:00:00Z")
        assert r.code == 1 and "is before the latest release (2026-11-02 02:00:00 UTC)" in r.error


# ------------------------------------------------------------------------------------------
# make run


def test_make_run_path_shows_a_daily_time_series_and_plots_it(root, tmp_path):
    """`make run`: empty Bronze -> sample events over the last 28 days -> per-day Gold, printed."""
    r = run_cli("--root", str(root), "run", "--generate-if-empty", "8000", "--show", "--now", "2026-11-29T06:00:00Z")
    assert r.code == 0, r.err
    assert "Bronze was empty: wrote" in r.out
    assert "release 1 (closed): periods 2026-11-01..2026-11-28 (28)" in r.out
    assert "== gold.sessions_per_continent: dp_sessions per period (latest 14) ==" in r.out
    assert "2026-11-28" in r.out and "2026-11-15" in r.out and "2026-11-14" not in r.out.split("== gold.avg")[0]
    assert "each user's sessions in any one UTC day" in r.out
    r = run_cli("--root", str(root), "run", "--generate-if-empty", "8000", "--now", "2026-11-29T07:00:00Z")
    assert r.code == 0 and "Bronze was empty" not in r.out and "nothing to release" in r.out

    r = run_cli("--root", str(root), "report", "--compare-raw")
    assert r.code == 0, r.err
    written = [Path(p) for p in r.out.split()]
    assert sorted(p.name for p in written if p.parent == root / "reports") == sorted(
        f"{m}_{kind}.png" for m in ("sessions_per_continent", "avg_session_duration_per_device", "sessions_per_country")
        for kind in ("latest", "series"))
    raw = [p for p in written if "raw_vs_dp" in p.name]
    assert len(raw) == 3 and all(p.parent == root / "_restricted" for p in raw)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)
    assert "NON-PRIVATE" in r.err


def _third_run_landed(spark, template: Template) -> Path:
    """The lakehouse after two continual runs, with the third run's sessions in Bronze."""
    root = template.restore(spark)
    land(root, "run2.jsonl", arrivals(DAY)[2])
    return root


@pytest.mark.xdist_group("continual")  # one worker builds two_continual_runs once
@pytest.mark.parametrize("lost, message", [("release_bounds", "silver.release_bounds"),
                                           ("release_tree", "silver.release_tree lacks node")])
def test_lost_continual_state_stops_the_running_totals(spark, two_continual_runs, tmp_path, lost, message):
    """Without what earlier runs kept, first come first kept would restart (a user's bounds spent
    again) or the tree could not be summed: the run refuses instead of guessing."""
    import shutil

    conf = tmp_path / "continual.toml"
    conf.write_text(CONTINUAL)
    root = _third_run_landed(spark, two_continual_runs)
    shutil.rmtree(root / "silver" / lost)
    r = cli(conf, root, "run", "--now", "2026-11-10T18:30:00Z")
    assert r.code == 1 and message in r.error and "restore" in r.error.lower()
    leaves = sql(conf, root, "SELECT max(leaf) AS t FROM silver.release_audit WHERE kind = 'continual'")
    assert leaves == [{"t": 2}]  # nothing was published


@pytest.mark.xdist_group("continual")  # one worker builds two_continual_runs once
@pytest.mark.slow
@pytest.mark.parametrize("failpoint", ["release-after-bounds", "release-after-stage",
                                       "release-after-silver.release_tree"])
def test_sigkill_mid_continual_release_then_rerun_is_exactly_once(spark, two_continual_runs, tmp_path, failpoint):
    """Killed after its kept contributions were written (an attempt no record holds: ignored), after
    staging, or after the tree state: the next run publishes leaf 3 once, with the truth intact."""
    from support import SUBPROCESS_SPARK_CONF, lakehouse_running_until, sigkill_group

    conf = tmp_path / "continual.toml"
    conf.write_text(CONTINUAL + SUBPROCESS_SPARK_CONF)
    root = _third_run_landed(spark, two_continual_runs)
    assert cli(conf, root, "ingest").code == 0
    with lakehouse_running_until("--conf", str(conf), "--root", str(root), "release", "--now", "2026-11-10T18:30:00Z",
                                 env={"LAKEHOUSE_FAILPOINT": failpoint}, wait_for=f"FAILPOINT {failpoint}") as proc:
        sigkill_group(proc)
    r = cli(conf, root, "release", "--now", "2026-11-10T19:30:00Z")
    assert r.code == 0, r.err
    audit = sql(conf, root, "SELECT leaf, count(DISTINCT release_id) AS n FROM silver.release_audit WHERE "
                "kind = 'continual' AND metric = 'sessions_per_continent' GROUP BY leaf ORDER BY leaf")
    if failpoint == "release-after-bounds":  # nothing staged: computed again as leaf 3 by the rerun
        assert [(a["leaf"], a["n"]) for a in audit] == [(1, 1), (2, 1), (3, 1)]
    else:  # staged: published as computed; the rerun is leaf 4 (no new rows)
        assert [(a["leaf"], a["n"]) for a in audit] == [(1, 1), (2, 1), (3, 1), (4, 1)]
    truth = first_come_first_kept(arrivals(DAY)[:3])
    leaves = sql(conf, root, "SELECT key, sum(true_value) AS total FROM silver.release_tree WHERE "
                 "metric = 'sessions_per_continent' AND level = 0 AND period_start = '2026-11-10' GROUP BY key")
    assert {row["key"]: row["total"] for row in leaves} == {c: float(v) for c, v in truth.items()}
    gold = sql(conf, root, "SELECT release_id, count(*) AS n FROM gold.sessions_per_continent GROUP BY release_id")
    assert all(g["n"] == len(CONTINENTS) for g in gold)  # no release published twice
