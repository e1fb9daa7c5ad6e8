"""Reading small Delta tables: through Spark, or - for a local lakehouse - through delta-rs, which
answers in well under a second where starting Spark takes ten (`lakehouse budget`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lakehouse import catalog
from lakehouse.storage import is_url

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class TableReader(Protocol):
    def exists(self, path: str) -> bool: ...

    def rows(self, path: str) -> list[dict[str, Any]]: ...

    def columns(self, path: str) -> list[str]: ...

    def history(self, path: str) -> list[tuple[int, str, str]]:
        """(version, operation, write mode) of every commit the log still holds."""
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
        return [r.asDict() for r in catalog.read(self.spark, path).collect()]

    def columns(self, path: str) -> list[str]:
        return catalog.read(self.spark, path).columns

    def history(self, path: str) -> list[tuple[int, str, str]]:
        from delta.tables import DeltaTable

        return [(int(h["version"]), str(h["operation"]), str((h["operationParameters"] or {}).get("mode", "")))
                for h in DeltaTable.forPath(self.spark, path).history().collect()]

    def max_value(self, path: str, column: str) -> Any:
        from pyspark.sql import functions as F

        return catalog.one(catalog.read(self.spark, path).agg(F.max(column)))[0]


class LocalReader:
    """delta-rs on local paths (no JVM). Existence is decided as catalog.table_exists does."""

    def exists(self, path: str) -> bool:
        log = Path(path) / "_delta_log"
        return (log / catalog.FIRST_COMMIT).is_file() or (log / "_last_checkpoint").is_file()

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

    def history(self, path: str) -> list[tuple[int, str, str]]:
        return [(int(h["version"]), str(h.get("operation", "")), str((h.get("operationParameters") or {}).get("mode", "")))
                for h in self._table(path).history()]

    def max_value(self, path: str, column: str) -> Any:
        import pyarrow as pa

        values = [v for v in pa.table(self._table(path).get_add_actions(flatten=True)).column(f"max.{column}").to_pylist()
                  if v is not None]
        return max(values, default=None)


def local(*paths: str) -> bool:
    return not any(is_url(p) for p in paths)
