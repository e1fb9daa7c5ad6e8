"""End-to-end DP release through the CLI with period "none" (the user over the lakehouse's life):
Gold contents, the restricted record and its published copy, budget caps, reprocessing, crashes."""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from oracle import expected_from
from support import (
    CONTINENTS,
    METRICS,
    ROW_LEVEL,
    CliResult,
    Template,
    cli,
    lakehouse_running_until,
    process_time_zone,
    sigkill_group,
    snapshot,
    sql_json,
    table_dirs,
    versions,
    write_conf,
)


@pytest.fixture
def conf(tmp_path) -> Path:
    return write_conf(tmp_path / "release.toml")

@dataclass
class Scenario:
    """One lakehouse taken through release, no-op, second release, reprocess; what each step printed."""

    root: Path
    conf: Path
    first_rows: int = 0
    second_rows: int = 0
    steps: dict[str, CliResult] = field(default_factory=dict)
    versions_before_noop: dict[str, int] = field(default_factory=dict)
    versions_after_noop: dict[str, int] = field(default_factory=dict)
    files_before_maintain: int = 0
    gold_before_maintain: dict = field(default_factory=dict)
    gold_after_maintain: dict = field(default_factory=dict)


@pytest.fixture(scope="module")
def scenario(spark, tmp_path_factory) -> Scenario:
    base = tmp_path_factory.mktemp("release")
    s = Scenario(root=base / "lakehouse", conf=write_conf(base / "release.toml"))
    assert cli(s.conf, s.root, "generate", "--sessions", "3000", "--files", "2", "--seed", "21").code == 0
    first = expected_from(sorted((s.root / "bronze").glob("*.jsonl")))
    s.first_rows = len(first.sessions)
    s.steps["first"] = cli(s.conf, s.root, "run")
    s.versions_before_noop = versions(spark, s.root)
    s.steps["noop"] = cli(s.conf, s.root, "release")
    s.versions_after_noop = versions(spark, s.root)
    assert cli(s.conf, s.root, "generate", "--sessions", "800", "--seed", "22", "--start", "2017-09-01").code == 0
    new_files = [p for p in (s.root / "bronze").glob("*.jsonl") if "_s22_" in p.name]
    s.second_rows = len(expected_from(new_files, already=first.sessions).sessions)
    s.steps["second"] = cli(s.conf, s.root, "run")
    s.steps["reprocess"] = cli(s.conf, s.root, "reprocess", "--silver-version", "1")
    s.steps["reprocess_missing"] = cli(s.conf, s.root, "reprocess", "--silver-version", "99")
    s.steps["budget"] = cli(s.conf, s.root, "budget")
    s.files_before_maintain = len(list((s.root / "silver" / "sessions").glob("*.parquet")))
    s.gold_before_maintain = snapshot(spark, s.root)
    s.steps["maintain_short"] = cli(s.conf, s.root, "maintain", "--retain-hours", "24")
    # files no version references (a crashed write's leftovers), 180 h and 250 h old
    for hours in (180, 250):
        orphan = s.root / "gold" / "sessions_per_continent" / f"part-orphan-{hours}h.snappy.parquet"
        orphan.write_bytes(b"left by a crashed write")
        os.utime(orphan, (time.time() - hours * 3600,) * 2)
    s.steps["maintain"] = cli(s.conf, s.root, "maintain", "--retain-hours", "200")
    s.gold_after_maintain = snapshot(spark, s.root)
    s.steps["after_maintain"] = cli(s.conf, s.root, "release")
    s.steps["budget_after_maintain"] = cli(s.conf, s.root, "budget")
    return s


@pytest.mark.xdist_group("release-scenario")  # one worker builds the scenario once
def test_first_release_publishes_every_public_partition_with_the_configured_noise(scenario):
    r = scenario.steps["first"]
    assert r.code == 0, r.err
    assert "release 1 (incremental): the new rows, silver.sessions versions 0..1" in r.out
    continents = sql_json(scenario.conf, scenario.root, "SELECT * FROM gold.sessions_per_continent WHERE release_id = 1")
    # Every public partition appears, Antarctica (no rows at all) included; nothing else does.
    assert sorted(c["continent"] for c in continents) == sorted(CONTINENTS)
    # noise_stddev from the parameters: Laplace, L1 sensitivity 1 * 5, epsilon 0.5 -> sqrt(2) * 10.
    assert [c["noise_stddev"] for c in continents] == pytest.approx([math.sqrt(2) * 5 / 0.5] * len(CONTINENTS))
    assert {(c["kind"], c["period_start"], c["epsilon"]) for c in continents} == {("incremental", None, 0.5)}
    means = sql_json(scenario.conf, scenario.root, "SELECT * FROM gold.avg_session_duration_per_device")
    assert means and all(m["noise_stddev"] is None and 0 <= m["dp_avg_duration_s"] <= 3600 for m in means)


