"""Bronze -> Silver: one Structured Streaming run with trigger(availableNow=True).

The stream's checkpoint is the only record of which Bronze files were processed. Each micro-batch
(at most ``ingest.max_files_per_trigger`` files) is parsed and validated by ``streaming.transform``,
then

* valid sessions are inserted into ``silver.sessions``, once per ``session_id`` (the first file's
  copy where the batch holds one twice), unless a session with the same ``session_id`` is stored
  within the batch's time window (its sessions' span, widened by the dedupe window), so a session
  delivered twice - in one file, across files, or by a replayed batch - is stored once. For a local
  Silver, delta-rs lists the data files whose ``session_start`` statistics meet the window (from the
  log alone, without Spark's snapshot state); the batch's sessions whose id none of those files
  holds in the window are appended - all of them when no file meets it (a first ingest, a backfill
  of new days), a small batch's through delta-rs (see append_sessions). Wherever delta-rs cannot say
  exactly (Azure; a table whose Parquet files are not its rows - deletion vectors, column mapping,
  partitions, a reader feature it is not known to read as Spark does; a file name Spark would not
  read as written) Delta decides: an append when none of its files meets the window, its insert-only
  MERGE otherwise. Either way the check and the write are one writer's (the run lock), and a
  replayed batch finds its own rows in the window and inserts none;
* invalid lines are appended to ``silver.quarantine`` with the raw line and a reason. Only the batch
  a crash left planned but uncommitted is ever replayed; for it, the append is skipped if the table
  already holds lines of its files (each Bronze file belongs to one batch, and a Delta commit is
  all or nothing), so no line is quarantined twice.

Both writes are idempotent, so the at-least-once replay of foreachBatch after a crash is exactly-once
in effect.
"""

from __future__ import annotations

import datetime as dt
import os
from concurrent.futures import ThreadPoolExecutor

from delta.tables import DeltaTable
from deltalake.exceptions import DeltaError
from py4j.protocol import Py4JJavaError
from pyspark import StorageLevel
from pyspark.errors import StreamingQueryException
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from lakehouse import catalog, failpoints, fs, jvm_bridge, schemas
from lakehouse.config import Config
from lakehouse.errors import LakehouseError, spark_message
from lakehouse.jvm_bridge import free_local_checkpoint
from lakehouse.lock import RunLease
from lakehouse.log import progress, warn
from lakehouse.readers import LocalReader
from lakehouse.storage import Locations
from streaming import checkpoint, keys, transform
from streaming.bronze_files import BRONZE_GLOB, BRONZE_NAME, ignored_warning
from streaming.result import IngestResult

BATCH_PROPERTY = "lakehouse.lastEmptyIngestBatch"  # set by a batch that brought no new session


def _check_silver(spark: SparkSession, loc: Locations, fingerprint: str) -> None:
    properties = None
    if catalog.delta_rs_path(loc.silver_sessions):
        # from the log's metadata through delta-rs: Spark's first Delta table costs a fresh JVM
        # ~2.5 s (class loading, log replay), measured
        try:
            properties = LocalReader().properties(loc.silver_sessions)
        except (DeltaError, OSError, ValueError):
            pass  # Spark reads it, or says why it cannot
    if properties is None:
        properties = catalog.table_properties(spark, loc.silver_sessions)
    keys.check_silver_properties(properties, loc, fingerprint)


def _between(column: str, lo: dt.datetime, hi: dt.datetime) -> str:
    """`column` within [lo, hi] as SQL (UTC literals: the session time zone is UTC)."""
    return f"{column} >= TIMESTAMP'{lo:%Y-%m-%d %H:%M:%S}' AND {column} <= TIMESTAMP'{hi:%Y-%m-%d %H:%M:%S}'"


