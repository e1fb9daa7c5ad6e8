"""``lakehouse sql``: one read-only Spark SQL query over silver.* and gold.*, printed as table, CSV or
JSON lines. What may run is decided on Spark's plans by :mod:`lakehouse.sql_guard`."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import math
from typing import IO, Any

from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import SparkSession

from lakehouse import catalog, jvm_bridge, sql_guard
from lakehouse.errors import LakehouseError, spark_message
from lakehouse.storage import Locations


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def write_table(columns: list[str], rows: list[tuple], out: IO[str]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip(), file=out)
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", file=out)


def prepare(spark: SparkSession, loc: Locations, query: str) -> tuple[sql_guard.Referenced, list[str]]:
    """Checks `query` on its parsed plan (SqlRefused if it is not a read-only query over silver.* and
    gold.*) and registers the tables it reads; returns what it reads and the tables that do not exist."""
    try:
        plan = jvm_bridge.parse_plan(spark, query)
    except ParseException as exc:
        raise LakehouseError(f"SQL syntax error: {spark_message(exc)}") from exc
    referenced = sql_guard.check_parsed(plan)
    names = list(referenced.tables)
    for layer in referenced.namespaces:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {layer}")
        names += [n for n in catalog.existing_tables(spark, loc, layer) if n not in names]
    return referenced, catalog.register_tables(spark, loc, names)


def run_query(spark: SparkSession, loc: Locations, query: str, fmt: str, out: IO[str],
              limit: int | None = None, quiet_missing: bool = False) -> None:
    referenced, missing = prepare(spark, loc, query)
    if missing:
        if quiet_missing:
            print(f"({', '.join(missing)} not created yet)", file=out)
            return
        raise LakehouseError(f"{', '.join(missing)} does not exist yet under {loc.root or loc.gold}: "
                             "silver.* appear after `lakehouse ingest`, gold.* after `lakehouse release`")
    try:
        df = spark.sql(query)  # a SHOW / DESCRIBE / EXPLAIN runs here (read-only); a query is only analysed
        if referenced.is_query:
            sql_guard.check_analyzed(jvm_bridge.analyzed_plan(df), catalog.registered_paths())
        if limit:
            df = df.limit(limit)
        columns = df.columns
        rows = df.toLocalIterator() if fmt != "table" else df.collect()
        if fmt == "table":
            write_table(columns, [tuple(r) for r in rows], out)
        elif fmt == "csv":
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(columns)
            for r in rows:
                writer.writerow(["" if v is None else _cell(v) if isinstance(v, dt.datetime) else v for v in r])
        else:
            for r in rows:
                print(json.dumps({c: _json_value(v) for c, v in zip(columns, r, strict=True)}), file=out)
    except AnalysisException as exc:
        raise LakehouseError(f"SQL error: {spark_message(exc)}") from exc
