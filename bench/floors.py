"""The floors: the least any implementation of the contracts must do, timed beside the real thing.
If a floor alone is over a target, no implementation meets that target on this machine.

Kept apart from bench.tasks so that the cold floor's fresh process imports only what it uses
(bench.tasks pulls in the release and PipelineDP, ~1 s of imports that no floor needs).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse import catalog
from lakehouse.config import MetricConfig, Period
from lakehouse.schemas import SILVER_SESSIONS
from lakehouse.silver import new_rows
from lakehouse.storage import join
from streaming.schema import BRONZE_SCHEMA
from streaming.transform import hmac_sha256_hex, session_message

FLOOR_KEY = b"bench-floor-key"
GOLD_ROWS = 6  # a release of gold.sessions_per_continent: one row per continent


def floor_sessions(spark: SparkSession, bronze: str | Path) -> DataFrame:
    """Bronze read as text and parsed with ``from_json`` (the quarantine keeps each bad record's
    original line, which Spark's JSON source never exposes), each row's pseudonyms computed
    (``user_id`` and ``session_id`` are HMAC-SHA256s), the Silver columns (counts 0 where missing,
    as Silver's NOT NULL columns require). No validation, quarantine or dedupe."""
    rec = F.col("rec")
    number = lambda field: field.try_cast("long")  # noqa: E731
    count = lambda field: F.coalesce(number(field).cast("int"), F.lit(0))  # noqa: E731
    return spark.read.text(str(bronze)).select(F.from_json("value", BRONZE_SCHEMA).alias("rec"),
                                               F.col("_metadata.file_path").alias("source_file")).select(
        hmac_sha256_hex(FLOOR_KEY, session_message(rec["fullVisitorId"], rec["visitId"])).alias("session_id"),
        hmac_sha256_hex(FLOOR_KEY, rec["fullVisitorId"]).alias("user_id"),
        F.timestamp_seconds(number(rec["visitStartTime"])).alias("session_start"),
        rec["geoNetwork"]["continent"].alias("continent"), rec["geoNetwork"]["country"].alias("country"),
        rec["device"]["deviceCategory"].alias("device"), rec["device"]["browser"].alias("browser"),
        rec["device"]["operatingSystem"].alias("operating_system"),
        count(rec["totals"]["pageviews"]).alias("num_pageviews"),
        count(rec["totals"]["timeOnSite"]).alias("total_time_on_page"),
        "source_file", F.current_timestamp().alias("ingested_at"))


def ingest_floor(spark: SparkSession, bronze: str | Path, out: Path) -> None:
    """The least any ingest of the contracts must do, without validation, dedupe, MERGE, quarantine
    or stream: ``floor_sessions`` appended to a new Delta table with Silver's statistics columns and
    Parquet encoding. If this alone is over the ingest target, no ingest meets it."""
    nullable = T.StructType([T.StructField(f.name, f.dataType) for f in SILVER_SESSIONS.fields])
    catalog.create_table(spark, str(out), nullable, {**catalog.SILVER_STATS, **catalog.SILVER_ENCODING})
    floor_sessions(spark, bronze).write.format("delta").mode("append").save(str(out))


def release_floor(spark: SparkSession, silver: str, gold: Path, metrics: tuple[MetricConfig, ...],
                  version_from: int = 0) -> None:
    """The least any user-level DP release of Silver's versions `version_from`..latest must do.
    Every contribution bound is per user and partition, so it must at least count each user's new
    rows in each metric's partitions (a shuffle of the rows by user, an aggregation per user, metric
    and partition) and total the capped counts per partition; and it makes one Delta commit per
    table the contracts have it write: the restricted record first (every spend is recorded before
    it is published), then each metric's Gold table and the ledger (all at once, best case). The
    commits go through delta-rs (the `deltalake` package, which the lakehouse's Gold readers use):
    a few rows each, written without a Spark job, ~0.01 s a commit where Spark's took ~0.8 s in a
    fresh JVM (measured: five in 0.06 s against 3.7-4.0 s). Left out: both uniform samples
    (partitions per user, rows per partition), noise, the budget checks, staging, history. If this
    alone is over the release target, no release meets it."""
    latest = catalog.latest_version(spark, silver)
    columns = sorted({m.group_by for m in metrics})
    keys = F.array(*[F.struct(F.lit(i).alias("m"), F.col(m.group_by).alias("key"),
                              F.lit(m.max_contributions_per_partition).alias("cap")) for i, m in enumerate(metrics)])
    rows = new_rows(spark, silver, version_from, latest, Period.NONE).select(F.xxhash64("user_id").alias("user"),
                                                                             *columns)
    # shuffled once by user, then exploded and counted per (user, partition) in place: the fastest
    # of the plans tried (vs exploding first, pre-aggregating, or one aggregation per metric)
    partitions = int(spark.conf.get("spark.sql.shuffle.partitions"))
    (rows.repartition(partitions, "user").select("user", F.explode(keys).alias("e"))
     .groupBy("user", "e").count()
     .groupBy("e.m", "e.key").agg(F.sum(F.least("count", F.col("e.cap")))).collect())

    def commit(i: int) -> None:  # through delta-rs: a few rows, no Spark job (Spark's commits: below)
        rows = pa.table({"release_id": [i] * GOLD_ROWS, "key": ["key"] * GOLD_ROWS, "value": [1.0] * GOLD_ROWS})
        write_deltalake(join(str(gold), f"table{i}"), rows, mode="append")
    commit(0)  # the restricted record
    published = len(metrics) + 1  # each metric's Gold table and the ledger
    with ThreadPoolExecutor(max_workers=published) as pool:
        list(pool.map(commit, range(1, published + 1)))


def cold_floor(spark: SparkSession, increment: str, silver: str, gold: Path, metrics: tuple[MetricConfig, ...]) -> None:
    """The least a scheduled `run` with one increment must do once Spark is up: the increment
    through the ingest floor, appended to an existing Silver table (a copy of the lakehouse's, so
    the append reads a real log), then the release floor of that one new version, its tables new
    (appending to existing ones would read their logs: more, not less). Left out, besides what
    each floor leaves out: the stream and its checkpoint, the key check, the MERGE. A small
    increment is appended through delta-rs, as the run's is (catalog.append_frame_locally)."""
    rows = floor_sessions(spark, increment)
    if catalog.append_frame_locally(silver, rows) is None:
        rows.write.format("delta").mode("append").save(silver)
    release_floor(spark, silver, gold, metrics, version_from=catalog.latest_version(spark, silver))
