"""End-to-end: generated or hand-written Bronze files -> `lakehouse ingest` -> exact Silver contents."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from oracle import expected_from, pseudonym
from support import (
    SUBPROCESS_SPARK_CONF,
    lakehouse_running_until,
    process_time_zone,
    run_cli,
    session,
    sigkill_group,
)

from lakehouse import jvm_bridge
from lakehouse.readers import commit_of
from streaming.bronze_files import BRONZE_NAME, local_scan


def summary(out: str) -> dict[str, int]:
    """The counts `ingest --counts` prints (restricted: exact numbers)."""
    values = {k: int(v) for k, v in re.findall(r"^(files read|rows ingested|rows quarantined|duplicates skipped): (\d+)$",
                                               out, re.M)}
    version = re.search(r"silver\.sessions (?:unchanged at )?version (\d+)", out)
    values["version"] = int(version.group(1))
    return values


def silver_rows(spark, root: Path, table: str = "sessions"):
    return spark.read.format("delta").load(str(root / "silver" / table))


def bronze_files(root: Path) -> list[Path]:
    return sorted((root / "bronze").glob("*.jsonl*"))


def test_generate_ingest_rerun_and_new_files(spark, root):
    r = run_cli("--root", str(root), "generate", "--sessions", "3000", "--files", "3", "--seed", "7")
    assert r.code == 0, r.err
    first_files = bronze_files(root)
    assert len(first_files) == 3
    exp = expected_from(first_files)
    assert exp.bad_lines > 0 and exp.duplicates > 0  # the sample has both, so both paths are exercised

    r = run_cli("--root", str(root), "ingest", "--counts")
    assert r.code == 0, r.err
    s = summary(r.out)
    assert s["files read"] == 3
    assert s["rows ingested"] == len(exp.sessions) == 3000
    assert s["rows quarantined"] == exp.bad_lines
    assert s["duplicates skipped"] == exp.duplicates
    sessions = silver_rows(spark, root)
    assert sessions.count() == len(exp.sessions)
    assert {r[0] for r in sessions.select("session_id").collect()} == exp.sessions
    assert silver_rows(spark, root, "quarantine").count() == exp.bad_lines
    first_version = s["version"]

    # Rerun with nothing new: nothing read, nothing written, same Silver version.
    r = run_cli("--root", str(root), "ingest", "--counts")
    assert r.code == 0, r.err
    assert summary(r.out) == {"files read": 0, "rows ingested": 0, "rows quarantined": 0, "duplicates skipped": 0,
                              "version": first_version}

    # Scribble on an already-ingested file: if the stream re-read old files, this would be quarantined.
    with open(first_files[0], "a") as fh:
        fh.write("this line must never be read\n")
    r = run_cli("--root", str(root), "generate", "--sessions", "1000", "--files", "2", "--seed", "8")
    assert r.code == 0, r.err
    new_files = [f for f in bronze_files(root) if f not in first_files]
    exp_new = expected_from(new_files, already=exp.sessions)
    r = run_cli("--root", str(root), "ingest", "--counts")
    assert r.code == 0, r.err
    s = summary(r.out)
    assert s["files read"] == 2
    assert s["rows ingested"] == len(exp_new.sessions)
    assert s["rows quarantined"] == exp_new.bad_lines
    assert s["duplicates skipped"] == exp_new.duplicates
    assert s["version"] > first_version
    assert silver_rows(spark, root).count() == len(exp.sessions | exp_new.sessions)
    assert silver_rows(spark, root, "quarantine").count() == exp.bad_lines + exp_new.bad_lines

    # The change data feed is on: the DP release reads only what each version added.
    props = spark.sql(f"DESCRIBE DETAIL delta.`{root / 'silver' / 'sessions'}`").first()["properties"]
    assert props["delta.enableChangeDataFeed"] == "true"


def _write(path: Path, lines: list[str], gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_gzip_empty_files_duplicates_across_files_and_other_names(spark, root):
    bronze = root / "bronze"
    a = json.dumps(session(fullVisitorId="1", visitId="100"))
    b = json.dumps(session(fullVisitorId="2", visitId="200"))
    c = json.dumps(session(fullVisitorId="3", visitId="300"))
    _write(bronze / "a.jsonl", [a, b, a])                       # duplicate inside a file
    _write(bronze / "2017" / "b.json.gz", [b, c], gz=True)       # gzip, in a subfolder, b again
    _write(bronze / "empty.jsonl", [])                          # empty file
    _write(bronze / "bad.json", ['{"visitId": "1"}', "oops"])   # two bad lines
    _write(bronze / "notes.txt", [a])                           # not an event file name: ignored
    _write(bronze / ".hidden.jsonl.tmp", [c])                   # half-written temp file: ignored

    r = run_cli("--root", str(root), "ingest", "--counts")
    assert r.code == 0, r.err
    s = summary(r.out)
    assert s["files read"] == 4  # a, b.json.gz, empty, bad
    assert (s["rows ingested"], s["rows quarantined"], s["duplicates skipped"]) == (3, 2, 2)
    assert sorted(r[0] for r in silver_rows(spark, root).select("session_id").collect()) == sorted(
        pseudonym(m) for m in ("1/100", "2/200", "3/300"))
    reasons = sorted(r[0] for r in silver_rows(spark, root, "quarantine").select("reason").collect())
    assert reasons == ["missing_field: fullVisitorId", "not_json: the line is not a JSON object"]


def test_a_session_twice_in_a_batch_is_stored_once_as_its_first_files_copy(spark, root):
    """A small batch that holds a session twice (collected, then found not unique) is deduplicated
    before its delta-rs append: the copy in the first file (by name) is kept - on an empty Silver,
    and where the sessions stored in the batch's window are taken out too. (A batch with no session
    twice, appended as collected, is every other ingest test's.)"""
    bronze = root / "bronze"

    def line(visitor: str, device: str) -> str:
        return json.dumps(session(fullVisitorId=visitor, visitId="7",
                                  device={"browser": "Chrome", "operatingSystem": "Linux", "deviceCategory": device}))

    _write(bronze / "b.jsonl", [line("1", "tablet"), line("2", "desktop")])
    _write(bronze / "a.jsonl", [line("1", "mobile")])  # the same session as b's first line, named first
    r = run_cli("--root", str(root), "ingest", "--counts")
    assert r.code == 0, r.err
    assert (summary(r.out)["rows ingested"], summary(r.out)["duplicates skipped"]) == (2, 1)
    _write(bronze / "c.jsonl", [line("2", "tablet"), line("3", "tablet")])  # 2 is stored; 3 is in d too
    _write(bronze / "d.jsonl", [line("2", "mobile"), line("3", "mobile"), line("4", "mobile")])
    r = run_cli("--root", str(root), "ingest", "--counts")
    assert r.code == 0, r.err
    assert (summary(r.out)["rows ingested"], summary(r.out)["duplicates skipped"]) == (2, 3)
    stored = {row["session_id"]: (Path(row["source_file"]).name, row["device"])
              for row in silver_rows(spark, root).collect()}
    assert stored == {pseudonym("1/7"): ("a.jsonl", "mobile"), pseudonym("2/7"): ("b.jsonl", "desktop"),
                      pseudonym("3/7"): ("c.jsonl", "tablet"), pseudonym("4/7"): ("d.jsonl", "mobile")}
    silver = root / "silver" / "sessions"
    engines = [h["engineInfo"].split(":")[0] for h in spark.sql(f"DESCRIBE HISTORY delta.`{silver}`").collect()
               if h["operation"] == "WRITE"]
    assert engines == ["delta-rs", "delta-rs"]


