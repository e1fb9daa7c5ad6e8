"""The table catalog: Delta tables at their storage paths, created on first use, named for SQL.

Existence is decided fail-closed: a table exists when its ``_delta_log`` holds a commit (or a
checkpoint), does not exist when the log is absent or holds no commit yet (a table being created),
and every other storage answer - an I/O error, a refused request - is an error, never "no table"
(a ledger read as "no table" would be an unspent budget).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from delta.tables import DeltaTable
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType, TimestampType

from lakehouse import fs, jvm_bridge, schemas
from lakehouse.errors import LakehouseError
from lakehouse.log import warn
from lakehouse.storage import Locations, is_url, join

# min/max statistics where they prune: the ingest's dedupe window, and time-range queries.
# (All 12 columns cost ~30 % more per write.)
SILVER_STATS = {"delta.dataSkippingStatsColumns": "session_id,session_start"}
# The pseudonyms (64 hex characters, one per session, ~3.5 sessions per user) overflow Parquet's
# dictionary page within the first rows, so the writer builds a dictionary only to throw it away
# (measured: 1M sessions written in 4.6 s with it, 3.3 s without; files the same size). Delta
# hands a table's properties to the Parquet writer, so every writer of the table (ingest, MERGE,
# OPTIMIZE) skips it.
SILVER_ENCODING = {f"parquet.enable.dictionary#{column}": "false" for column in ("session_id", "user_id")}
FIRST_COMMIT = "00000000000000000000.json"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


class StorageError(LakehouseError):
    """Storage answered with an error; nothing is assumed about the table."""


def java_cause(exc: BaseException) -> str:
    """The first line of a JVM exception (py4j), without the Java stack."""
    if isinstance(exc, Py4JJavaError):
        return str(exc.java_exception.toString()).splitlines()[0]
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def table_exists(spark: SparkSession, path: str) -> bool:
    log = join(path, "_delta_log")
    try:
        return fs.exists(spark, join(log, FIRST_COMMIT)) or fs.exists(spark, join(log, "_last_checkpoint"))
    except Py4JJavaError as exc:
        raise StorageError(f"cannot read {log}: {java_cause(exc)}") from exc


def read(spark: SparkSession, path: str, version: int | None = None) -> DataFrame:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(path)


def create_table(spark: SparkSession, path: str, schema: StructType, properties: dict[str, str] | None = None,
                 partition_by: tuple[str, ...] = ()) -> None:
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    for key, value in (properties or {}).items():
        builder = builder.property(key, value)
    builder.execute()


def ensure_silver_tables(spark: SparkSession, loc: Locations, properties: dict[str, str]) -> None:
    """silver.sessions (change data feed on: the DP release reads only what was added) and
    silver.quarantine. (Only the quarantine can be made by delta-rs: it refuses the sessions'
    Parquet properties, SILVER_ENCODING.)"""
    if not table_exists(spark, loc.silver_sessions):
        create_table(spark, loc.silver_sessions, schemas.SILVER_SESSIONS,
                     {"delta.enableChangeDataFeed": "true", **SILVER_STATS, **SILVER_ENCODING, **properties})
    ensure_table(spark, loc.silver_quarantine, schemas.SILVER_QUARANTINE, {})


# Statistics of the release tables (the record, the ledger, Gold): the columns their readers filter
# on. max(release_id) is read from them, and analysts select periods; statistics of every column
# cost ~0.1 s more per small append (measured), and a release makes five to eight of them.
RELEASE_STATS = {"delta.dataSkippingStatsColumns": "release_id,period_start"}
# The record of the privacy spend and its published copy only grow: Delta refuses deletes,
# updates and overwrites of such a table (writer protocol 2, no table feature: readers unaffected).
APPEND_ONLY = {"delta.appendOnly": "true", **RELEASE_STATS}


def delta_rs_path(path: str) -> bool:
    """Whether delta-rs may handle the table at `path`: a local one, without a %XX in its path,
    which delta-rs mistakes for an escape. (Tables on Azure stay on Spark.)"""
    return not is_url(path) and "%" not in path


def ensure_table(spark: SparkSession, path: str, schema: StructType, properties: dict[str, str]) -> None:
    if not delta_rs_path(path):
        if not table_exists(spark, path):
            create_table(spark, path, schema, properties)
    elif not local_table_exists(path):
        _create_local(path, schema, properties)


def local_table_exists(path: str) -> bool:
    """table_exists for a local path, without Spark."""
    log = Path(path) / "_delta_log"
    return (log / FIRST_COMMIT).is_file() or (log / "_last_checkpoint").is_file()


# The Python values each column type takes, as createDataFrame's schema check takes them: Arrow
# alone would cut 1.5 to 1 in a long column, or read a time without a zone as UTC.
_VALUES: dict[str, type] = {"bigint": int, "int": int, "double": float, "string": str}


def _acceptable(kind: str, value: object) -> bool:
    if kind == "timestamp":
        return isinstance(value, dt.datetime) and value.tzinfo is not None
    if kind == "date":
        return isinstance(value, dt.date) and not isinstance(value, dt.datetime)
    wanted = _VALUES.get(kind)
    return wanted is not None and isinstance(value, wanted) and not isinstance(value, bool)


def _check_rows(path: str, schema: StructType, rows: list[tuple]) -> None:
    for row in rows:
        if len(row) != len(schema.fields):
            raise LakehouseError(f"appending to {path}: a row of {len(row)} values for {len(schema.fields)} columns")
        for field, value in zip(schema.fields, row, strict=True):
            kind = field.dataType.simpleString()
            if not (field.nullable if value is None else _acceptable(kind, value)):
                raise LakehouseError(f"appending to {path}: column {field.name} ({kind}"
                                     f"{'' if field.nullable else ', NOT NULL'}) cannot take {value!r}")


# Spark's default: a checkpoint every 10 commits keeps a table's log quick to read (delta-rs' is 100).
CHECKPOINT_INTERVAL = 10


def append(spark: SparkSession, path: str, schema: StructType, rows: list[tuple],
           properties: dict[str, str] | None = None) -> None:
    """Appends rows (in `schema`'s field order) as one commit; `properties` are the table's if this
    append creates it (ignored for a table that exists). A local table takes them through delta-rs:
    a release's few rows per table need no Spark job, and its five to eight appends take ~0.06 s
    that way against ~3-4 s through Spark in a fresh JVM (measured). A table on Azure takes them
    through Spark."""
    if not delta_rs_path(path):
        spark.createDataFrame(rows, schema).write.format("delta").mode("append").options(**(properties or {})).save(path)
        return
    _check_rows(path, schema, rows)
    _append_local(path, schema, rows, properties or {})


def _arrow_schema(schema: StructType) -> Any:
    """The Arrow schema delta-rs creates a table of `schema` from: the same Delta types (a time
    with its zone: Delta's `timestamp`, not `timestamp_ntz`) and NOT NULL columns."""
    import pyarrow as pa

    kinds = {"bigint": pa.int64(), "int": pa.int32(), "double": pa.float64(), "string": pa.string(),
             "date": pa.date32(), "timestamp": pa.timestamp("us", tz="UTC")}
    unknown = [f.name for f in schema.fields if f.dataType.simpleString() not in kinds]
    if unknown:
        raise LakehouseError(f"no Arrow type for column {', '.join(unknown)}")
    return pa.schema([pa.field(f.name, kinds[f.dataType.simpleString()], nullable=f.nullable) for f in schema.fields])


def _create_local(path: str, schema: StructType, properties: dict[str, str]) -> None:
    """A new, empty local table through delta-rs: reader 1 / writer 2 with `delta.appendOnly`, as
    Spark makes it, and no Spark job (a first release creates six to eight tables)."""
    from deltalake import DeltaTable as LocalTable
    from deltalake.exceptions import DeltaError

    try:
        LocalTable.create(path, schema=_arrow_schema(schema), mode="ignore", configuration=properties)
    except (DeltaError, OSError) as exc:
        raise StorageError(f"cannot create {path}: {exc}") from exc


def _append_local(path: str, schema: StructType, rows: list[tuple], properties: dict[str, str]) -> None:
    import pyarrow as pa
    from deltalake import DeltaTable as LocalTable
    from deltalake.exceptions import DeltaError

    names = schema.fieldNames()
    try:
        if local_table_exists(path):
            target: Any = LocalTable(path)
            # the table's own types and NOT NULL columns (one Spark created by a DataFrame write has none)
            columns, created_with = pa.schema(target.schema().to_arrow()), None
        else:  # created by this commit, with its rows in version 0, as Spark's first write made it
            target, columns, created_with = path, _arrow_schema(schema), properties
        unknown = [name for name in names if name not in columns.names]
        if unknown:  # Arrow would drop them without a word; Spark refuses such an append too
            raise LakehouseError(f"{path} has no column {', '.join(unknown)}: the table predates this version of "
                                 "the lakehouse, or is not one of its tables")
        data = pa.Table.from_pylist([dict(zip(names, row, strict=True)) for row in rows], schema=columns)
        _commit_local(target, data, created_with)
    except (DeltaError, OSError, pa.ArrowException, OverflowError) as exc:
        raise StorageError(f"cannot append to {path}: {exc}") from exc
    _checkpoint_local(path)


# Up to this many rows (and bytes of free text), a DataFrame goes to a local table through delta-rs,
# collected to the driver as Arrow (~30 MB at this size for Silver's rows); more, through Spark's write.
LOCAL_FRAME_ROWS = 100_000
LOCAL_FRAME_BYTES = 64 * 2**20


class RepeatedValues(Exception):
    """The collected rows hold a value of their `unique` column twice: nothing was committed."""


def append_frame_locally(path: str, frame: DataFrame, unique: str | None = None) -> int | None:
    """Appends `frame` (collected to the driver: small frames only, see LOCAL_FRAME_ROWS) to the
    existing local table at `path` through delta-rs, as one commit, in the table's own types and
    Parquet settings; the rows appended. None, with nothing committed, where delta-rs cannot (a
    writer feature it does not know, columns that are not the table's, a frame too big to collect):
    Spark's write is the way then, and says what is wrong. RepeatedValues, with nothing committed,
    where the column `unique` holds a value twice. Spark's first Delta write in a fresh JVM costs
    ~2 s (its snapshot, its commit, measured): a scheduled run's small batch need not pay it."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable as LocalTable
    from deltalake.exceptions import DeltaError

    try:
        target = LocalTable(path)
        before = target.version()
        columns = pa.schema(target.schema().to_arrow())
        properties = _writer_properties(target.metadata().configuration)
    except (DeltaError, OSError, ValueError):
        return None
    if sorted(frame.columns) != sorted(columns.names):
        return None
    try:  # past spark.driver.maxResultSize, or 2 GB in one Arrow batch, the collect fails cleanly
        data = frame.select(*columns.names).toArrow().cast(columns)
    except (Py4JJavaError, PySparkException, pa.ArrowException, ValueError) as exc:
        warn(f"{path}: the rows cannot be collected for delta-rs ({java_cause(exc)}); appending through Spark")
        return None
    if unique is not None and pc.count_distinct(data[unique], mode="all").as_py() != data.num_rows:
        raise RepeatedValues(unique)
    try:
        _commit_local(target, data, None, properties)
    except (DeltaError, OSError, pa.ArrowException) as exc:
        try:
            committed = LocalTable(path).version() != before  # one writer (the run lock): the version is ours
        except (DeltaError, OSError) as reread:
            raise StorageError(f"cannot append to {path}: {exc}; nor read its version after: {reread}") from exc
        if not committed:
            warn(f"{path}: delta-rs could not append ({exc}); appending through Spark")
            return None
        warn(f"{path}: rows committed, then {exc}")
    _checkpoint_local(path)
    return data.num_rows


def _writer_properties(configuration: Mapping[str, str | None]) -> Any:
    """The Parquet settings Spark's writer gives a table, as delta-rs takes them: Snappy, and the
    table's `parquet.enable.dictionary#<column>` properties (Silver's pseudonyms, which overflow a
    dictionary at once)."""
    from deltalake import ColumnProperties, WriterProperties

    prefix = "parquet.enable.dictionary#"
    columns = {key.removeprefix(prefix): ColumnProperties(dictionary_enabled=value.lower() == "true")
               for key, value in configuration.items() if key.startswith(prefix) and value is not None}
    return WriterProperties(compression="SNAPPY", column_properties=columns or None)


def _commit_local(target: Any, data: Any, created_with: dict[str, str] | None, properties: Any = None) -> None:
    from deltalake import PostCommitHookProperties, write_deltalake

    # delta-rs' own checkpoints come every 100 commits; it still removes expired log files (30
    # days and older than a checkpoint), as Spark does when it checkpoints
    write_deltalake(target, data, mode="append", configuration=created_with, writer_properties=properties,
                    post_commithook_properties=PostCommitHookProperties(create_checkpoint=False))


def _checkpoint_local(path: str) -> None:
    """A checkpoint every CHECKPOINT_INTERVAL commits, as Spark writes them."""
    from deltalake import DeltaTable as LocalTable
    from deltalake.exceptions import DeltaError

    log = Path(path) / "_delta_log"
    try:  # the rows are committed: a checkpoint only speeds up reading the log
        table = LocalTable(path)
        if table.version() > 0 and table.version() % CHECKPOINT_INTERVAL == 0:
            table.create_checkpoint()
            # Hadoop's checksum of the _last_checkpoint Spark wrote, which delta-rs does not update:
            # Spark would find it wrong and retry for ~3 s before listing the log instead
            (log / "._last_checkpoint.crc").unlink(missing_ok=True)
    except (DeltaError, OSError) as exc:
        warn(f"{path}: no checkpoint written ({exc}); readers replay its log instead")


def holds_rows(spark: SparkSession, path: str, condition: Column) -> bool:
    """Whether the Delta table at `path` exists and has a row matching `condition`: how a replay
    after a crash finds out that its append already committed (a Delta commit is all or nothing)."""
    return table_exists(spark, path) and not read(spark, path).where(condition).isEmpty()


def table_properties(spark: SparkSession, path: str) -> dict[str, str]:
    """The table's properties (and its protocol's), from its metadata alone. (DESCRIBE DETAIL also
    sums the table's files: it rebuilds the snapshot state, ~1 s per call, measured.) Values whose
    key matches spark.redaction.regex come back redacted."""
    quoted = path.replace("`", "``")
    return {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES delta.`{quoted}`").collect()}


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def collect_utc(df: DataFrame) -> list[dict[str, Any]]:
    """The rows as dicts, each timestamp an aware UTC datetime, whatever the process's time zone.
    (PySpark hands a timestamp to Python naive, in the process's local time - not Spark's session
    zone - so a caller in New York reads the lakehouse's UTC times 5 h off, and an hour a year is
    ambiguous. Spark's microseconds since the epoch are exact.)"""
    stamps = {f.name for f in df.schema.fields if isinstance(f.dataType, TimestampType)}
    columns = [F.unix_micros(df[c]).alias(c) if c in stamps else df[c] for c in df.columns]
    return [{name: _EPOCH + dt.timedelta(microseconds=v) if name in stamps and v is not None else v
             for name, v in row.asDict().items()} for row in df.select(*columns).collect()]


def one(df: DataFrame) -> Row:
    """The one row of an aggregation (Spark types first() as optional)."""
    row = df.first()
    if row is None:
        raise RuntimeError("an aggregation returned no row")
    return row


def latest_version(spark: SparkSession, path: str) -> int:
    """The table's latest version: a local table's from its log through delta-rs (Spark's first
    Delta table costs a fresh JVM ~0.8 s, measured), any other's through Delta."""
    if delta_rs_path(path) and local_table_exists(path):
        from deltalake import DeltaTable as LocalTable
        from deltalake.exceptions import DeltaError

        try:
            return LocalTable(path).version()
        except (DeltaError, OSError):
            pass  # Delta reads it, or says why it cannot
    return jvm_bridge.delta_version(spark, path)


_registered: dict[str, str] = {}  # qualified name -> path, for this process's session catalog


def existing_tables(spark: SparkSession, loc: Locations, layer: str) -> list[str]:
    """Qualified names of the tables that exist in a layer (silver or gold)."""
    base = loc.silver if layer == "silver" else loc.gold
    names = fs.list_names(spark, base)
    return [f"{layer}.{n}" for n in names if _IDENTIFIER.match(n) and table_exists(spark, join(base, n))]


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
        if not table_exists(spark, path):
            missing.append(qualified)
            continue
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {layer}")
        spark.sql(f"DROP TABLE IF EXISTS {layer}.{name}")
        spark.sql(f"CREATE TABLE {layer}.{name} USING delta LOCATION '{path}'")
        _registered[qualified] = path
    return missing


def registered_paths() -> set[str]:
    return set(_registered.values())
