"""Reading silver.sessions: rows of chosen periods, rows new since a version, its history.

A run never scans all of Silver: the rows of given periods are read by a time range on
``session_start`` (Delta skips files by their min/max statistics, see catalog.SILVER_STATS), and new
rows from only the files those versions added (listed by delta-rs, or Delta's change data feed).
"""

from __future__ import annotations

import datetime as dt

from deltalake.exceptions import DeltaError
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import catalog
from lakehouse import periods as P
from lakehouse.config import Period
from lakehouse.readers import Commit, LocalReader
from lakehouse.schemas import SILVER_SESSIONS


def inserted_per_version(commits: list[Commit]) -> list[tuple[int, int]]:
    """(version, rows it inserted) per commit of silver.sessions."""
    return [(c.version, c.rows_inserted) for c in commits]


def period_column(period: Period) -> Column:
    """period_start of each row: the first day of its UTC day, ISO week or month; null for "none"."""
    if period == Period.NONE:
        return F.lit(None).cast("date")
    unit = {Period.DAY: "day", Period.WEEK: "week", Period.MONTH: "month"}[period]
    return F.to_date(F.date_trunc(unit, F.col("session_start")))


def _in_periods(rows: DataFrame, period: Period, starts: list[dt.date]) -> DataFrame:
    lo, hi = P.bounds(min(starts), period)[0], P.bounds(max(starts), period)[1]
    # lo and hi are aware (UTC): PySpark would convert a naive datetime from the process's local zone
    rows = rows.where((F.col("session_start") >= F.lit(lo)) & (F.col("session_start") < F.lit(hi)))
    return rows.withColumn("period_start", period_column(period)).where(F.col("period_start").isin(*starts))


def period_rows(spark: SparkSession, path: str, version: int, period: Period, starts: list[dt.date]) -> DataFrame:
    """Every row of the given periods in Silver as of `version`."""
    return _in_periods(catalog.read(spark, path, version), period, starts)


def new_rows(spark: SparkSession, path: str, version_from: int, version_to: int, period: Period) -> DataFrame:
    """The rows versions [from, to] inserted, with period_start: for a local Silver the Parquet
    files those commits added, listed from the log through delta-rs (Spark's change data feed
    costs a fresh JVM ~1.5-2 s of Delta's own start, measured); the change data feed wherever
    delta-rs cannot list them exactly (see LocalReader.files_added)."""
    if catalog.delta_rs_path(path):
        try:
            files = LocalReader().files_added(path, version_from, version_to)
        except (DeltaError, OSError, ValueError):
            pass  # the change data feed, below
        else:
            rows = (spark.read.schema(SILVER_SESSIONS).parquet(*files) if files
                    else spark.createDataFrame([], SILVER_SESSIONS))
            return rows.withColumn("period_start", period_column(period))
    return (spark.read.format("delta").option("readChangeFeed", "true")
            .option("startingVersion", version_from).option("endingVersion", version_to).load(path)
            .where(F.col("_change_type") == "insert")
            .drop("_change_type", "_commit_version", "_commit_timestamp")
            .withColumn("period_start", period_column(period)))


def first_period(spark: SparkSession, path: str, version: int, period: Period) -> dt.date | None:
    """The period of Silver's earliest session (Delta answers min() from file statistics)."""
    # the day in Spark's session zone (UTC): a collected timestamp would be in the process's local zone
    row = catalog.read(spark, path, version).agg(F.to_date(F.min("session_start"))).first()
    return None if row is None or row[0] is None else P.period_start(row[0], period)