def test_bronze_scan_counts_event_files_and_names_the_others(spark, tmp_path):
    """The ingest's count of Bronze files (a JVM walk, any Hadoop file system) agrees with the idle
    check's local listing: subfolders walked, hidden names (. or _) skipped with all they hold."""
    bronze = tmp_path / "bronze"
    for name in ("a.jsonl", "2017/01/b.json.gz", "2017/01/c.ndjson", "2017/notes.txt", "README.md",
                 "_tmp/d.jsonl", ".staging/e.jsonl", "2017/.f.jsonl", "2017/_g.json", "2017/01/.h/i.jsonl"):
        _write(bronze / name, [])
    assert jvm_bridge.scan_files(spark, str(bronze), BRONZE_NAME) == (3, ["2017/notes.txt", "README.md"])
    events, ignored = local_scan(str(bronze))
    assert (len(events), ignored) == (3, ["README.md", "2017/notes.txt"])
    assert jvm_bridge.scan_files(spark, str(tmp_path / "missing"), BRONZE_NAME) == (0, [])


def test_sql_formats(spark, root):
    run_cli("--root", str(root), "generate", "--sessions", "500", "--seed", "3", "--bad-rate", "0")
    exp = expected_from(bronze_files(root))
    assert run_cli("--root", str(root), "ingest").code == 0
    query = "SELECT continent, count(*) AS n FROM silver.sessions GROUP BY continent ORDER BY continent"

    r = run_cli("--root", str(root), "sql", query, "--format", "json")
    assert r.code == 0, r.err
    rows = [json.loads(line) for line in r.out.splitlines()]
    assert {row["continent"]: row["n"] for row in rows} == dict(exp.continents)

    r = run_cli("--root", str(root), "sql", query, "--format", "csv")
    parsed = list(csv.reader(io.StringIO(r.out)))
    assert parsed[0] == ["continent", "n"]
    assert {c: int(n) for c, n in parsed[1:]} == dict(exp.continents)

    r = run_cli("--root", str(root), "sql", query)
    lines = r.out.splitlines()
    assert lines[0].split() == ["continent", "n"] and set(lines[1]) == {"-", " "}
    assert lines[-1] == f"({len(exp.continents)} rows)"

    r = run_cli("--root", str(root), "sql", "SELECT count(*) AS n FROM silver.sessions VERSION AS OF 0", "--format", "json")
    assert json.loads(r.out) == {"n": 0}  # version 0 is the empty table as created

    r = run_cli("--root", str(root), "sql", "SELECT nope FROM silver.sessions")
    assert r.code == 1 and "SQL error" in r.error

    r = run_cli("--root", str(root), "sql", "SELECT * FROM gold.sessions_per_continent")
    assert r.code == 1 and "does not exist yet" in r.error


