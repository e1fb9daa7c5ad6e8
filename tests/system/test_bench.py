"""The benchmark's smoke version: tiny sizes, one repetition, so the bench code cannot rot.
(The figures themselves come from `make bench`; nothing here is timed.)"""

from __future__ import annotations

import json
import math
import os

import bench.__main__ as bench
from bench.rss import tree_rss_bytes
from lakehouse.config import Config

REQUIRED = ["ingest_vs_plain_spark", "ingest_growth_5x", "release_vs_plain_aggregate", "release_growth_5x",
            "release_peak_rss_mb", "ingest_peak_rss_mb", "ingest_s", "plain_json_to_parquet_s", "release_s",
            "plain_aggregate_s", "ingest_increment_on_1x_s", "ingest_increment_on_5x_s",
            "release_increment_on_1x_s", "release_increment_on_5x_s", "ingest_floor_vs_plain_spark",
            "release_floor_vs_plain_aggregate", "ingest_floor_s", "release_floor_s", "release_vs_floor",
            "ingest_vs_floor", "release_10x_vs_1x", "release_10x_peak_rss_mb"]


def test_figures_are_ratios_of_medians():
    def run(median):
        return {"median_s": median}
    figs = bench.figures(
        ingest_vs_plain={"ingest": run(30.0), "plain": run(10.0), "floor": run(16.0), "ingest_peak_rss_mb": 900.0},
        release_vs_plain={"release": run(12.0), "plain": run(3.0), "floor": run(6.0), "release_peak_rss_mb": 1200.0,
                          "reference": run(100.0), "reference_peak_rss_mb": 2100.0},
        growth={15_000: {"ingest": run(2.4), "release": run(1.5)}, 3_000: {"ingest": run(2.0), "release": run(1.0)}},
        cold={"spark_start": run(6.0), "idle_run": run(1.5), "cold_floor": run(13.5), "increment_run": run(18.0)},
        scale={"1x": run(4.0), "10x": run(44.0), "10x_peak_rss_mb": 1900.0})
    assert figs["ingest_vs_plain_spark"] == 3.0
    assert figs["release_vs_plain_aggregate"] == 4.0
    assert figs["ingest_growth_5x"] == 1.2
    assert figs["release_growth_5x"] == 1.5
    assert figs["ingest_floor_vs_plain_spark"] == 1.6
    assert figs["release_floor_vs_plain_aggregate"] == 2.0
    assert figs["release_vs_floor"] == 2.0 and figs["ingest_vs_floor"] == 1.875
    assert figs["release_vs_reference"] == 0.12
    assert figs["cold_run_idle_vs_spark_start"] == 0.25 and figs["cold_run_increment_vs_spark_start"] == 3.0
    assert figs["cold_floor_vs_spark_start"] == 2.25 and figs["cold_run_increment_vs_cold_floor"] == 1.333
    assert figs["release_10x_vs_1x"] == 11.0
    table = bench.table(figs)
    verdicts = {line.split()[0]: next((w for w in line.split() if w in ("MISSED", "ok", "run")), None)
                for line in table.splitlines()[2:]}
    assert {k: v for k, v in verdicts.items() if v} == {
        "cold_run_idle_vs_spark_start": "ok", "cold_run_increment_vs_spark_start": "MISSED",  # 3.0 > 2.0
        "release_vs_reference": "MISSED", "release_vs_floor": "MISSED", "ingest_vs_floor": "MISSED",
        "release_10x_vs_1x": "MISSED", "release_10x_peak_rss_mb": "ok", "release_peak_rss_mb": "ok",
        "ingest_growth_5x": "ok", "release_growth_5x": "MISSED",
        "run_after_1440_runs_vs_first": "run",  # "not run": never measured, never "ok"
    }
    hourly = bench.hourly_figures({"day_1": {}, "day_60": {},
                                   "cold": {"day_1": run(20.0), "day_60": run(27.0)}})
    assert hourly == {"run_after_1440_runs_vs_first": 1.35, "hourly_run_day_1_s": 20.0, "hourly_run_day_60_s": 27.0}
    assert "MISSED" in next(line for line in bench.table(hourly).splitlines() if "1440" in line)
    assert bench.hourly_figures({"day_1": {}, "day_60": {}}) == {}  # simulated in-process: no cold runs


def test_taking_turns_leaves_the_untimed_rounds_out_of_the_median():
    from bench.tasks import taking_turns
    order = []

    def run(name, seconds):
        def timed_run(i):
            order.append((name, i))
            return seconds[i]
        return timed_run

    times, _ = taking_turns(3, {"a": run("a", [9.0, 1.0, 3.0, 2.0]), "b": run("b", [8.0, 5.0, 4.0, 6.0])},
                            measured="a", untimed_rounds=1)
    assert times["a"] == {"median_s": 2.0, "runs_s": [1.0, 3.0, 2.0], "untimed_s": [9.0]}
    assert times["b"] == {"median_s": 5.0, "runs_s": [5.0, 4.0, 6.0], "untimed_s": [8.0]}
    assert order == [(name, i) for i in range(4) for name in ("a", "b")]  # in turns, each round numbered


