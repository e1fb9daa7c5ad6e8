"""Reading small Delta tables: through Spark, or - for a local lakehouse - through delta-rs, which
answers in well under a second where starting Spark takes ten (`lakehouse budget`)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from urllib.parse import unquote, urlparse

from lakehouse import catalog
from lakehouse.periods import utc
from lakehouse.storage import is_url

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class Commit(NamedTuple):
    version: int
    operation: str
    mode: str  # the write mode (Append, Overwrite) where the operation has one
    rows_inserted: int  # from Delta's commit metrics: no data is read


# The operations that add rows; the others (OPTIMIZE, which only rearranges files, SET TBLPROPERTIES) add none.
_INSERTING = ("WRITE", "MERGE", "STREAMING UPDATE", "CREATE TABLE AS SELECT")


def commit_of(version: Any, operation: Any, parameters: Any, metrics: Any) -> Commit:
    metrics, operation = metrics or {}, str(operation or "")
    # Spark's MERGE, Spark's other writes, delta-rs' writes
    inserted = metrics.get("numTargetRowsInserted") or metrics.get("numOutputRows") or metrics.get("num_added_rows") or 0
    return Commit(int(version), operation, str((parameters or {}).get("mode", "")),
                  int(inserted) if operation in _INSERTING else 0)


class TableReader(Protocol):
    def exists(self, path: str) -> bool: ...

    def rows(self, path: str) -> list[dict[str, Any]]: ...

    def columns(self, path: str) -> list[str]: ...

    def history(self, path: str) -> list[Commit]:
        """Every commit the log still holds."""
        ...

    def max_value(self, path: str, column: str) -> Any:
        """The column's maximum, from the files' statistics where they have it."""
        ...


class SparkReader:
    def __init__(self, spark: SparkSession):
        self.spark = spark

    def exists(self, path: str) -> bool:
        return catalog.table_exists(self.spark, path)

    def rows(self, path: str) -> list[dict[str, Any]]:
        return catalog.collect_utc(catalog.read(self.spark, path))

    def columns(self, path: str) -> list[str]:
        return catalog.read(self.spark, path).columns

    def history(self, path: str) -> list[Commit]:
        from delta.tables import DeltaTable

        return [commit_of(h["version"], h["operation"], h["operationParameters"], h["operationMetrics"])
                for h in DeltaTable.forPath(self.spark, path).history().collect()]

    def max_value(self, path: str, column: str) -> Any:
        from pyspark.sql import functions as F

        return catalog.one(catalog.read(self.spark, path).agg(F.max(column)))[0]


class LocalReader:
    """delta-rs on local paths (no JVM). Existence is decided as catalog.table_exists does."""

    def exists(self, path: str) -> bool:
        return catalog.local_table_exists(path)

    def _table(self, path: str) -> Any:
        from deltalake import DeltaTable

        return DeltaTable(path)

    def rows(self, path: str) -> list[dict[str, Any]]:
        import pyarrow as pa

        # scan(): delta-rs' own engine (to_pyarrow_table() can abort the interpreter at exit with
        # deltalake 1.6 and pyarrow 26)
        return pa.table(self._table(path).scan()).to_pylist()

    def columns(self, path: str) -> list[str]:
        return [f.name for f in self._table(path).schema().fields]

    def history(self, path: str) -> list[Commit]:
        """As Spark's history; raises ValueError where delta-rs' would not match it. (deltalake 1.6
        skips a commit without commitInfo - a hand-written one, say, that only removes files - and
        numbers the rest by counting down from the newest, so one gap mislabels every older commit.)"""
        table = self._table(path)
        commits, latest = table.history(), table.version()
        on_disk = sorted(int(f.stem) for f in (Path(path) / "_delta_log").glob("*.json")
                         if f.stem.isdigit() and int(f.stem) <= latest)
        if sorted(h["version"] for h in commits) != on_disk:
            raise ValueError(f"{path}: delta-rs lists {len(commits)} commits, the log holds {len(on_disk)}")
        return [commit_of(h["version"], h.get("operation"), h.get("operationParameters"), h.get("operationMetrics"))
                for h in commits]

    def properties(self, path: str) -> dict[str, str]:
        return dict(self._table(path).metadata().configuration)

    def _statistics(self, path: str, kind: str, column: str) -> list[Any]:
        import pyarrow as pa

        return _statistic(pa.table(self._table(path).get_add_actions(flatten=True)), kind, column)

    def _bounds(self, path: str, kind: str, column: str) -> list[Any]:
        values = self._statistics(path, kind, column)
        if None in values:  # a file without statistics (or all nulls): the bound is unknown
            raise ValueError(f"{path}: a file has no {kind} statistics of {column}")
        return values

    def files_meeting(self, path: str, column: str, lo: dt.datetime, hi: dt.datetime) -> list[str]:
        """The table's data files (as local paths) whose min/max statistics of the timestamp `column`
        meet [lo, hi] (aware datetimes): the only files that can hold a row in that range. A file
        without statistics meets every range. Raises ValueError where reading these Parquet files
        as they are would not give the table's rows or columns (deletion vectors, column mapping,
        partition columns) or a path would not reach Spark as written (glob characters)."""
        import pyarrow as pa

        table = self._plain_parquet(path)
        actions = pa.table(table.get_add_actions(flatten=True))  # one load: every column in the same order
        paths = actions.column("path").to_pylist()
        lows, highs = _statistic(actions, "min", column), _statistic(actions, "max", column)
        # Delta truncates a timestamp's statistics to the millisecond: a file's maximum may be up to
        # 999 us below its largest value (Delta's own skipping widens it the same way)
        slack = dt.timedelta(milliseconds=1)
        return _read_by_name([self._file_path(path, p) for p, low, high in zip(paths, lows, highs, strict=True)
                              if low is None or high is None or (utc(low) <= hi and utc(high) + slack >= lo)])

    def files_added(self, path: str, version_from: int, version_to: int) -> list[str]:
        """The data files (as local paths) that the table's commits `version_from`..`version_to`
        added: the rows they inserted, as Delta's change data feed gives them, where each of those
        commits only added whole files. Raises ValueError where that does not hold (a commit that
        removed rows or wrote change data, a deletion vector, a schema change, a commit no longer
        in the log) or reading the files as they are would not give the table's rows, as
        files_meeting."""
        table = self._plain_parquet(path, version_to)
        files, schemas = [], set()
        for version in range(version_from, version_to + 1):
            commit = Path(path) / "_delta_log" / f"{version:020d}.json"
            if not commit.is_file():
                raise ValueError(f"{commit}: not in the log")
            for line in commit.read_text(encoding="utf-8").splitlines():
                action = json.loads(line) if line.strip() else {}
                if "add" in action and action["add"].get("dataChange", True):
                    if action["add"].get("deletionVector"):
                        raise ValueError(f"{commit}: a file with a deletion vector")
                    files.append(self._file_path(path, action["add"]["path"]))
                elif "cdc" in action or ("remove" in action and action["remove"].get("dataChange", True)):
                    raise ValueError(f"{commit}: not insert-only")
                elif "metaData" in action:
                    schemas.add(action["metaData"].get("schemaString") or "{}")
        if {_fields(schema) for schema in schemas} - {_fields(table.schema().to_json())}:
            raise ValueError(f"{path}: its schema changed within versions {version_from}..{version_to}")
        return _read_by_name(files)

    def _plain_parquet(self, path: str, version: int | None = None) -> Any:
        """The table (as of `version`), if its rows are what its Parquet files hold; else ValueError."""
        from deltalake import DeltaTable

        table = DeltaTable(path, version=version)
        unknown = set(table.protocol().reader_features or ()) - _PLAIN_PARQUET_FEATURES
        metadata = table.metadata()
        if unknown or metadata.configuration.get("delta.columnMapping.mode", "none") != "none":
            raise ValueError(f"{path}: reader features {sorted(unknown)} or column mapping: its Parquet files may not be "
                             "its rows")
        if metadata.partition_columns:
            raise ValueError(f"{path}: partitioned by {metadata.partition_columns}")
        return table

    @staticmethod
    def _file_path(table: str, added: str) -> str:
        """An add action's path (a URI-encoded path relative to the table, or an absolute URI) as a
        local path."""
        url = urlparse(added)
        if url.scheme == "file":
            return unquote(url.path)
        if url.scheme:
            raise ValueError(f"{table}: a data file at {added}, not on this machine")
        return os.path.join(table, unquote(added))

    def max_value(self, path: str, column: str) -> Any:
        """As TableReader.max_value; raises ValueError if a file has no statistics of the column."""
        return max(self._bounds(path, "max", column), default=None)

    def min_value(self, path: str, column: str) -> Any:
        """The column's minimum (None for a table with no file); raises ValueError as max_value."""
        return min(self._bounds(path, "min", column), default=None)