def test_another_pseudonym_key_is_refused(root, monkeypatch):
    """Rows hashed with a second key would split each user into two privacy units."""
    assert run_cli("--root", str(root), "generate", "--sessions", "200", "--files", "1").code == 0
    assert run_cli("--root", str(root), "ingest").code == 0
    monkeypatch.setenv("LAKEHOUSE_PSEUDONYM_KEY", "some-other-key")
    r = run_cli("--root", str(root), "ingest")
    assert r.code == 1
    assert "LAKEHOUSE_PSEUDONYM_KEY is not the key silver.sessions was built with" in r.error
    assert "some-other-key" not in r.error + r.out


def test_bronze_missing_is_a_clear_error(root):
    r = run_cli("--root", str(root), "ingest")
    assert r.code == 1
    assert "Bronze folder" in r.error and "does not exist" in r.error


@pytest.mark.slow
@pytest.mark.parametrize("env, wait_for", [
    # Frozen right after a batch's MERGE committed, before its quarantine rows and its checkpoint
    # commit: the worst moment for exactly-once.
    ({"LAKEHOUSE_FAILPOINT": "ingest-after-merge"}, "FAILPOINT ingest-after-merge"),
    # Its quarantine rows committed too, not its checkpoint: the replay must not append them again.
    ({"LAKEHOUSE_FAILPOINT": "ingest-after-quarantine"}, "FAILPOINT ingest-after-quarantine"),
    # Killed at whatever point the second micro-batch has reached when the first one reports done.
    ({}, "ingest batch 0 committed"),
], ids=["after-merge", "after-quarantine", "mid-stream"])
def test_sigkill_mid_ingest_then_rerun_is_exactly_once(spark, root, tmp_path, env, wait_for):
    run_cli("--root", str(root), "generate", "--sessions", "4000", "--files", "4", "--seed", "11")
    exp = expected_from(bronze_files(root))
    conf = tmp_path / "one-file-per-batch.toml"
    conf.write_text("[ingest]\nmax_files_per_trigger = 1\n" + SUBPROCESS_SPARK_CONF)

    with lakehouse_running_until("--conf", str(conf), "--root", str(root), "ingest", env=env,
                                 wait_for=wait_for) as proc:
        assert sigkill_group(proc) == -signal.SIGKILL

    r = run_cli("--conf", str(conf), "--root", str(root), "ingest")
    assert r.code == 0, r.err
    if env.get("LAKEHOUSE_FAILPOINT", "").startswith("ingest-after"):
        # the batch killed after its MERGE committed (the first one, or the first with quarantine rows)
        # is replayed; the output says so (not "0 rows")
        assert re.search(r"^batch \d+ was interrupted after it had committed to silver.sessions", r.out, re.M), r.out
    sessions = silver_rows(spark, root)
    assert sessions.count() == len(exp.sessions)
    assert sessions.select("session_id").distinct().count() == len(exp.sessions)
    assert {r[0] for r in sessions.select("session_id").collect()} == exp.sessions
    assert silver_rows(spark, root, "quarantine").count() == exp.bad_lines


