"""End-to-end DP release through the CLI: Gold contents, ledger, budget cap, reprocessing, crashes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import SUBPROCESS_SPARK_CONF, lakehouse_running_until, run_cli, sigkill_group
from oracle import expected_from

CONTINENTS = ["Africa", "Americas", "Antarctica", "Asia", "Europe", "Oceania", "(not set)"]
CONF = """
[privacy]
epsilon_per_release = 1.0
delta_per_release = 1e-6
epsilon_cap = {cap}

[metrics.sessions_per_continent]
kind = "COUNT"
group_by = "continent"
output = "dp_sessions"
public_partitions = {continents}
max_partitions_contributed = 1
max_contributions_per_partition = 5
share = 2.0

[metrics.avg_session_duration_per_device]
kind = "MEAN"
group_by = "device"
output = "dp_avg_duration_s"
value = "total_time_on_page"
min_value = 0.0
max_value = 3600.0
public_partitions = ["desktop", "mobile", "tablet", "(not set)"]
share = 1.0

[metrics.sessions_per_country]
kind = "COUNT"
group_by = "country"
output = "dp_sessions"
share = 1.0
"""
ROW_LEVEL = {"user_id", "session_id", "raw", "source_file", "session_start"}


@pytest.fixture
def conf(tmp_path) -> Path:
    path = tmp_path / "release.toml"
    # The [spark] JVM options only matter to subprocesses: the in-process session is already up.
    path.write_text(CONF.format(cap=10.0, continents=json.dumps(CONTINENTS)) + SUBPROCESS_SPARK_CONF)
    return path


def cli(conf: Path, root: Path, *args: str):
    return run_cli("--conf", str(conf), "--root", str(root), *args)


def sql_json(conf: Path, root: Path, query: str) -> list[dict]:
    r = cli(conf, root, "sql", query, "--format", "json")
    assert r.code == 0, r.err
    return [json.loads(line) for line in r.out.splitlines()]


def table_version(spark, path: Path) -> int:
    return spark.sql(f"DESCRIBE HISTORY delta.`{path}`").agg({"version": "max"}).first()[0]


def gold_tables(root: Path) -> list[str]:
    """Gold tables with at least one commit. (A process killed mid-publish can leave a table
    that another thread was still creating: its folder, but no commit yet.)"""
    gold = root / "gold"
    return sorted(p.name for p in gold.iterdir() if any((p / "_delta_log").glob("*.json"))) if gold.is_dir() else []


def test_incremental_releases_ledger_reprocess_and_time_travel(spark, root, conf):
    assert cli(conf, root, "generate", "--sessions", "3000", "--files", "2", "--seed", "21").code == 0
    first = expected_from(sorted((root / "bronze").glob("*.jsonl")))
    r = cli(conf, root, "run")
    assert r.code == 0, r.err
    assert "release 1 (incremental): silver.sessions versions 0..1, 3000 rows in" in r.out

    # Every public partition appears, Antarctica (no rows at all) included; nothing else does.
    continents = sql_json(conf, root, "SELECT * FROM gold.sessions_per_continent")
    assert sorted(c["continent"] for c in continents) == sorted(CONTINENTS)
    # Budget split by share 2:1:1 of epsilon 1; the country metric spends the delta (selection).
    ledger = {row["metric"]: row for row in sql_json(conf, root, "SELECT * FROM gold.privacy_ledger")}
    assert ledger["sessions_per_continent"]["epsilon"] == pytest.approx(0.5)
    assert ledger["avg_session_duration_per_device"]["epsilon"] == pytest.approx(0.25)
    assert ledger["sessions_per_country"]["epsilon"] == pytest.approx(0.25)
    assert ledger["sessions_per_country"]["delta"] == pytest.approx(1e-6)
    assert sum(row["epsilon"] for row in ledger.values()) == pytest.approx(1.0)
    assert {row["rows_in"] for row in ledger.values()} == {3000}
    # noise_stddev from the parameters: Laplace, L1 sensitivity 1 * 5, epsilon 0.5 -> sqrt(2) * 10.
    assert [c["noise_stddev"] for c in continents] == pytest.approx([math.sqrt(2) * 5 / 0.5] * len(CONTINENTS))
    assert [c["epsilon"] for c in continents] == pytest.approx([0.5] * len(CONTINENTS))
    # The DP counts are near the true ones (noise sd 14; contribution bounding only lowers them).
    by_name = {c["continent"]: c["dp_sessions"] for c in continents}
    assert by_name["Americas"] == pytest.approx(first.continents["Americas"], rel=0.5)
    means = sql_json(conf, root, "SELECT * FROM gold.avg_session_duration_per_device")
    assert all(m["noise_stddev"] is None and 0 <= m["dp_avg_duration_s"] <= 3600 for m in means)

    # Nothing new: nothing released, nothing spent, Gold untouched.
    versions = {t: table_version(spark, root / "gold" / t) for t in gold_tables(root)}
    r = cli(conf, root, "release")
    assert r.code == 0 and "nothing to release" in r.out and "no budget spent" in r.out
    assert {t: table_version(spark, root / "gold" / t) for t in gold_tables(root)} == versions

    # New Bronze files: the second release reads only the rows they added.
    assert cli(conf, root, "generate", "--sessions", "800", "--seed", "22", "--start", "2017-09-01").code == 0
    new_files = [p for p in (root / "bronze").glob("*.jsonl") if "_s22_" in p.name]
    second = expected_from(new_files, already=first.sessions)
    r = cli(conf, root, "run")
    assert r.code == 0, r.err
    assert f"release 2 (incremental): silver.sessions versions 2..2, {len(second.sessions)} rows in" in r.out

    # Time travel over Silver: reprocess version 1 (the first 3000 sessions), kind 'reprocess'.
    r = cli(conf, root, "reprocess", "--silver-version", "1")
    assert r.code == 0, r.err
    assert "release 3 (reprocess): silver.sessions versions 0..1, 3000 rows in" in r.out
    rows = sql_json(conf, root, "SELECT release_id, kind, silver_version_from, silver_version_to, rows_in "
                                "FROM gold.privacy_ledger WHERE metric = 'sessions_per_continent' ORDER BY release_id")
    assert rows == [
        {"release_id": 1, "kind": "incremental", "silver_version_from": 0, "silver_version_to": 1, "rows_in": 3000},
        {"release_id": 2, "kind": "incremental", "silver_version_from": 2, "silver_version_to": 2,
         "rows_in": len(second.sessions)},
        {"release_id": 3, "kind": "reprocess", "silver_version_from": 0, "silver_version_to": 1, "rows_in": 3000},
    ]
    r = cli(conf, root, "reprocess", "--silver-version", "99")
    assert r.code == 1 and "versions 0..2" in r.error

    # Budget: three releases of epsilon 1.
    r = cli(conf, root, "budget")
    assert r.code == 0
    assert "epsilon spent: 3\n" in r.out and "epsilon cap: 10\n" in r.out and "epsilon remaining: 7\n" in r.out

    # Gold time travel: version 0 of the continent table is release 1 alone.
    v0 = sql_json(conf, root, "SELECT DISTINCT release_id FROM gold.sessions_per_continent VERSION AS OF 0")
    assert v0 == [{"release_id": 1}]

    # No Gold table holds row-level columns; no metric table has more than partitions x releases rows;
    # the ledger accounts for every (release, metric) present in Gold.
    ledger_keys = {(r["release_id"], r["metric"]) for r in sql_json(conf, root, "SELECT * FROM gold.privacy_ledger")}
    for table in gold_tables(root):
        df = spark.read.format("delta").load(str(root / "gold" / table))
        assert not ROW_LEVEL & set(df.columns), table
        if table != "privacy_ledger":
            assert {(r[0], table) for r in df.select("release_id").distinct().collect()} <= ledger_keys
    assert spark.read.format("delta").load(str(root / "gold" / "sessions_per_continent")).count() == 3 * len(CONTINENTS)
    assert spark.read.format("delta").load(str(root / "gold" / "avg_session_duration_per_device")).count() == 3 * 4


def test_budget_cap_refuses_and_writes_nothing(spark, root, tmp_path):
    conf = tmp_path / "cap.toml"
    conf.write_text(CONF.format(cap=1.5, continents=json.dumps(CONTINENTS)))
    cli(conf, root, "generate", "--sessions", "500", "--seed", "31")
    assert cli(conf, root, "run").code == 0
    gold_before = {t: table_version(spark, root / "gold" / t) for t in gold_tables(root)}
    staging_before = sorted((root / "silver" / "_release_staging").iterdir())

    cli(conf, root, "generate", "--sessions", "300", "--seed", "32")
    r = cli(conf, root, "run")
    assert r.code == 3
    assert "privacy budget exhausted" in r.error and "epsilon_cap" in r.error
    assert {t: table_version(spark, root / "gold" / t) for t in gold_tables(root)} == gold_before
    assert sorted((root / "silver" / "_release_staging").iterdir()) == staging_before
    r = cli(conf, root, "budget")
    assert "epsilon spent: 1\n" in r.out and "epsilon remaining: 0.5\n" in r.out


def test_release_before_ingest_is_a_clear_error(root, conf):
    r = cli(conf, root, "release")
    assert r.code == 1 and "run `lakehouse ingest` first" in r.error


def _gold_snapshot(spark, root: Path) -> dict[str, list[tuple]]:
    out = {}
    for table in gold_tables(root):
        df = spark.read.format("delta").load(str(root / "gold" / table))
        out[table] = sorted(tuple(r) for r in df.collect())
    return out


@pytest.mark.slow
@pytest.mark.parametrize("failpoint", [
    "release-after-stage",  # computed and staged, nothing published
    "release-after-ledger",  # ledger written, no Gold metric table yet
    "release-after-gold.avg_session_duration_per_device",  # ledger and one of three tables
    None,  # killed while computing
])
def test_sigkill_mid_release_then_rerun_publishes_exactly_once(spark, root, conf, failpoint):
    cli(conf, root, "generate", "--sessions", "1500", "--seed", "41")
    assert cli(conf, root, "ingest").code == 0
    env = {"LAKEHOUSE_FAILPOINT": failpoint} if failpoint else {}
    wait_for = f"FAILPOINT {failpoint}" if failpoint else "release: DP over"
    with lakehouse_running_until("--conf", str(conf), "--root", str(root), "release", env=env,
                                 wait_for=wait_for) as proc:
        # Meanwhile, an overlapping run (a scheduler starting the next job early) fails cleanly.
        overlap = cli(conf, root, "run")
        assert overlap.code == 75 and "another lakehouse run holds" in overlap.error
        sigkill_group(proc)
    published_before = _gold_snapshot(spark, root)

    r = cli(conf, root, "release")
    assert r.code == 0, r.err
    if failpoint:
        # The staged release is published as computed the first time: no fresh noise, no new spend.
        assert "recovered release 1" in r.out and "nothing to release" in r.out
        after = _gold_snapshot(spark, root)
        for table, rows in published_before.items():
            assert set(rows) <= set(after[table]), table
    else:
        assert "release 1 (incremental)" in r.out
    ledger = sql_json(conf, root, "SELECT release_id, metric, epsilon FROM gold.privacy_ledger")
    assert sorted((row["release_id"], row["metric"]) for row in ledger) == [
        (1, "avg_session_duration_per_device"), (1, "sessions_per_continent"), (1, "sessions_per_country")]
    assert sum(row["epsilon"] for row in ledger) == pytest.approx(1.0)
    continents = sql_json(conf, root, "SELECT release_id, count(*) AS n FROM gold.sessions_per_continent GROUP BY 1")
    assert continents == [{"release_id": 1, "n": len(CONTINENTS)}]
    devices = sql_json(conf, root, "SELECT count(*) AS n FROM gold.avg_session_duration_per_device")
    assert devices == [{"n": 4}]
    assert "epsilon spent: 1\n" in cli(conf, root, "budget").out


def test_run_with_sample_data_shows_gold_and_reports_plot_it(root, conf):
    """The `make run` path: empty Bronze -> sample events -> ingest -> release -> Gold printed."""
    r = cli(conf, root, "run", "--generate-if-empty", "2000", "--show")
    assert r.code == 0, r.err
    assert "Bronze was empty: wrote" in r.out
    for table in ("gold.sessions_per_continent", "gold.avg_session_duration_per_device", "gold.sessions_per_country"):
        assert f"== {table} (latest release) ==" in r.out
    assert "== gold.privacy_ledger ==" in r.out and "epsilon remaining: 9\n" in r.out

    r = cli(conf, root, "run", "--generate-if-empty", "2000")  # Bronze is not empty any more
    assert r.code == 0 and "Bronze was empty" not in r.out and "nothing to release" in r.out

    r = cli(conf, root, "report", "--compare-raw")
    assert r.code == 0, r.err
    written = [Path(p) for p in r.out.split()]
    assert len(written) == 9
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    raw = [p for p in written if "raw_vs_dp" in p.name]
    assert len(raw) == 3 and all(p.parent == root / "_restricted" for p in raw)
    assert all(p.parent == root / "reports" for p in written if p not in raw)
    assert "NON-PRIVATE" in r.err