def _batch_statistics() -> list[Column]:
    """What a batch's writes need to know of it, as aggregates over its candidate rows."""
    not_json = F.col("reason").startswith("not_json")
    return [
        F.count(F.when(F.col("reason").isNull(), 1)).alias("valid"),
        F.count(F.when(F.col("reason").isNotNull(), 1)).alias("bad"),
        # for the JSON Lines hint: files with a not_json line, and files with any other line (a
        # file in the first set only is likely a JSON array or pretty-printed JSON)
        F.collect_set(F.when(not_json, F.col("source_file"))).alias("not_json_files"),
        F.collect_set(F.when(~F.coalesce(not_json, F.lit(False)), F.col("source_file"))).alias("other_files"),
        # as epoch seconds: a timestamp collected to Python is a naive datetime in the process's
        # time zone, which the window's UTC literals would shift by its offset
        F.min(F.when(F.col("reason").isNull(), F.col("session_start"))).cast("long").alias("lo"),
        F.max(F.when(F.col("reason").isNull(), F.col("session_start"))).cast("long").alias("hi"),
        # a quarantined line is kept whole, however long (a GA export line with its hits: 10-100 KB)
        F.coalesce(F.sum(F.octet_length("raw")), F.lit(0)).alias("bad_bytes"),
    ]


MAX_FILE_AGE = "36500d"
# Up to this many repeated session keys, the dedupe resolves the rows that hold one through a hash set
# of them in its plan; past it (a batch that is mostly copies), by its own count, shuffled.
MAX_KNOWN_REPEATS = 50_000


def bronze_stream(spark: SparkSession, bronze: str, max_files_per_trigger: int) -> DataFrame:
    """Raw lines of new Bronze files, with the file each line came from."""
    return (spark.readStream.format("text")
            .option("maxFilesPerTrigger", max_files_per_trigger)
            .option("pathGlobFilter", BRONZE_GLOB)
            # a file that fails mid-read (truncated .gz) must not fail the batch: the writer found it
            # beforehand (BronzeFile.check) and quarantines it as a whole, dropping its partial lines
            .option("ignoreCorruptFiles", "true")
            .option("recursiveFileLookup", "true")
            # Spark skips a new file whose modification time is more than maxFileAge (7 days by default)
            # older than the newest file it has taken: a backfill copied with its old times kept
            # (cp -p, azcopy) would be lost without a word. Every file is new until taken.
            .option("maxFileAge", MAX_FILE_AGE)
            .load(bronze)
            .select("value", F.col("_metadata.file_path").alias("source_file")))


# What an unreadable file's one quarantine row keeps of the bytes that could be read before the error.
UNREADABLE_PREFIX_BYTES = 64 * 1024
NOT_JSON_LINES_HINT = ("Bronze expects JSON Lines - one JSON object per line; a JSON array or pretty-printed "
                       "JSON must be converted first, e.g. `jq -c '.[]' FILE > FILE.jsonl`")


def local_path(uri: str) -> str:
    """The file source logs file:///x; rows carry _metadata.file_path file:/x (Hadoop's Path form)."""
    return "file:/" + uri.removeprefix("file:").lstrip("/") if uri.startswith("file:") else uri


class FileNumbers:
    """A batch's rows keep the number of their Bronze file in `names` rather than its path while
    they are checkpointed: the path (~60-100 bytes) was a quarter of each kept row, and a leaner
    checkpoint is quicker to build (1M lines: ~0.5-1 s, measured in turns). A row whose path is not
    among `names` keeps it in full, so no row's source_file is ever lost. Spark looks a path up in
    a literal map by comparing it with each key in turn, so a batch of more than MAX_FILES files
    keeps its paths as they are."""

    MAX_FILES = 64

    def __init__(self, names: list[str]):
        self.names = names if len(names) <= self.MAX_FILES else []

    def compact(self, rows: DataFrame) -> DataFrame:
        number = (F.create_map(*[F.lit(x) for i, name in enumerate(self.names) for x in (name, i)])[F.col("source_file")]
                  if self.names else F.lit(None).cast("int"))
        others = [c for c in rows.columns if c != "source_file"]
        return rows.select(*others, number.alias("_file_number"),
                           F.when(number.isNull(), F.col("source_file")).alias("_file_path"))

    def expand(self, rows: DataFrame) -> DataFrame:
        # get, not element_at: Spark 4.2's element_at(<array literal>, NULL) is the array's last element
        name = F.get(F.array(*[F.lit(n) for n in self.names]), F.col("_file_number"))
        return rows.withColumn("source_file", F.coalesce(name, F.col("_file_path"))).drop("_file_number", "_file_path")