@pytest.mark.xdist_group("release-scenario")  # one worker builds the scenario once
def test_budget_is_split_by_share_and_recorded_in_the_audit_and_its_copy(scenario):
    ledger = sql_json(scenario.conf, scenario.root, "SELECT * FROM gold.privacy_ledger WHERE release_id = 1")
    by_metric = {row["metric"]: row for row in ledger}
    assert by_metric["sessions_per_continent"]["epsilon"] == pytest.approx(0.5)  # shares 2:1:1 of epsilon 1
    assert by_metric["avg_session_duration_per_device"]["epsilon"] == pytest.approx(0.25)
    assert by_metric["sessions_per_country"]["epsilon"] == pytest.approx(0.25)
    assert by_metric["sessions_per_country"]["delta"] == pytest.approx(1e-6)  # partition selection spends delta
    # The exact size a release read is restricted: in silver.release_audit, not in Gold's copy.
    assert "rows_in" not in ledger[0]
    audit = sql_json(scenario.conf, scenario.root, "SELECT * FROM silver.release_audit WHERE release_id = 1")
    assert {a["rows_in"] for a in audit} == {scenario.first_rows}
    assert sorted(a["metric"] for a in audit) == METRICS


@pytest.mark.xdist_group("release-scenario")  # one worker builds the scenario once
def test_default_output_holds_no_exact_count(scenario):
    for step in ("first", "second"):
        r = scenario.steps[step]
        text = re.sub(r"^\[\s*[\d.]+s\] ", "", r.out + r.err, flags=re.M)  # progress lines' elapsed seconds
        for exact in (scenario.first_rows, scenario.second_rows):
            assert not re.search(rf"(?<![\d.]){exact}(?![\d.])", text), text
        assert "rows in" not in text and "rows ingested" not in text


@pytest.mark.xdist_group("release-scenario")  # one worker builds the scenario once
def test_nothing_new_releases_nothing_and_spends_nothing(scenario):
    r = scenario.steps["noop"]
    assert r.code == 0 and "nothing to release" in r.out and "no budget spent" in r.out
    assert scenario.versions_after_noop == scenario.versions_before_noop


@pytest.mark.xdist_group("release-scenario")  # one worker builds the scenario once
def test_second_release_reads_only_the_new_rows(scenario):
    r = scenario.steps["second"]
    assert r.code == 0, r.err
    assert "release 2 (incremental): the new rows, silver.sessions versions 2..2" in r.out
    audit = sql_json(scenario.conf, scenario.root, "SELECT DISTINCT rows_in FROM silver.release_audit WHERE release_id = 2")
    assert audit == [{"rows_in": scenario.second_rows}]


@pytest.mark.xdist_group("release-scenario")  # one worker builds the scenario once
def test_reprocess_travels_back_to_a_silver_version(scenario):
    r = scenario.steps["reprocess"]
    assert r.code == 0, r.err
    assert "release 3 (reprocess)" in r.out
    rows = sql_json(scenario.conf, scenario.root,
                    "SELECT a.release_id, a.kind, a.silver_version_from, a.silver_version_to, a.rows_in "
                    "FROM silver.release_audit a WHERE a.metric = 'sessions_per_continent' ORDER BY release_id")
    assert rows == [
        {"release_id": 1, "kind": "incremental", "silver_version_from": 0, "silver_version_to": 1,
         "rows_in": scenario.first_rows},
        {"release_id": 2, "kind": "incremental", "silver_version_from": 2, "silver_version_to": 2,
         "rows_in": scenario.second_rows},
        {"release_id": 3, "kind": "reprocess", "silver_version_from": 0, "silver_version_to": 1,
         "rows_in": scenario.first_rows},
    ]
    r = scenario.steps["reprocess_missing"]
    assert r.code == 1 and "versions 0..2" in r.error