def test_every_batch_is_one_silver_version_whatever_it_holds(spark, root):
    """silver.sessions' version is published in Gold: it must count Bronze deliveries, not reveal
    whether they held a new session. A batch of duplicates only, or of broken lines only, commits too."""
    bronze = root / "bronze"
    _write(bronze / "a.jsonl", [json.dumps(session(fullVisitorId="1", visitId="100"))])
    versions = []
    for name, lines in (("a.jsonl", None), ("dup.jsonl", [json.dumps(session(fullVisitorId="1", visitId="100"))]),
                        ("bad.jsonl", ["not json"]), ("empty.jsonl", [])):
        if lines is not None:
            _write(bronze / name, lines)
        r = run_cli("--root", str(root), "ingest", "--counts")
        assert r.code == 0, r.err
        versions.append(summary(r.out)["version"])
    assert [b - a for a, b in zip(versions, versions[1:], strict=False)] == [1, 1, 1]  # one new version per batch
    assert silver_rows(spark, root).count() == 1


def test_a_backfill_file_with_old_modification_times_is_not_skipped(spark, root):
    """Spark's file source skips a new file more than maxFileAge (7 days by default) older than the
    newest file it took: a backfill copied with its times kept would be lost without a word."""
    bronze = root / "bronze"
    _write(bronze / "today.jsonl", [json.dumps(session(fullVisitorId="1", visitId="1"))])
    assert run_cli("--root", str(root), "ingest").code == 0
    backfill = bronze / "2016" / "backfill.jsonl"
    _write(backfill, [json.dumps(session(fullVisitorId="2", visitId="2"))])
    long_ago = time.time() - 90 * 86_400
    os.utime(backfill, (long_ago, long_ago))
    r = run_cli("--root", str(root), "ingest")
    assert r.code == 0 and "files read: 1" in r.out, r.out + r.err
    assert silver_rows(spark, root).count() == 2