class SilverBatchWriter:
    """The foreachBatch function: check the files, validate, insert new sessions, append quarantine, count."""

    def __init__(self, spark: SparkSession, loc: Locations, key: bytes, dedupe_window_hours: int,
                 show_counts: bool = False, lease: RunLease | None = None):
        self.spark = spark
        self.lease = lease or RunLease()
        self.show_counts = show_counts
        self.loc = loc
        self.key = key
        self.window = dt.timedelta(hours=dedupe_window_hours)
        self.result = IngestResult()
        self.error: LakehouseError | None = None
        self._batch_files = 0
        self.unfinished_batch = checkpoint.unfinished_batch(fs.SparkFiles(spark), loc.ingest_checkpoint)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        try:
            self._batch(batch, batch_id)
        except LakehouseError as exc:  # the stream wraps it; ingest() raises it as it was (exit code included)
            self.error = exc
            raise

    def _batch(self, batch: DataFrame, batch_id: int) -> None:
        files = checkpoint.batch_files(fs.SparkFiles(self.spark), self.loc.ingest_checkpoint, batch_id)
        self._batch_files = len(files)
        unreadable, utf8 = self._check_files(files)
        if unreadable:  # their partial lines go nowhere: the file is quarantined as a whole
            batch = batch.where(~F.col("source_file").isin(*unreadable))
        # only the lines of a file that is not valid UTF-8 as a whole are checked one by one
        utf8_lines = F.lit(True) if len(utf8) + len(unreadable) == len(files) else F.col("source_file").isin(*utf8)
        # The batch is parsed once and kept (in executor memory, spilling to disk) for its uses:
        # counts, the insert (its dedupe reads it several times), the quarantine append.
        # A local checkpoint cuts the plan, so Delta's write cannot re-plan it into a second JSON
        # parse (measured: it did with persist()). Kept as objects, not serialized: each of the ~4
        # reads of a 1M-line batch then skips ~1 s of deserializing (measured: ingest 33 s -> 26 s,
        # peak RSS 1.24 -> 1.68 GB; past the storage memory it spills to disk, serialized).
        # The batch's counts and time span are observed while it is checkpointed: one pass over it,
        # not a second job (measured: a warm 1M-line ingest 18.6 -> 16.9 s, medians of seven pairs
        # in turns; a cold run's 10k-line batch within the noise).
        observed = Observation(f"ingest_batch_{batch_id}")
        numbers = FileNumbers(sorted({local_path(uri) for uri in files}))
        candidates = (numbers.compact(transform.bronze_to_silver(batch, self.key, utf8_lines=utf8_lines)
                                      .observe(observed, *_batch_statistics()))
                      .localCheckpoint(eager=True, storageLevel=StorageLevel.MEMORY_AND_DISK_DESER))
        try:
            self._write(numbers.expand(candidates), observed.get, batch_id, unreadable)
        finally:
            try:
                free_local_checkpoint(candidates)
            except Py4JJavaError:  # only an optimisation: Spark's cleaner frees it at the next GC
                pass
        self.result.files_read += len(files)

    def _check_files(self, files: list[str]) -> tuple[dict[str, tuple[str, str]], list[str]]:
        """Each file of the batch read to its end through its codec: (source_file -> (reason, what
        could be read) for every file that cannot be (a truncated .gz, a file deleted since it was
        listed), the source_file of every file that is valid UTF-8 throughout)."""
        unreadable, utf8 = {}, []
        # a file at a time per thread, the threads' checks running in the JVM at once (measured on 2
        # cores, the 20 files of a 1M-line batch, 1 GB: 2.2 -> 0.5 s in a fresh JVM, 0.25 -> 0.16 s warm)
        with ThreadPoolExecutor(max_workers=max(1, min(len(files), os.cpu_count() or 1, 8))) as pool:
            checks = list(pool.map(lambda uri: jvm_bridge.check_file(self.spark, uri, UNREADABLE_PREFIX_BYTES), files))
        for uri, check in zip(files, checks, strict=True):
            if check.utf8:
                utf8.append(local_path(uri))
            if check.cause is not None:
                unreadable[local_path(uri)] = (f"unreadable_file: {check.cause}",
                                               check.prefix.decode("utf-8", errors="replace"))
                warn(f"{local_path(uri)} cannot be read ({check.cause}): quarantined as a whole; the rest of its "
                     "batch goes on")
        return unreadable, utf8

    def _write(self, candidates: DataFrame, stats: dict, batch_id: int, unreadable: dict[str, tuple[str, str]]) -> None:
        inserted = 0
        self.lease.check(f"inserting ingest batch {batch_id} into silver.sessions")
        version = catalog.latest_version(self.spark, self.loc.silver_sessions)
        if stats["valid"]:
            inserted = self._insert(transform.valid_sessions(candidates), stats["valid"],
                                    *self._window(stats["lo"], stats["hi"]))
        if catalog.latest_version(self.spark, self.loc.silver_sessions) == version:
            # Every batch is one commit of silver.sessions, new sessions or not: its version number
            # (published in Gold) then counts Bronze deliveries, and says nothing of their content.
            # (Whether a write of no rows commits is Delta's choice, and its settings': asked, not assumed.)
            # Locally, an append of no rows through delta-rs: a commit without files, no Spark job.
            path = self.loc.silver_sessions
            if catalog.delta_rs_path(path):
                catalog.append_frame_locally(path, transform.valid_sessions(candidates).limit(0))
            if catalog.latest_version(self.spark, path) == version:
                quoted = path.replace("`", "``")
                self.spark.sql(f"ALTER TABLE delta.`{quoted}` SET TBLPROPERTIES ('{BATCH_PROPERTY}' = '{batch_id}')")
        failpoints.reached("ingest-after-merge")
        bad_rows = stats["bad"] + len(unreadable)
        if bad_rows:
            bad = transform.quarantined(candidates)
            if unreadable:
                now = dt.datetime.now(dt.UTC)  # aware: a naive time converts from the local zone
                whole = [schemas.row(schemas.SILVER_QUARANTINE, {"source_file": path, "raw": prefix, "reason": reason,
                                                                 "ingested_at": now})
                         for path, (reason, prefix) in unreadable.items()]
                bad = bad.unionByName(self.spark.createDataFrame(whole, schemas.SILVER_QUARANTINE))
            for path in sorted(set(stats["not_json_files"]) - set(stats["other_files"])):
                warn(f"{path}: no line is a JSON object (all quarantined as not_json): {NOT_JSON_LINES_HINT}")
            if not (batch_id == self.unfinished_batch and self._quarantined_before(bad)):
                self.lease.check(f"appending ingest batch {batch_id} to silver.quarantine")
                # A plain append: Delta's idempotent one (txnAppId) rebuilds the table's snapshot
                # state first, ~0.8 s per batch, to guard against what only a replay can cause.
                append(self.loc.silver_quarantine, bad,
                       bad_rows <= catalog.LOCAL_FRAME_ROWS and stats["bad_bytes"] <= catalog.LOCAL_FRAME_BYTES)
            failpoints.reached("ingest-after-quarantine")
        r = self.result
        r.batches += 1
        r.batch_ids.append(batch_id)
        r.rows_ingested += inserted
        r.rows_quarantined += bad_rows
        r.duplicates_skipped += stats["valid"] - inserted
        if batch_id == self.unfinished_batch and stats["valid"] and not inserted:
            r.replayed.append(batch_id)
        detail = (f": {stats['valid'] + stats['bad']} lines -> {inserted} new sessions, "
                  f"{stats['valid'] - inserted} duplicates, {bad_rows} quarantined" if self.show_counts else "")
        progress(f"ingest batch {batch_id} committed{detail} ({r.files_read + self._batch_files} files so far)")

    def _quarantined_before(self, bad: DataFrame) -> bool:
        """Whether the first run of this (replayed) batch already committed its quarantine append."""
        files = [r[0] for r in bad.select("source_file").distinct().collect()]
        return catalog.holds_rows(self.spark, self.loc.silver_quarantine, F.col("source_file").isin(files))

    def _window(self, lo: int, hi: int) -> tuple[dt.datetime, dt.datetime]:
        """Where a stored copy of the batch's sessions could be: their session_start range (epoch
        seconds) widened by the dedupe window, as aware UTC times."""
        widen = int(self.window.total_seconds())
        return dt.datetime.fromtimestamp(lo - widen, dt.UTC), dt.datetime.fromtimestamp(hi + widen, dt.UTC)

    def _insert(self, sessions: DataFrame, rows: int, lo: dt.datetime, hi: dt.datetime) -> int:
        """Inserts the batch's valid sessions (`rows` of them, a session_id maybe more than once) that
        Silver does not hold within [lo, hi], each once; how many it inserted."""
        files = self._files_meeting(lo, hi)
        if files is None:  # Delta decides, by its own skipping
            if not catalog.read(self.spark, self.loc.silver_sessions).where(_between("session_start", lo, hi)).inputFiles():
                return append_sessions(self.loc.silver_sessions, sessions, rows)
            # only the Silver files whose session_start range meets the window are read: Delta skips
            # the rest by their min/max statistics
            metrics = (DeltaTable.forPath(self.spark, self.loc.silver_sessions).alias("t")
                       .merge(dedupe_batch(sessions, rows).alias("s"),
                              f"t.session_id = s.session_id AND {_between('t.session_start', lo, hi)}")
                       .whenNotMatchedInsertAll()
                       .execute())
            return int(catalog.one(metrics)["num_inserted_rows"])
        if not files:
            return append_sessions(self.loc.silver_sessions, sessions, rows)
        stored = (self.spark.read.schema("session_id STRING, session_start TIMESTAMP").parquet(*files)
                  .where(_between("session_start", lo, hi)).select("session_id"))
        return append_sessions(self.loc.silver_sessions, sessions, rows, stored)

    def _files_meeting(self, lo: dt.datetime, hi: dt.datetime) -> list[str] | None:
        """The Silver files that may hold a session within [lo, hi], from the log's statistics
        through delta-rs (Spark's snapshot state costs a fresh JVM ~3 s: a Spark job over the log,
        measured); None where delta-rs cannot say exactly, and Delta must."""
        if not catalog.delta_rs_path(self.loc.silver_sessions):
            return None
        try:
            return LocalReader().files_meeting(self.loc.silver_sessions, "session_start", lo, hi)
        except (DeltaError, OSError, ValueError):
            return None


