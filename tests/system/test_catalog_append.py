"""catalog.append: a local table that exists takes its rows through delta-rs. Spark, delta-rs and the
budget's checks must read such a table as if Spark had written it, past a checkpoint."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dp.budget import _check_append_only
from lakehouse import catalog, schemas
from lakehouse.config import Period
from lakehouse.errors import LakehouseError
from lakehouse.readers import LocalReader, SparkReader

RELEASED_AT = dt.datetime(2026, 11, 3, 1, 2, 3, 456789, tzinfo=dt.UTC)


def ledger_row(release_id: int, period_start: dt.date | None) -> tuple:
    return schemas.row(schemas.PRIVACY_LEDGER, {
        "release_id": release_id, "kind": "closed", "metric": "sessions_per_continent", "period_start": period_start,
        "epsilon": 0.25, "delta": 1e-7, "silver_version_from": 0, "silver_version_to": release_id,
        "released_at": RELEASED_AT + dt.timedelta(hours=release_id), "noise_kind": "laplace", "engine": "spark"})


def commit_info(path, version: int) -> dict:
    lines = (path / "_delta_log" / f"{version:020d}.json").read_text().splitlines()
    return next(json.loads(line)["commitInfo"] for line in lines if "commitInfo" in line)


def test_appends_to_a_local_table_are_read_as_spark_wrote_them(spark, tmp_path):
    path = tmp_path / "privacy_ledger"
    catalog.create_table(spark, str(path), schemas.PRIVACY_LEDGER, catalog.APPEND_ONLY)
    days = [dt.date(2026, 11, 1) + dt.timedelta(days=i) if i % 3 else None for i in range(22)]
    for i, day in enumerate(days[:10], start=1):  # a table Spark has written and checkpointed
        spark.createDataFrame([ledger_row(i, day)], schemas.PRIVACY_LEDGER).write.format("delta").mode("append") \
            .save(str(path))
    log = path / "_delta_log"
    assert (log / "._last_checkpoint.crc").is_file()  # Hadoop's checksum of Spark's _last_checkpoint
    for i, day in enumerate(days[10:], start=11):
        catalog.append(spark, str(path), schemas.PRIVACY_LEDGER, [ledger_row(i, day)], catalog.RELEASE_STATS)

    assert "delta-rs" in commit_info(path, 11)["engineInfo"]  # not Spark's job
    assert (log / f"{20:020d}.checkpoint.parquet").is_file()  # Spark's interval, not delta-rs' 100
    assert json.loads((log / "_last_checkpoint").read_text())["version"] == 20
    # a checksum of Spark's checkpoint beside delta-rs' would send Spark into ~3 s of retries
    assert not (log / "._last_checkpoint.crc").exists()
    rows = catalog.collect_utc(catalog.read(spark, str(path)).orderBy("release_id"))
    assert [r["release_id"] for r in rows] == list(range(1, 23))
    assert [r["period_start"] for r in rows] == days
    assert [r["released_at"] for r in rows] == [RELEASED_AT + dt.timedelta(hours=i) for i in range(1, 23)]
    assert rows[-1]["epsilon"] == 0.25 and rows[-1]["delta"] == 1e-7 and rows[-1]["kind"] == "closed"
    # the table keeps its NOT NULL columns, and the budget's reads and checks take it as appended to
    assert not next(f for f in catalog.read(spark, str(path)).schema.fields if f.name == "release_id").nullable
    for reader in (SparkReader(spark), LocalReader()):
        history = reader.history(str(path))
        assert sorted(c.version for c in history) == list(range(23))
        assert {(c.operation, c.mode, c.rows_inserted) for c in history if c.version > 0} == {("WRITE", "Append", 1)}
        _check_append_only(history, str(path), "gold.privacy_ledger")
        assert reader.max_value(str(path), "release_id") == 22


def test_a_local_append_refuses_what_spark_would(spark, tmp_path):
    path = tmp_path / "privacy_ledger"
    catalog.create_table(spark, str(path), schemas.PRIVACY_LEDGER, catalog.APPEND_ONLY)
    good = ledger_row(1, None)
    refused = {  # what createDataFrame's schema check refuses, Arrow would take (or bend)
        "release_id": None,  # NOT NULL
        "silver_version_to": 1.5,  # Arrow would store 1
        "epsilon": 1,  # Spark takes only floats for a double
        "released_at": dt.datetime(2026, 11, 3),  # no zone: Arrow would read it as UTC, Spark as local time
        "period_start": dt.datetime(2026, 11, 3, tzinfo=dt.UTC),  # a time for a date
    }
    names = schemas.PRIVACY_LEDGER.fieldNames()
    for column, value in refused.items():
        bad = tuple(value if name == column else v for name, v in zip(names, good, strict=True))
        with pytest.raises(LakehouseError, match=f"column {column} "):
            catalog.append(spark, str(path), schemas.PRIVACY_LEDGER, [bad])
    wider = T.StructType([*schemas.PRIVACY_LEDGER.fields, T.StructField("extra", T.StringType())])
    with pytest.raises(LakehouseError, match="has no column extra"):  # not dropped without a word
        catalog.append(spark, str(path), wider, [(*ledger_row(1, None), "x")])
    assert catalog.read(spark, str(path)).count() == 0


def test_a_local_table_is_created_as_spark_would_create_it(spark, tmp_path):
    """The record and the ledger (ensure_table) and a Gold table (its first append): reader 1 /
    writer 2 without table features (Gold's readers), the schema's NOT NULL columns, the given
    properties - delta.appendOnly among them, which Spark then enforces."""
    ledger, gold = tmp_path / "privacy_ledger", tmp_path / "gold" / "sessions_per_continent"
    catalog.ensure_table(spark, str(ledger), schemas.PRIVACY_LEDGER, catalog.APPEND_ONLY)
    catalog.append(spark, str(ledger), schemas.PRIVACY_LEDGER, [ledger_row(1, None)])
    catalog.append(spark, str(gold), schemas.PRIVACY_LEDGER, [ledger_row(1, dt.date(2026, 11, 1))],
                   catalog.RELEASE_STATS)
    for path, properties in ((ledger, catalog.APPEND_ONLY), (gold, catalog.RELEASE_STATS)):
        detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
        assert (detail["minReaderVersion"], detail["minWriterVersion"]) == (1, 2)
        assert not detail["tableFeatures"] or set(detail["tableFeatures"]) <= {"appendOnly", "invariants"}
        assert {k: detail["properties"][k] for k in properties} == properties
        fields = {f.name: f.nullable for f in catalog.read(spark, str(path)).schema.fields}
        assert fields == {f.name: f.nullable for f in schemas.PRIVACY_LEDGER.fields}
        assert catalog.read(spark, str(path)).count() == 1
    # a table created by its first append holds its rows in version 0 (`VERSION AS OF 0`), as Spark made it
    assert catalog.read(spark, str(gold), version=0).count() == 1 and catalog.latest_version(spark, str(gold)) == 0
    with pytest.raises(Exception, match="(?i)append"):  # Spark refuses to take a spend back
        spark.sql(f"DELETE FROM delta.`{ledger}` WHERE release_id = 1")
    assert catalog.read(spark, str(ledger)).count() == 1


def session_rows(first: int, n: int) -> list[tuple]:
    start = dt.datetime(2016, 8, 1, tzinfo=dt.UTC)
    return [schemas.row(schemas.SILVER_SESSIONS, {
        "session_id": f"{i:064x}", "user_id": f"{i // 3:064x}", "session_start": start + dt.timedelta(minutes=i),
        "continent": "Europe", "country": "France", "device": "desktop", "browser": "Chrome",
        "operating_system": "Linux", "num_pageviews": i % 7, "total_time_on_page": i % 300,
        "source_file": f"file:/bronze/{i // 10}.jsonl", "ingested_at": RELEASED_AT}) for i in range(first, first + n)]


def test_new_rows_of_a_local_silver_are_its_change_data_feeds_inserts(spark, tmp_path):
    """The release reads a local Silver's new rows from the files its commits added, listed through
    delta-rs, and its small batches are appended through delta-rs: for any range of versions the
    rows must be those of Delta's own change data feed - across Spark's and delta-rs' commits, a
    property's, an OPTIMIZE's (files rearranged, no row new) and, after a DELETE, by Delta itself."""
    from deltalake.exceptions import DeltaError

    from lakehouse.silver import new_rows

    path = str(tmp_path / "sessions")
    catalog.create_table(spark, path, schemas.SILVER_SESSIONS,
                         {"delta.enableChangeDataFeed": "true", **catalog.SILVER_STATS, **catalog.SILVER_ENCODING})
    frame = lambda first, n: spark.createDataFrame(session_rows(first, n), schemas.SILVER_SESSIONS)  # noqa: E731
    frame(0, 40).write.format("delta").mode("append").save(path)                       # 1: Spark
    assert catalog.append_frame_locally(path, frame(40, 30)) == 30                      # 2: delta-rs
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('lakehouse.x' = '1')")  # 3: no row
    assert catalog.append_frame_locally(path, frame(70, 0)) == 0                        # 4: a commit, no file
    frame(70, 20).repartition(3).write.format("delta").mode("append").save(path)       # 5: Spark, 3 files
    spark.sql(f"OPTIMIZE delta.`{path}`")                                              # 6: no row new
    assert catalog.append_frame_locally(path, frame(90, 5)) == 5                        # 7: delta-rs
    assert catalog.latest_version(spark, path) == 7

    def change_feed(lo: int, hi: int) -> list[str]:
        return sorted(r[0] for r in spark.read.format("delta").option("readChangeFeed", "true")
                      .option("startingVersion", lo).option("endingVersion", hi).load(path)
                      .where("_change_type = 'insert'").select("session_id").collect())

    def listed(lo: int, hi: int) -> list[str]:
        files = LocalReader().files_added(path, lo, hi)
        return sorted(r[0] for r in spark.read.parquet(*files).select("session_id").collect()) if files else []

    for lo, hi in [(0, 7), (1, 1), (2, 2), (2, 4), (3, 4), (4, 6), (5, 7), (6, 6), (7, 7)]:
        assert listed(lo, hi) == change_feed(lo, hi), (lo, hi)
        rows = new_rows(spark, path, lo, hi, Period.NONE)
        assert sorted(r[0] for r in rows.select("session_id").collect()) == change_feed(lo, hi), (lo, hi)
    assert len(change_feed(0, 7)) == 95  # the comparison above is not between two empty lists

    # delta-rs' files keep the table's types, statistics columns and Parquet settings
    import pyarrow.parquet as pq

    added = LocalReader().files_added(path, 7, 7)
    meta = pq.ParquetFile(added[0]).metadata
    encodings = {meta.schema.column(i).name: meta.row_group(0).column(i).encodings for i in range(meta.num_columns)}
    assert not any("DICTIONARY" in e for e in encodings["session_id"] + encodings["user_id"])
    assert any("DICTIONARY" in e for e in encodings["continent"])
    assert {meta.row_group(0).column(i).compression for i in range(meta.num_columns)} == {"SNAPPY"}  # as Spark's
    stats = json.loads(next(json.loads(line)["add"]["stats"] for line in
                            (tmp_path / "sessions" / "_delta_log" / f"{7:020d}.json").read_text().splitlines()
                            if '"add"' in line))
    assert set(stats["minValues"]) == {"session_id", "session_start"}
    assert spark.read.format("delta").load(path).schema == spark.createDataFrame([], schemas.SILVER_SESSIONS).schema

    # columns that are not the table's: Spark's write refuses them, with its message
    assert catalog.append_frame_locally(path, frame(95, 1).withColumn("extra", F.lit(1))) is None
    assert catalog.append_frame_locally(path, frame(95, 1).drop("browser")) is None
    assert catalog.latest_version(spark, path) == 7

    spark.sql(f"DELETE FROM delta.`{path}` WHERE session_id = '{0:064x}'")  # 8: rows removed
    with pytest.raises((ValueError, DeltaError)):
        LocalReader().files_added(path, 7, 8)
    assert sorted(r[0] for r in new_rows(spark, path, 7, 8, Period.NONE).select("session_id").collect()) \
        == change_feed(7, 8)
