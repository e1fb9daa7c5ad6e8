"""catalog.append: a local table that exists takes its rows through delta-rs. Spark, delta-rs and the
budget's checks must read such a table as if Spark had written it, past a checkpoint."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import types as T

from dp.budget import _check_append_only
from lakehouse import catalog, schemas
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