def dedupe_batch(sessions: DataFrame, rows: int) -> DataFrame:
    """transform.dedupe_sessions of a batch kept by Spark (`rows` sessions), given the session keys
    it holds more than once, found by one pass over its rows (lakehouse/jvm/RepeatedKeys.java):
    none, nearly always - the rows as they are; a few - only their rows resolved, found by a hash
    set of the keys (Spark's count per key, its shuffle and broadcast took two more jobs: ~1 s of 1M
    sessions, measured); many, or too many sessions for the driver to hold their keys - counted by
    Spark."""
    if rows > jvm_bridge.MAX_KEYS:
        return transform.dedupe_sessions(sessions)
    repeated = jvm_bridge.repeated_keys(sessions.select(transform.session_key()))
    if repeated is None or len(repeated) > 8 * MAX_KNOWN_REPEATS:
        return transform.dedupe_sessions(sessions)
    if not repeated:
        return sessions
    return transform.dedupe_sessions(
        sessions, repeated=jvm_bridge.key_in(sessions.sparkSession, transform.session_key(), repeated))


def append_sessions(path: str, sessions: DataFrame, rows: int, stored: DataFrame | None = None) -> int:
    """Appends a batch's `sessions` but those whose session_id is in `stored` (the ids Silver holds
    in the batch's window), once per session_id: where the batch holds a session twice, the first
    file's copy (transform.dedupe_sessions). A small batch on a local Silver is collected as it is
    and appended if no id is left there twice - nearly every batch - without dedupe's shuffle and
    broadcast join (~0.9 s of a cold run's 10k-session batch, measured); otherwise it is
    deduplicated first. (Taking out the stored ids removes all of an id's copies or none: before
    or after dedupe, the same rows remain.) `rows`: how many sessions the batch holds."""
    small = rows <= catalog.LOCAL_FRAME_ROWS  # few enough to collect (see append)

    def new(frame: DataFrame) -> DataFrame:
        return frame if stored is None else frame.join(stored, "session_id", "left_anti")

    if small and catalog.delta_rs_path(path):
        try:
            appended = catalog.append_frame_locally(path, new(sessions), unique="session_id")
            if appended is not None:
                return appended
            small = False  # delta-rs cannot append to it (and has said why): Spark's write
        except catalog.RepeatedValues:
            pass
    return append(path, new(dedupe_batch(sessions, rows)), small)