# Reader features that leave a table's rows as its data files hold them (deletion vectors, column
# mapping, type widening and the rest do not, or are unknown here): anything else, Delta reads.
_PLAIN_PARQUET_FEATURES = frozenset({"timestampNtz", "v2Checkpoint", "vacuumProtocolCheck"})


def _fields(schema: str) -> tuple[tuple[str, str], ...]:
    """A Delta schema's (name, type) pairs, from its JSON."""
    return tuple((f["name"], json.dumps(f["type"], sort_keys=True)) for f in json.loads(schema).get("fields", ()))


def _read_by_name(files: list[str]) -> list[str]:
    """The files, if Spark reads each by its name: it reads a path as a glob pattern, and skips a
    file whose name starts with _ or . ; else ValueError."""
    unread = [p for p in files if any(c in p for c in "*?[]{}\\") or os.path.basename(p)[:1] in "_."]
    if unread:
        raise ValueError(f"{unread[0]}: Spark would not read this file by its name")
    return files


def _statistic(actions: Any, kind: str, column: str) -> list[Any]:
    """Each file's `kind` ("min" or "max") statistic of `column`, from delta-rs' flattened add
    actions; None where a file has none."""
    name = f"{kind}.{column}"
    if name not in actions.column_names:  # no file, or no file with statistics of the column
        return [None] * actions.num_rows
    return actions.column(name).to_pylist()


def local(*paths: str) -> bool:
    return not any(is_url(p) for p in paths)
