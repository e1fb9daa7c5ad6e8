"""The Spark session: Delta, the resolved jars, quiet logs, secrets redacted."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from lakehouse import jars, jvm_bridge, jvm_process
from lakehouse.config import Config
from lakehouse.log import progress, warn

LOG4J = jvm_process.LOG4J
# Spark redacts matching config keys in the UI, event logs and our error output.
# The key's fingerprint (a table property, see streaming.keys.key_fingerprint) reveals nothing
# and must stay readable: the ingest compares it with SHOW TBLPROPERTIES, which redacts by this.
REDACTION_REGEX = (r"(?i)secret|password|token|access[.]key|account[.]key|sas|connection[.]?string"
                   r"|pseudonym(?!keyfingerprint)")
# The pseudonym key enters query plans only as padded-and-xored 64-byte literals (see
# streaming.transform.hmac_sha256_hex); this keeps them out of EXPLAIN output and the SQL UI.
PLAN_REDACTION_REGEX = r"(?i)[0-9a-f]{128}"


def _quiet_pyspark_error_loggers() -> None:
    """PySpark logs every analysis error as a JSON line on stderr before raising it; the CLI
    reports the error itself, in one line."""
    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).disabled = True


def scratch_warehouse() -> str:
    """Spark creates its warehouse folder (the default database's) at start, though the lakehouse
    never creates a managed table: an empty folder of this process's own, removed when it exits,
    rather than ./spark-warehouse in the user's working directory. Left behind, a scheduled job's
    temp folder would gather one per run."""
    path = tempfile.mkdtemp(prefix="lakehouse-warehouse-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def session_conf(config: Config) -> dict[str, str]:
    sp = config.spark
    # -DontCompileHugeMethods: the validation projection compiles to one method over the JVM's 8 KB
    # JIT limit; without the flag it runs interpreted, 3-4x slower.
    java_opts = f"-Dlog4j.configurationFile=file:{LOG4J} -XX:-DontCompileHugeMethods {sp.java_options}".strip()
    conf = {
        "spark.app.name": sp.app_name,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(sp.shuffle_partitions),
        # Delta rebuilds a table's snapshot (its file list, its txn ids) with this many tasks. Our
        # logs are small (Gold: a few files per release); one task is ~3x faster than 8 (measured:
        # an idempotent append to a Gold table 2.4 s -> 0.6 s) and 50, Delta's default, is slower still.
        "spark.databricks.delta.snapshotPartitions": "1",
        "spark.sql.session.timeZone": "UTC",
        # Tasks for a recursive file listing: Spark's default, 10000, is what Delta's VACUUM lists a
        # table with - thousands of empty tasks for a few folders (measured: `maintain` of a 1M-row
        # lakehouse 254 s -> 74 s with 8; Spark's own listings only go parallel past 32 paths).
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(sp.shuffle_partitions),
        # The ingest MERGE's source (where it MERGEs: see streaming.ingest) is a micro-batch we
        # checkpoint ourselves and is deterministic, so Delta's own copy of it ("auto") is pure
        # overhead (measured: 40 s vs 23 s on 1M rows).
        "spark.databricks.delta.merge.materializeSource": "none",
        "spark.driver.memory": sp.driver_memory,
        "spark.ui.enabled": str(sp.ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.warehouse.dir": scratch_warehouse(),
        # PySpark's DataFrame debugging records each column function's Python call site in the JVM:
        # ~6 more py4j round trips per function, ~2,500 for the ingest's validation (measured: building
        # it 0.59 -> 0.45 s warm, a cold run's ingest ~0.4 s shorter). The CLI reports an error in one
        # line without that query context (_quiet_pyspark_error_loggers), so it bought nothing.
        "spark.python.sql.dataFrameDebugging.enabled": "false",
        # lower()/upper() through the JVM's own case mapping, as Spark 3 did, not ICU's: the ingest's
        # validation lower-cases every line's dimensions, and the first call in a JVM loads ICU's case
        # tables (~1 s of one task, the batch's other task blocked on the same class initializer;
        # measured in a JFR profile of a cold `run`). The two differ only in the case mapping of
        # non-ASCII text, which the validation compares with ASCII placeholders.
        "spark.sql.icu.caseMappings.enabled": "false",
        "spark.redaction.regex": REDACTION_REGEX,
        "spark.sql.redaction.string.regex": PLAN_REDACTION_REGEX,
        "spark.driver.extraJavaOptions": f"{sp.driver_java_options} {java_opts}".strip(),
        "spark.executor.extraJavaOptions": java_opts,
        "spark.executorEnv.PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
    }
    resolved = jars.resolved_jars()
    if resolved:
        conf["spark.jars"] = ",".join(resolved)
    else:
        warn(f"no resolved jars in {jars.jars_dir()} (run `make setup`); resolving "
             f"{', '.join(jars.required_packages())} from Maven Central now")
        conf["spark.jars.packages"] = ",".join(jars.required_packages())
        conf["spark.jars.ivy"] = str(jars.jars_dir() / "ivy")
        conf["spark.jars.excludes"] = ",".join(jars.EXCLUDES)
    conf.update(sp.conf)
    return conf


def get_spark(config: Config) -> SparkSession:
    """The active session if there is one (tests share one), else a new one from the config, its
    JVM started by lakehouse.jvm_process (output filtered and logged, failures explained)."""
    active = SparkSession.getActiveSession()
    if active is not None:
        jvm_bridge.require_classic(active)  # e.g. a notebook's Spark Connect session: refused, clearly
        return active
    # Python workers must run this interpreter: the venv holds pipeline_dp, not the system python3.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    jvm_process.bind_loopback_if_local(config.spark.master)
    conf = SparkConf().setMaster(config.spark.master).setAll(list(session_conf(config).items()))
    if SparkContext._gateway is None:
        progress(f"starting Spark ({config.spark.master}; about 10 s)")
        SparkContext._ensure_initialized(gateway=jvm_process.launch(conf))
    spark = SparkSession.builder.config(conf=conf).getOrCreate()
    spark.sparkContext.setLogLevel(config.spark.log_level.upper())
    _quiet_pyspark_error_loggers()
    return spark
