"""Every reach into Spark's JVM internals (py4j), in one place.

The lakehouse needs a few things the public PySpark API does not offer: Hadoop's file system (small
files, listings, atomic renames on local disk and ABFS alike), Hadoop's configuration (Azure
credentials are set there, never in SparkConf), Spark's SQL parser and analysed plans (the read-only
check of `lakehouse sql`), and freeing a local checkpoint's blocks. They go through the classic
py4j gateway, so Spark Connect sessions (Databricks serverless, `sc://` remotes) are not supported:
:func:`require_classic` says so instead of failing with an AttributeError deep inside a command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from py4j.java_gateway import JavaClass
from pyspark.sql import Column, DataFrame, SparkSession

from lakehouse.errors import LakehouseError


def require_classic(spark: SparkSession) -> None:
    if not hasattr(spark, "_jsparkSession"):
        raise LakehouseError("this Spark session is a Spark Connect client; dp-lakehouse needs a classic "
                             "Spark driver (local[*], spark://, yarn or k8s masters)")


def _jvm(spark: SparkSession) -> Any:
    jvm = spark.sparkContext._jvm
    if jvm is None:
        raise LakehouseError("Spark's JVM gateway is gone (the session was stopped)")
    return jvm


def hadoop_fs(spark: SparkSession, path: str) -> tuple[Any, Any]:
    """(Hadoop FileSystem, Hadoop Path) for `path`: local, abfs(s)://, or any Hadoop scheme."""
    jvm = _jvm(spark)
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath


def hadoop_path(spark: SparkSession, parent: Any, name: str) -> Any:
    return _jvm(spark).org.apache.hadoop.fs.Path(parent, name)


def read_stream_bytes(spark: SparkSession, stream: Any) -> bytes:
    return bytes(_jvm(spark).org.apache.commons.io.IOUtils.toByteArray(stream))


def set_hadoop_conf(spark: SparkSession, settings: dict[str, str]) -> None:
    """Settings on Hadoop's configuration only (not SparkConf: the Spark UI shows SparkConf)."""
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in settings.items():
        hadoop.set(key, value)


def parse_plan(spark: SparkSession, query: str) -> Any:
    """Spark's parsed, unresolved logical plan of one SQL statement (nothing runs)."""
    return spark._jsparkSession.sessionState().sqlParser().parsePlan(query)


def analyzed_plan(df: DataFrame) -> Any:
    return df._jdf.queryExecution().analyzed()


def executed_plan_text(df: DataFrame) -> str:
    return str(df._jdf.queryExecution().executedPlan().toString())


@dataclass(frozen=True)
class FileCheck:
    """A Bronze file read to its end through Hadoop's codec for its name (lakehouse/jvm/BronzeFile.java)."""

    cause: str | None  # why it could not be read to its end; None if it could
    prefix: bytes  # when it could not: up to `keep` bytes of what was read before the error
    utf8: bool  # it could, and all of it is valid UTF-8


def _our_class(spark: SparkSession, name: str) -> Any:
    """Our own class (lakehouse/jvm/<name>.java). py4j names a class the JVM lacks as a package,
    which fails only when called, as "'JavaPackage' object is not callable"; the likely cause is a
    checkout whose lakehouse/jvm changed since `make setup` built the jar."""
    cls = getattr(_jvm(spark).dplakehouse, name)
    if not isinstance(cls, JavaClass):
        raise LakehouseError(f"Spark has no class dplakehouse.{name}: lakehouse-jvm.jar, which `make setup` builds "
                             "from lakehouse/jvm into .jars/, is missing or older than its sources; run `make setup`")
    return cls


def _bronze_file(spark: SparkSession) -> Any:
    return _our_class(spark, "BronzeFile")


def bounding(spark: SparkSession) -> Any:
    """The release's contribution bounding per task (lakehouse/jvm/Bounding.java)."""
    return _our_class(spark, "Bounding")


# Past this many keys repeated_keys gives None (its caller counts them otherwise): the driver holds
# them all, twice while it sorts them (8 bytes each).
MAX_KEYS = 4_000_000


def repeated_keys(keys: DataFrame, max_keys: int = MAX_KEYS) -> bytes | None:
    """The values of `keys`' one long column that occur more than once (nulls ignored), each once,
    as 8-byte big-endian values; None past `max_keys` values (lakehouse/jvm/RepeatedKeys.java)."""
    found = _our_class(keys.sparkSession, "RepeatedKeys").of(keys._jdf, max_keys)
    return None if found is None else bytes(found)


def key_in(spark: SparkSession, key: Column, repeated: bytes) -> Column:
    """`key` IN the keys of a repeated_keys result, built in the JVM: one call, however many keys."""
    return Column(_our_class(spark, "RepeatedKeys").isIn(key._jc, bytearray(repeated)))


def int_array(spark: SparkSession, values: list[int]) -> Any:
    """A Java int[] of `values`, for our own classes' arguments."""
    jvm = _jvm(spark)
    array = spark.sparkContext._gateway.new_array(jvm.int, len(values))  # type: ignore[union-attr]
    for i, v in enumerate(values):
        array[i] = v
    return array


def check_file(spark: SparkSession, path: str, keep: int) -> FileCheck:
    cause, prefix, utf8 = _bronze_file(spark).check(spark.sparkContext._jsc.hadoopConfiguration(), path, keep)
    return FileCheck(None if cause is None else str(cause), bytes(prefix or b""), bool(utf8))


def scan_files(spark: SparkSession, directory: str, event_name: str) -> tuple[int, list[str]]:
    """(how many visible files under `directory` match the regex `event_name`, the others' paths)."""
    events, ignored = _bronze_file(spark).scan(
        spark.sparkContext._jsc.hadoopConfiguration(), directory, event_name)
    return int(events), sorted(str(p) for p in ignored)


def delta_version(spark: SparkSession, path: str) -> int:
    """The table's latest version, from its Delta log's snapshot (brought up to date: a listing of
    _delta_log past the cached version). DeltaTable.history(1) answers the same by reading commit
    info through a Spark job: ~2.4 s in a fresh JVM, against milliseconds once the snapshot is loaded."""
    jvm = _jvm(spark)
    log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
    return int(log.update(False, jvm.scala.Option.empty(), jvm.scala.Option.empty()).version())


def estimated_bytes(df: DataFrame) -> int:
    """The optimizer's size estimate of what `df` reads: for a Delta table, the bytes of the files
    left after skipping by statistics (no data is read). Sources without statistics - Delta's
    change data feed among them - report a huge default."""
    return int(str(df._jdf.queryExecution().optimizedPlan().stats().sizeInBytes()))


def free_local_checkpoint(df: DataFrame) -> None:
    """Frees a local checkpoint's blocks now rather than at the next JVM garbage collection."""
    df._jdf.queryExecution().analyzed().rdd().unpersist(False)
