"""`lakehouse maintain`: keeps the tables healthy over months of hourly runs - small files compacted
(OPTIMIZE), old files removed (VACUUM) - without touching what a release or `reprocess` still reads.

* Compacted: silver.sessions, silver.quarantine, the continual state, every Gold table. OPTIMIZE
  commits only rearrange files (dataChange = false): the change data feed skips them and no release
  sees new rows in them.
* Not compacted: silver.release_audit. It is the append-only record whose history is checked for
  anything but appends (an OPTIMIZE would read as a rewrite), and it gains a few rows per release.
* VACUUM keeps `retain_hours` (at least Delta's 168): `reprocess --silver-version` can time-travel to
  any version younger than that (and Delta keeps the log itself 30 days: delta.logRetentionDuration).
  silver.sessions is not vacuumed while versions older than the retention are still unreleased: the
  next release reads them through the change data feed, from the very files VACUUM would remove.
* Delta writes log checkpoints itself (every delta.checkpointInterval commits).
"""

from __future__ import annotations

import datetime as dt

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from dp import budget as dp_budget
from lakehouse import catalog
from lakehouse import periods as P
from lakehouse.config import Config
from lakehouse.errors import LakehouseError
from lakehouse.lock import RunLease
from lakehouse.log import progress
from lakehouse.readers import SparkReader, commit_of
from lakehouse.storage import Locations

MIN_RETAIN_HOURS = 168  # Delta's own floor (spark.databricks.delta.retentionDurationCheck)


def _files(spark: SparkSession, path: str) -> int:
    return int(catalog.one(DeltaTable.forPath(spark, path).detail().select("numFiles"))["numFiles"])


def _oldest_unreleased_is_kept(spark: SparkSession, loc: Locations, config: Config, cutoff: dt.datetime) -> bool:
    """True if no silver.sessions version the next release still reads is older than the cutoff."""
    state = dp_budget.read_state(SparkReader(spark), loc, [loc.gold_table(m.name) for m in config.metrics])
    history = catalog.collect_utc(DeltaTable.forPath(spark, loc.silver_sessions).history())
    old = [h["version"] for h in history if h["timestamp"] < cutoff
           and commit_of(h["version"], h["operation"], h["operationParameters"], h["operationMetrics"]).rows_inserted]
    return max(old, default=-1) <= state.last_version  # versions that added no row leave no file to read


RETENTION = "delta.deletedFileRetentionDuration"


def _set_retention(spark: SparkSession, path: str, hours: int) -> None:
    """The table's own retention, which Delta 4.4 goes by twice: VACUUM ignores a RETAIN argument
    other than 0 and keeps this instead, and time travel past it is refused (so `reprocess
    --silver-version` reaches as far back as `--retain-hours`). One commit, when it changes."""
    value = f"interval {hours} hours"
    if catalog.table_properties(spark, path).get(RETENTION) != value:
        quoted = path.replace("`", "``")
        spark.sql(f"ALTER TABLE delta.`{quoted}` SET TBLPROPERTIES ('{RETENTION}' = '{value}')")


def maintain(spark: SparkSession, config: Config, loc: Locations, retain_hours: int, lease: RunLease,
             now: dt.datetime | None = None) -> list[str]:
    """Compacts and vacuums the lakehouse's tables; one line per table of what it did."""
    if retain_hours < MIN_RETAIN_HOURS:
        raise LakehouseError(f"--retain-hours {retain_hours}: at least {MIN_RETAIN_HOURS} (7 days, Delta's floor); "
                             "VACUUM removes the files `reprocess --silver-version` time-travels to")
    now = P.utc(now or dt.datetime.now(dt.UTC))
    tables = {"silver.sessions": loc.silver_sessions, "silver.quarantine": loc.silver_quarantine,
              "silver.release_bounds": loc.release_bounds, "silver.release_tree": loc.release_tree,
              "gold.privacy_ledger": loc.privacy_ledger}
    tables.update({m.table: loc.gold_table(m.name) for m in config.metrics})
    vacuum_sessions = _oldest_unreleased_is_kept(spark, loc, config, now - dt.timedelta(hours=retain_hours))
    lines = []
    for name, path in tables.items():
        if not catalog.table_exists(spark, path):
            continue
        lease.check(f"maintaining {name}")
        progress(f"maintain: {name}")
        before = _files(spark, path)
        table = DeltaTable.forPath(spark, path)
        table.optimize().executeCompaction()
        _set_retention(spark, path, retain_hours)
        vacuumed = name != "silver.sessions" or vacuum_sessions
        if vacuumed:
            table.vacuum()  # keeps what the table's retention (just set) keeps
        note = (f"files older than {retain_hours} h that no version younger needs removed" if vacuumed else
                "not vacuumed: versions older than the retention are not released yet")
        lines.append(f"{name}: {before} -> {_files(spark, path)} files; {note}")
    return lines