@pytest.mark.xdist_group("release-scenario")  # one worker builds the scenario once
def test_budget_counts_every_release(scenario):
    r = scenario.steps["budget"]
    assert r.code == 0, r.err
    assert "epsilon spent: 3\n" in r.out and "epsilon cap: 10\n" in r.out and "epsilon remaining: 7\n" in r.out
    assert "over the lakehouse's whole life" in r.out


@pytest.mark.xdist_group("release-scenario")  # one worker builds the scenario once
def test_gold_time_travel_and_no_row_level_columns(spark, scenario):
    v0 = sql_json(scenario.conf, scenario.root,
                  "SELECT DISTINCT release_id FROM gold.sessions_per_continent VERSION AS OF 0")
    assert v0 == [{"release_id": 1}]
    ledger_keys = {(r["release_id"], r["metric"])
                   for r in sql_json(scenario.conf, scenario.root, "SELECT * FROM gold.privacy_ledger")}
    for table in table_dirs(scenario.root, "gold"):
        df = spark.read.format("delta").load(str(scenario.root / "gold" / table))
        assert not ROW_LEVEL & set(df.columns), table
        if table != "privacy_ledger":
            assert {(r[0], table) for r in df.select("release_id").distinct().collect()} <= ledger_keys
    gold = scenario.root / "gold"
    assert spark.read.format("delta").load(str(gold / "sessions_per_continent")).count() == 3 * len(CONTINENTS)
    assert spark.read.format("delta").load(str(gold / "avg_session_duration_per_device")).count() == 3 * 4


def test_a_host_west_of_utc_records_release_times_in_utc(root, conf):
    """PySpark converts naive datetimes with the process's time zone: on a New York host the first
    release's time was stored 5 h late, and the next run - read back through delta-rs, which keeps
    UTC - refused as going back in time."""
    with process_time_zone("America/New_York"):
        assert cli(conf, root, "generate", "--sessions", "300", "--seed", "31").code == 0
        assert cli(conf, root, "run").code == 0
    with process_time_zone("America/New_York"):  # as a fresh process on that host would start
        r = cli(conf, root, "release")
    assert r.code == 0 and "nothing to release" in r.out, r.err
    released = sql_json(conf, root, "SELECT CAST(released_at AS STRING) AS t FROM gold.privacy_ledger")
    stored = dt.datetime.fromisoformat(released[0]["t"]).replace(tzinfo=dt.UTC)
    assert abs(stored - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=10)


@pytest.mark.parametrize("caps, limit", [((1.5, 1e-5), "epsilon_cap"), ((10.0, 1.5e-6), "delta_cap")])
def test_a_cap_refuses_and_writes_nothing(spark, root, tmp_path, caps, limit):
    conf = write_conf(tmp_path / "cap.toml", *caps)
    cli(conf, root, "generate", "--sessions", "500", "--seed", "31")
    assert cli(conf, root, "run").code == 0
    before = versions(spark, root)
    staging_before = sorted((root / "silver" / "_release_staging").iterdir())

    cli(conf, root, "generate", "--sessions", "300", "--seed", "32")
    r = cli(conf, root, "run")
    assert r.code == 3
    assert "privacy budget exhausted" in r.error and limit in r.error
    after = versions(spark, root)
    assert after.pop("silver.sessions") > before.pop("silver.sessions")  # the ingest ran; nothing else wrote
    assert after == before
    assert sorted((root / "silver" / "_release_staging").iterdir()) == staging_before
    r = cli(conf, root, "budget")
    assert "epsilon spent: 1\n" in r.out and "delta spent: 1e-06\n" in r.out


def test_release_before_ingest_is_a_clear_error(root, conf):
    r = cli(conf, root, "release")
    assert r.code == 1 and "no lakehouse at" in r.error and "`lakehouse run` creates a lakehouse" in r.error
    assert not root.exists()


@pytest.fixture(scope="module")
def ingested(spark, tmp_path_factory) -> Template:
    """1,500 sessions in Silver, nothing released: where each kill test starts (built once)."""
    base = tmp_path_factory.mktemp("ingested")
    template, conf = Template(base / "lakehouse"), write_conf(base / "release.toml")
    assert cli(conf, template.root, "generate", "--sessions", "1500", "--seed", "41").code == 0
    assert cli(conf, template.root, "ingest").code == 0
    template.save()
    return template