def test_a_redelivery_is_merged_in_a_process_west_of_utc_with_no_dedupe_window(spark, root):
    """The batch's window comes from its sessions' times, which PySpark hands to Python in the
    process's time zone: read as UTC, a New York process's window missed a stored session by the
    offset, and with no widening the re-delivered session was appended a second time. (The CLI sets
    TZ=UTC; code calling ingest() directly, as the bench's hourly simulation does, may not.)"""
    from lakehouse.config import Config, IngestConfig, StorageConfig
    from lakehouse.storage import Locations
    from streaming.ingest import ingest

    config = Config(storage=StorageConfig(root=str(root)), ingest=IngestConfig(dedupe_window_hours=0))
    loc = Locations.from_config(config)
    line = json.dumps(session(fullVisitorId="1", visitId="7", visitStartTime="1470009600"))
    with process_time_zone("America/New_York"):
        for name in ("a.jsonl", "b.jsonl"):
            _write(root / "bronze" / name, [line])
            ingest(spark, config, loc)
    assert silver_rows(spark, root).count() == 1


@pytest.mark.parametrize("deletion_vectors", [False, True], ids=["delta-rs-listing", "spark-merge"])
def test_a_batch_is_inserted_but_for_the_sessions_stored_in_its_window(spark, root, deletion_vectors):
    """A batch whose time window (its sessions' span, widened by the 48 h dedupe window) holds no
    stored session cannot meet a duplicate there: it is appended. A batch that re-delivers a stored
    session - at the same time, or hours off - stores it once. A local Silver is checked through
    delta-rs' file list and appended to; one whose Parquet files are not its rows (deletion vectors)
    through Delta's MERGE."""
    bronze = root / "bronze"
    day = 1_470_009_600  # 2016-08-01 00:00 UTC

    def line(visitor: str, start: int) -> str:
        return json.dumps(session(fullVisitorId=visitor, visitId="7", visitStartTime=str(start)))

    batches = [("a.jsonl", [line("1", day), line("2", day + 3600)]),           # empty Silver
               ("b.jsonl", [line("3", day + 30 * 86_400)]),                    # 30 days on: nothing near
               ("c.jsonl", [line("1", day), line("4", day + 86_400)]),         # session 1 again
               ("d.jsonl", [line("2", day + 5 * 3600), line("3", day + 30 * 86_400)])]  # 2 hours off; 3 again
    silver = root / "silver" / "sessions"
    for i, (name, lines) in enumerate(batches):
        _write(bronze / name, lines)
        r = run_cli("--root", str(root), "ingest", "--counts")
        assert r.code == 0, r.err
        if i == 0 and deletion_vectors:
            spark.sql(f"ALTER TABLE delta.`{silver}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    history = [h for h in spark.sql(f"DESCRIBE HISTORY delta.`{silver}`").orderBy("version").collect()
               if "enableDeletionVectors" not in str(h["operationParameters"])]  # the batches' commits
    commits = [commit_of(h["version"], h["operation"], h["operationParameters"], h["operationMetrics"])
               for h in history[-4:]]
    assert [c.rows_inserted for c in commits] == [2, 1, 1, 0]
    # a batch's few rows are appended through delta-rs (the last batch's: none, in a commit of its own)
    assert [c.operation for c in commits] == ["WRITE", "WRITE", "MERGE" if deletion_vectors else "WRITE", "WRITE"]
    assert [h["engineInfo"].split(":")[0] for h in history[-4:]] == (
        ["delta-rs", "delta-rs", "Apache-Spark/4.2.0 Delta-Lake/4.4.0", "delta-rs"] if deletion_vectors
        else ["delta-rs"] * 4)
    assert summary(r.out)["rows ingested"] == 0 and summary(r.out)["duplicates skipped"] == 2
    stored = sorted(r[0] for r in silver_rows(spark, root).select("session_id").collect())
    assert stored == sorted(pseudonym(f"{v}/7") for v in "1234")


