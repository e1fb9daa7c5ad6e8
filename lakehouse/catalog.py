"""The table catalog: Delta tables at their storage paths, created on first use, named for SQL."""

from __future__ import annotations

import re

from delta.tables import DeltaTable
from pyspark.sql import Column, SparkSession
from pyspark.sql.types import StructType

from lakehouse.storage import Locations
from streaming.schema import SILVER_QUARANTINE_SCHEMA, SILVER_SESSIONS_SCHEMA

LAYERS = ("silver", "gold")
_TABLE_REF = re.compile(r"\b(silver|gold)\s*\.\s*`?([A-Za-z_][A-Za-z0-9_]*)`?", re.I)


# min/max statistics where they prune: the ingest MERGE's time window, and time-range queries.
# (All 12 columns cost ~30 % more per write.)
SILVER_STATS = {"delta.dataSkippingStatsColumns": "session_id,session_start"}


def is_delta_table(spark: SparkSession, path: str) -> bool:
    try:
        return DeltaTable.isDeltaTable(spark, path)
    except Exception:  # a missing container or folder is simply "no table yet"
        return False


def create_table(spark: SparkSession, path: str, schema: StructType, properties: dict[str, str] | None = None) -> None:
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
    for key, value in (properties or {}).items():
        builder = builder.property(key, value)
    builder.execute()


def ensure_silver_tables(spark: SparkSession, loc: Locations, properties: dict[str, str]) -> None:
    """silver.sessions (change data feed on: the DP release reads only what was added) and
    silver.quarantine."""
    if not is_delta_table(spark, loc.silver_sessions):
        create_table(spark, loc.silver_sessions, SILVER_SESSIONS_SCHEMA,
                     {"delta.enableChangeDataFeed": "true", **SILVER_STATS, **properties})
    if not is_delta_table(spark, loc.silver_quarantine):
        create_table(spark, loc.silver_quarantine, SILVER_QUARANTINE_SCHEMA)


def holds_rows(spark: SparkSession, path: str, condition: Column) -> bool:
    """Whether the Delta table at `path` exists and has a row matching `condition`: how a replay
    after a crash finds out that its append already committed (a Delta commit is all or nothing)."""
    return is_delta_table(spark, path) and not spark.read.format("delta").load(path).where(condition).isEmpty()


def table_properties(spark: SparkSession, path: str) -> dict[str, str]:
    """The table's properties (and its protocol's), from its metadata alone. (DESCRIBE DETAIL also
    sums the table's files: it rebuilds the snapshot state, ~1 s per call, measured.) Values whose
    key matches spark.redaction.regex come back redacted."""
    quoted = path.replace("`", "``")
    return {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES delta.`{quoted}`").collect()}


def latest_version(spark: SparkSession, path: str) -> int:
    return DeltaTable.forPath(spark, path).history(1).select("version").first()["version"]


def referenced_tables(query: str) -> list[str]:
    """``silver.x`` / ``gold.y`` names a SQL text mentions, lower-cased, in order of appearance."""
    seen: dict[str, None] = {}
    for layer, name in _TABLE_REF.findall(query):
        seen[f"{layer.lower()}.{name.lower()}"] = None
    return list(seen)


_registered: dict[str, str] = {}  # qualified name -> path, for this process's session catalog


def register_tables(spark: SparkSession, loc: Locations, names: list[str]) -> list[str]:
    """Makes ``silver.*`` / ``gold.*`` resolvable in Spark SQL (time travel included) by registering
    the existing Delta tables as external tables in the session catalog; returns the names that do
    not exist yet. Dropping an external table's registration never touches its data."""
    missing = []
    for qualified in names:
        layer, name = qualified.split(".", 1)
        try:
            path = loc.table_path(qualified)
        except KeyError:
            missing.append(qualified)
            continue
        if _registered.get(qualified) == path and spark.catalog.tableExists(qualified):
            continue
        if not is_delta_table(spark, path):
            missing.append(qualified)
            continue
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {layer}")
        spark.sql(f"DROP TABLE IF EXISTS {layer}.{name}")
        spark.sql(f"CREATE TABLE {layer}.{name} USING delta LOCATION '{path}'")
        _registered[qualified] = path
    return missing