@pytest.mark.slow
@pytest.mark.xdist_group("ingested")  # one worker builds `ingested` once
@pytest.mark.parametrize("failpoint", [
    "release-after-stage",  # computed and staged, nothing published
    "release-after-silver.release_audit",  # the record written, not its copy
    "release-after-gold.privacy_ledger",  # record and copy written, no Gold metric table yet
    "release-after-gold.avg_session_duration_per_device",  # and one of three tables
    None,  # killed while computing
])
def test_sigkill_mid_release_then_rerun_publishes_exactly_once(spark, ingested, conf, failpoint):
    root = ingested.restore(spark)
    env = {"LAKEHOUSE_FAILPOINT": failpoint} if failpoint else {}
    wait_for = f"FAILPOINT {failpoint}" if failpoint else "release 1:"
    with lakehouse_running_until("--conf", str(conf), "--root", str(root), "release", env=env,
                                 wait_for=wait_for) as proc:
        # Meanwhile, an overlapping run (a scheduler starting the next job early) fails cleanly.
        overlap = cli(conf, root, "run")
        assert overlap.code == 75 and "another lakehouse run holds" in overlap.error
        sigkill_group(proc)
    published_before = snapshot(spark, root)

    r = cli(conf, root, "release")
    assert r.code == 0, r.err
    if failpoint:
        # The staged release is published as computed the first time: no fresh noise, no new spend.
        assert "recovered release 1" in r.out and "nothing to release" in r.out
        after = snapshot(spark, root)
        for table, rows in published_before.items():
            assert set(rows) <= set(after[table]), table
    else:
        assert "release 1 (incremental)" in r.out
    ledger = sql_json(conf, root, "SELECT release_id, metric, epsilon FROM gold.privacy_ledger")
    assert sorted((row["release_id"], row["metric"]) for row in ledger) == [(1, m) for m in METRICS]
    assert sum(row["epsilon"] for row in ledger) == pytest.approx(1.0)
    audit = sql_json(conf, root, "SELECT release_id, metric FROM silver.release_audit")
    assert sorted((row["release_id"], row["metric"]) for row in audit) == [(1, m) for m in METRICS]
    continents = sql_json(conf, root, "SELECT release_id, count(*) AS n FROM gold.sessions_per_continent GROUP BY 1")
    assert continents == [{"release_id": 1, "n": len(CONTINENTS)}]
    devices = sql_json(conf, root, "SELECT count(*) AS n FROM gold.avg_session_duration_per_device")
    assert devices == [{"n": 4}]
    assert "epsilon spent: 1\n" in cli(conf, root, "budget").out
    assert not list((root / "silver" / "_release_staging").glob("release-*.json"))


@pytest.mark.xdist_group("release-scenario")  # one worker builds the scenario once
def test_maintain_compacts_and_changes_no_result_no_budget_and_no_release(scenario):
    short = scenario.steps["maintain_short"]
    assert short.code == 1 and "--retain-hours 24: at least 168" in short.error
    r = scenario.steps["maintain"]
    assert r.code == 0, r.err
    before = scenario.files_before_maintain
    assert before >= 2 and f"silver.sessions: {before} -> 1 files" in r.out
    assert "gold.sessions_per_continent:" in r.out and "silver.release_audit" not in r.out
    assert scenario.gold_after_maintain == scenario.gold_before_maintain
    # OPTIMIZE's commits rearrange files only: no release sees new rows in them, no budget moves
    after = scenario.steps["after_maintain"]
    assert after.code == 0 and "nothing to release: no rows added to silver.sessions" in after.out, after.out
    assert scenario.steps["budget_after_maintain"].out == scenario.steps["budget"].out
    # VACUUM honours --retain-hours (Delta 4.4 alone would apply its 168 h and remove both)
    orphans = scenario.root / "gold" / "sessions_per_continent"
    assert (orphans / "part-orphan-180h.snappy.parquet").exists()
    assert not (orphans / "part-orphan-250h.snappy.parquet").exists()
    # time travel to a version before the compaction still reads (VACUUM kept its files)
    old = sql_json(scenario.conf, scenario.root, "SELECT count(*) AS n FROM silver.sessions VERSION AS OF 1")
    assert old == [{"n": scenario.first_rows}]