def test_delta_rs_lists_the_files_whose_statistics_meet_a_window(spark, tmp_path):
    """The ingest reads only these files for stored copies of a batch's sessions: a file left out
    that holds one in the window would store it twice."""
    from deltalake.exceptions import DeltaError

    from lakehouse.readers import LocalReader

    table = tmp_path / "sessions"
    day = dt.datetime(2016, 8, 1, tzinfo=dt.UTC)
    hour = dt.timedelta(hours=1)

    def add(*starts: dt.datetime, stats: bool = True) -> str:
        """One file of rows at these times; its path."""
        before = set(table.glob("*.parquet"))
        spark.conf.set("spark.databricks.delta.stats.collect", str(stats).lower())
        try:
            (spark.createDataFrame([(s,) for s in starts], "session_start TIMESTAMP").coalesce(1)
             .write.format("delta").mode("append").save(str(table)))
        finally:
            spark.conf.unset("spark.databricks.delta.stats.collect")
        (new,) = set(table.glob("*.parquet")) - before
        return str(new)

    first = add(day, day + 2 * hour)
    edge = add(day + 5 * hour + dt.timedelta(microseconds=999_500))  # its max statistic is truncated to the ms
    later = add(day + 48 * hour)
    unknown = add(day + 100 * hour, stats=False)  # no statistics: meets every window
    reader = LocalReader()

    def meeting(lo: dt.datetime, hi: dt.datetime) -> set[str]:
        return set(reader.files_meeting(str(table), "session_start", lo, hi))

    assert meeting(day + 2 * hour, day + 2 * hour) == {first, unknown}  # bounds are inclusive
    assert meeting(day - hour, day - dt.timedelta(microseconds=1)) == {unknown}
    assert meeting(day + 3 * hour, day + 5 * hour + dt.timedelta(microseconds=999_400)) == {edge, unknown}
    assert meeting(day + 5 * hour + dt.timedelta(microseconds=999_700), day + 6 * hour) == {edge, unknown}
    assert meeting(day + 6 * hour, day + 47 * hour) == {unknown}
    assert meeting(day, day + 48 * hour) == {first, edge, later, unknown}

    spark.sql(f"ALTER TABLE delta.`{table}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    with pytest.raises((ValueError, DeltaError)):  # its Parquet files are not its rows: Delta must read it
        meeting(day, day)


@pytest.mark.parametrize("bound", ["rows", "bytes"])
def test_a_batch_too_big_to_collect_is_appended_through_spark(spark, root, monkeypatch, bound):
    """A batch's few rows go to a local Silver and quarantine through delta-rs, collected to the
    driver; past LOCAL_FRAME_ROWS (or, for quarantined lines, which are kept whole, LOCAL_FRAME_BYTES)
    Spark writes them. Either way every row arrives once."""
    from lakehouse import catalog
    from lakehouse.config import Config, StorageConfig
    from lakehouse.storage import Locations
    from streaming.ingest import ingest

    config = Config(storage=StorageConfig(root=str(root)))
    loc = Locations.from_config(config)

    def engines(table: str) -> list[str]:
        return [h["engineInfo"].split(":")[0].split("/")[0] for h in
                spark.sql(f"DESCRIBE HISTORY delta.`{root / 'silver' / table}`").orderBy("version").collect()]

    good = [json.dumps(session(fullVisitorId=str(v), visitId="1")) for v in range(3)]
    _write(root / "bronze" / "a.jsonl", [*good[:2], "not json"])
    ingest(spark, config, loc)
    monkeypatch.setattr(catalog, "LOCAL_FRAME_ROWS" if bound == "rows" else "LOCAL_FRAME_BYTES", 0 if bound == "rows" else 8)
    _write(root / "bronze" / "b.jsonl", [good[2], '{"visitId": "1"}', "not json either"])
    ingest(spark, config, loc)
    assert engines("sessions")[-2:] == ["delta-rs", "delta-rs" if bound == "bytes" else "Apache-Spark"]
    assert engines("quarantine")[-2:] == ["delta-rs", "Apache-Spark"]
    assert silver_rows(spark, root).count() == 3 and silver_rows(spark, root, "quarantine").count() == 3
