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


class SparkReader:
    def __init__(self, spark: SparkSession):
        self.spark = spark

    def exists(self, path: str) -> bool:
        return catalog.table_exists(self.spark, path)

    def rows(self, path: str) -> list[dict[str, Any]]:
        return [r.asDict() for r in catalog.read(self.spark, path).collect()]

    def columns(self, path: str) -> list[str]:
        return catalog.read(self.spark, path).columns


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


def local(*paths: str) -> bool:
    return not any(is_url(p) for p in paths)