def test_tree_rss_counts_this_process():
    assert tree_rss_bytes(os.getpid()) > 10 * 2**20


def test_tree_rss_counts_a_vfork_child_once(tmp_path):
    """A process tree as sampled during a release: the JVM had just cloned a child to start a
    command (forked, not exec'd, sharing the JVM's pages, named after the spawning thread). Its RSS
    is the JVM's own and must not be added again; Spark's forked Python worker has its own."""
    tree = {  # pid: (name, parent, flags, RSS in MB)
        100: ("python", 1, 0x400000, 189), 101: ("java", 100, 0x400000, 773),
        102: ("Thread-94", 101, 0x400040, 773),  # PF_FORKNOEXEC, the JVM's pages
        103: ("python", 101, 0x400000, 46), 104: ("python", 103, 0x400040, 53),  # daemon, forked worker
        200: ("unrelated", 1, 0x400000, 999),
    }
    for pid, (name, parent, flags, mb) in tree.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({name}) S {parent} {pid} {pid} 0 -1 {flags} 0 0 0\n")
        (tmp_path / str(pid) / "status").write_text(f"Name:\t{name}\nVmRSS:\t{mb * 1024} kB\n")
    assert tree_rss_bytes(100, proc=tmp_path) == (189 + 773 + 46 + 53) * 2**20


def test_bench_smoke_runs_every_measurement(spark, tmp_path, capsys):
    out = tmp_path / "latest.json"
    assert bench.main(["--smoke", "--in-process", "--data", str(tmp_path / "data"), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    figs = report["figures"]
    for key in REQUIRED:
        assert math.isfinite(figs[key]) and figs[key] > 0, key
    assert report["params"]["large_sessions"] == 5 * report["params"]["sessions"]
    # The growth runs really were on 1x and 5x Silver tables.
    growth = report["raw"]["growth"]
    assert sorted(int(k) for k in growth) == [3_000, 15_000]
    # The ingest measured really loaded the sessions (a few are generated duplicates or bad lines).
    assert 0.95 * 3_000 < report["raw"]["ingest_vs_plain"]["silver_rows"] <= 3_000
    # The floors really did their work: every Bronze line parsed and appended, one commit per table.
    work = tmp_path / "data" / "work"
    silver_rows = report["raw"]["ingest_vs_plain"]["silver_rows"]
    assert spark.read.format("delta").load(str(work / "ingest" / "floor0")).count() > silver_rows
    tables = list((work / "release" / "floor0").glob("*/_delta_log"))
    assert len(tables) == len(Config().metrics) + 2  # the record, each metric's Gold table, the ledger
    # the scale task released all of a 1x and a 10x synthesized Silver
    assert report["raw"]["scale"]["10x"]["median_s"] > 0 and not (work / "scale" / "silver30000").exists()
    # the hourly simulation ran the pipeline: a Silver commit per run, a release per closed day
    hourly = report["raw"]["hourly"]
    assert hourly["day_1"]["runs"] == 2 and hourly["day_2"]["runs"] == 4
    assert hourly["day_2"]["silver_version"] >= 4 and hourly["day_2"]["silver_data_files"] >= 4
    released = spark.read.format("delta").load(str(work / "hourly" / "day2" / "gold" / "sessions_per_continent"))
    assert released.select("period_start").distinct().count() == hourly["day_2"]["releases"] >= 1
    printed = capsys.readouterr().out
    assert all(key in printed for key in REQUIRED[:5])


def test_cold_floor_appends_the_increment_and_commits_each_table(spark, tmp_path):
    """The cold floor's work, in this session: the increment's every line appended to the copy of
    Silver as one new version (the lakehouse's own Silver untouched), then one commit per table."""
    import shutil

    from bench.floors import GOLD_ROWS, cold_floor
    from bench.tasks import config_for
    from lakehouse import catalog
    from lakehouse.generate import generate
    from streaming.ingest import ingest

    config, loc = config_for(tmp_path / "lakehouse")
    generate(loc.bronze, 200, seed=7)
    ingest(spark, config, loc)
    increment = tmp_path / "increment"
    generate(increment, 120, seed=8)
    lines = sum(len(f.read_text().splitlines()) for f in increment.glob("*.jsonl"))
    copy = str(tmp_path / "floor" / "sessions")
    shutil.copytree(loc.silver_sessions, copy)
    before = catalog.latest_version(spark, copy)

    cold_floor(spark, str(increment), copy, tmp_path / "floor" / "gold", config.metrics)

    assert catalog.latest_version(spark, copy) == before + 1
    assert spark.read.format("delta").load(copy).count() == \
        spark.read.format("delta").load(loc.silver_sessions).count() + lines
    assert catalog.latest_version(spark, loc.silver_sessions) == before
    tables = sorted((tmp_path / "floor" / "gold").iterdir())
    assert len(tables) == len(config.metrics) + 2  # the record, each metric's Gold table, the ledger
    assert all(spark.read.format("delta").load(str(t)).count() == GOLD_ROWS for t in tables)
