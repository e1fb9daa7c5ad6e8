"""A release is staged, then published: a write-ahead log, because Delta has no multi-table commits.

A release must never be half-published and never be computed twice with fresh noise, whatever
point it is killed at:

1. **compute** the DP results in memory (a crash here loses nothing and spends nothing: no noisy
   value left the process; continual state written so far is keyed by an attempt id that no
   record holds, so it is ignored);
2. **stage**: one file, ``<silver>/_release_staging/release-<id>.json``, written under a temporary
   name and renamed, holds every row of the release for every table (restricted, beside Silver) -
   the release now exists, atomically, and its spend counts;
3. **publish**: append the staged rows to ``silver.release_audit`` first (the authoritative record),
   then ``silver.release_tree``, then ``gold.privacy_ledger``, then the Gold metric tables (in
   parallel), so the record always accounts for the ledger, and the ledger for every Gold row.
   Re-publishing after a crash first asks each table whether it already holds the release's rows
   (a Delta commit is atomic: all of them or none) and appends only where it does not;
4. **delete** the staged file: the audit holds the release now.

Every release run first re-publishes staged files left by a crash, with the values computed the
first time (no new noise, no new spend). Each append is guarded by the run lease (a run that lost
its lease stops before writing).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dp.plan import AuditRow
from lakehouse import catalog, failpoints, fs
from lakehouse import periods as P
from lakehouse.errors import LakehouseError
from lakehouse.files import LocalFiles
from lakehouse.lock import RunLease
from lakehouse.log import progress
from lakehouse.storage import Locations, join

AUDIT, TREE, LEDGER = "silver.release_audit", "silver.release_tree", "gold.privacy_ledger"
PUBLISH_FIRST = (AUDIT, TREE, LEDGER)  # in this order; the Gold metric tables after, in parallel
Tables = dict[str, tuple[T.StructType, list[tuple]]]  # qualified table name -> (schema, rows)
_PREFIX = "release-"


def staged_file(loc: Locations, release_id: int) -> str:
    return join(loc.release_staging, f"{_PREFIX}{release_id:010d}.json")


_STAGED_NAME = re.compile(r"^release-(\d+)\.json$")


def staged_ids(names: list[str]) -> list[int]:
    """The release ids among file names of the staging folder (anything else there is not ours)."""
    return sorted(int(m.group(1)) for m in map(_STAGED_NAME.match, names) if m)


def pending(spark: SparkSession, loc: Locations) -> list[int]:
    """Release ids staged but not yet fully published (a directory listing)."""
    return staged_ids(fs.list_names(spark, loc.release_staging))


def _encode(value: object) -> str:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(type(value))


def stage(spark: SparkSession, loc: Locations, release_id: int, tables: Tables) -> None:
    """One file holding the whole release: it exists entirely or not at all."""
    body = {"release_id": release_id,
            "tables": {t: {"schema": schema.jsonValue(), "rows": [dict(zip(schema.names, r, strict=True)) for r in rows]}
                       for t, (schema, rows) in tables.items() if rows}}
    fs.write_text_atomically(spark, staged_file(loc, release_id), json.dumps(body, default=_encode))


def _decoder(kind: T.DataType) -> Callable[[Any], Any]:
    if isinstance(kind, T.TimestampType):
        # naive in files staged before released_at was aware: UTC (PySpark would take it as local time)
        return lambda v: P.utc(dt.datetime.fromisoformat(v))
    if isinstance(kind, T.DateType):
        return dt.date.fromisoformat
    return lambda v: v


def read_staged(spark: SparkSession, loc: Locations, release_id: int) -> Tables:
    path = staged_file(loc, release_id)
    return parse_staged(fs.read_text(spark, path), path)


def parse_staged(text: str, path: str) -> Tables:
    try:
        staged = json.loads(text)["tables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise LakehouseError(
            f"the staged release {path} cannot be read ({type(exc).__name__}: {exc}). It was written atomically, so "
            "this is tampering or a storage fault: restore it from a backup. Move it aside only if "
            "silver.release_audit already holds its release id (its spend is then recorded)") from exc
    tables: Tables = {}
    for table, body in staged.items():
        schema = T.StructType.fromJson(body["schema"])
        decode = [(f.name, _decoder(f.dataType)) for f in schema.fields]
        rows = [tuple(None if row[name] is None else fn(row[name]) for name, fn in decode) for row in body["rows"]]
        tables[table] = (schema, rows)
    return tables


def audit_rows_of(tables: Tables) -> list[AuditRow]:
    if AUDIT not in tables:
        return []
    schema, values = tables[AUDIT]
    return [AuditRow.from_mapping(dict(zip(schema.names, v, strict=True))) for v in values]


def staged_audit_rows(spark: SparkSession, loc: Locations) -> list[AuditRow]:
    """The audit rows of releases staged but not published: spent, though not yet in the record."""
    return [r for release_id in pending(spark, loc) for r in audit_rows_of(read_staged(spark, loc, release_id))]


def local_pending(loc: Locations) -> list[int]:
    """pending() for a local lakehouse, without Spark."""
    return staged_ids(LocalFiles().list_names(loc.release_staging))


def local_staged_audit_rows(loc: Locations) -> list[AuditRow]:
    """staged_audit_rows for a local lakehouse, without Spark."""
    paths = [Path(staged_file(loc, i)) for i in local_pending(loc)]
    return [r for path in paths for r in audit_rows_of(parse_staged(path.read_text(), str(path)))]


def publish(spark: SparkSession, loc: Locations, release_id: int, tables: Tables, lease: RunLease,
            recovering: bool = False) -> dict[str, int]:
    """Appends a staged release to its tables in order, then deletes the staged file. When
    recovering from a crash, tables that already hold the release are skipped. (Not Delta's
    txnAppId: checking it rebuilds each table's snapshot state, ~0.8 s per table per release, to
    guard against something only a crash can cause.)"""
    def append(table: str) -> None:
        schema, rows = tables[table]
        path = loc.table_path(table)
        if recovering and catalog.holds_rows(spark, path, F.col("release_id") == release_id):
            return
        lease.check(f"publishing release {release_id} to {table}")
        if table in (AUDIT, LEDGER):
            catalog.ensure_table(spark, path, schema, catalog.APPEND_ONLY)
        catalog.append(spark, path, schema, rows, catalog.RELEASE_STATS if table not in PUBLISH_FIRST else None)
        failpoints.reached(f"release-after-{table}")

    for table in PUBLISH_FIRST:
        if tables.get(table, (None, []))[1]:
            append(table)
    gold = sorted(t for t, (_, rows) in tables.items() if rows and t not in PUBLISH_FIRST)
    with ThreadPoolExecutor(max_workers=max(1, len(gold))) as pool:
        for future in [pool.submit(append, t) for t in gold]:
            future.result()
    fs.delete(spark, staged_file(loc, release_id))
    return {t: len(rows) for t, (_, rows) in tables.items()}


def recover(spark: SparkSession, loc: Locations, lease: RunLease) -> list[int]:
    """Publishes staged releases a crash left unpublished, with the values computed back then."""
    ids = pending(spark, loc)
    for release_id in ids:
        progress(f"release {release_id} was staged but not fully published (crash?): publishing it now")
        publish(spark, loc, release_id, read_staged(spark, loc, release_id), lease, recovering=True)
    return ids