def append(path: str, rows: DataFrame, small: bool) -> int:
    """Appends `rows` to the Delta table at `path` as one commit; how many it appended. A batch's
    few rows (`small`: few enough to collect, see catalog.LOCAL_FRAME_ROWS) go to a local table
    through delta-rs; the rest through Spark."""
    if small and catalog.delta_rs_path(path):
        appended = catalog.append_frame_locally(path, rows)
        if appended is not None:
            return appended
    written = Observation("rows_appended")
    rows.observe(written, F.count(F.lit(1)).alias("rows")).write.format("delta").mode("append").save(path)
    return int(written.get["rows"])


def ingest(spark: SparkSession, config: Config, loc: Locations, show_counts: bool = False,
           lease: RunLease | None = None) -> IngestResult:
    """Runs the availableNow stream over Bronze until every new file is in Silver."""
    if not fs.exists(spark, loc.bronze):
        raise LakehouseError(f"Bronze folder {loc.bronze} does not exist: land event files there "
                             "(`lakehouse generate` or `lakehouse upload`), or point --bronze at it")
    key = keys.pseudonym_key(loc)
    fingerprint = keys.key_fingerprint(key)
    catalog.ensure_silver_tables(spark, loc, keys.silver_properties(fingerprint))
    _check_silver(spark, loc, fingerprint)
    events, ignored = jvm_bridge.scan_files(spark, loc.bronze, BRONZE_NAME)
    progress(f"ingest: {events} event files in {loc.bronze}; the checkpoint ({loc.ingest_checkpoint}) decides which "
             "are new")
    if ignored:
        warn(ignored_warning(ignored))
    writer = SilverBatchWriter(spark, loc, key, config.ingest.dedupe_window_hours, show_counts, lease)
    writer.result.silver_version_before = catalog.latest_version(spark, loc.silver_sessions)
    query = (bronze_stream(spark, loc.bronze, config.ingest.max_files_per_trigger)
             .writeStream.foreachBatch(writer)
             .option("checkpointLocation", loc.ingest_checkpoint)
             .trigger(availableNow=True)
             .start())
    try:
        query.awaitTermination()
    except StreamingQueryException as exc:
        if writer.error is not None:
            raise writer.error from exc
        raise LakehouseError(f"ingest stream failed: {spark_message(exc)}") from exc
    result = writer.result
    result.silver_version = catalog.latest_version(spark, loc.silver_sessions)
    return result
