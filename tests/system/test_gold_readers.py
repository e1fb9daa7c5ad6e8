"""Gold as analysts read it, without Spark: delta-rs (`deltalake`) and polars read every Gold table,
latest version and `version=0`, exactly as Spark does; and every Gold table stays at Delta protocol
reader 1 / writer 2 with no table features, so that no change (deletion vectors, column mapping,
v2 checkpoints, timestampNtz, ...) silently locks those readers out.

Schema-agnostic on purpose: the tests iterate over whatever tables exist under <root>/gold and
compare whatever columns they have, with the types Spark reports.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import types as T
from support import run_cli

# Table properties that upgrade the protocol or change how a reader must read the files.
READER_BREAKING_PROPERTIES = ("delta.enableDeletionVectors", "delta.columnMapping.mode", "delta.checkpointPolicy",
                              "delta.enableTypeWidening", "delta.enableRowTracking", "delta.enableInCommitTimestamps")


@pytest.fixture(scope="module")
def gold(spark, tmp_path_factory) -> Path:
    """A lakehouse made through the CLI: two generate + run rounds, so that Gold has history."""
    root = tmp_path_factory.mktemp("gold-readers") / "lakehouse"
    for seed in (1, 2):
        r = run_cli("--root", str(root), "generate", "--sessions", "2000", "--files", "2", "--seed", str(seed))
        assert r.code == 0, r.err
        r = run_cli("--root", str(root), "run")
        assert r.code == 0, r.err
    return root / "gold"


def gold_tables(gold: Path) -> list[Path]:
    tables = sorted(p for p in gold.iterdir() if (p / "_delta_log").is_dir())
    assert "privacy_ledger" in {t.name for t in tables}, tables
    assert len(tables) >= 2, tables
    return tables


# ------------------------------------------------------------------------------------------
# type-aware comparison


def arrow_type_matches(spark_type: T.DataType, arrow_type: pa.DataType) -> bool:
    """The Arrow type a Delta reader must produce for a Spark column type."""
    if isinstance(spark_type, T.StringType):
        return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or \
            pa.types.is_string_view(arrow_type)
    if isinstance(spark_type, T.TimestampType):  # an instant: UTC-adjusted, never a naive wall clock
        return pa.types.is_timestamp(arrow_type) and arrow_type.tz in ("UTC", "+00:00", "Etc/UTC")
    if isinstance(spark_type, T.DecimalType):
        return pa.types.is_decimal(arrow_type) and (arrow_type.precision, arrow_type.scale) == \
            (spark_type.precision, spark_type.scale)
    expected = {T.LongType: pa.int64(), T.IntegerType: pa.int32(), T.ShortType: pa.int16(), T.ByteType: pa.int8(),
                T.DoubleType: pa.float64(), T.FloatType: pa.float32(), T.BooleanType: pa.bool_(),
                T.DateType: pa.date32()}.get(type(spark_type))
    return expected is not None and arrow_type == expected


def normalize(value):
    """One representation per value whatever the reader: instants as aware UTC datetimes (PySpark
    hands out naive local times, Arrow readers aware ones)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)  # a naive datetime is taken as local time, as PySpark made it
    return value


def same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return type(a) is type(b) and a == b or (a is None and b is None)


def sort_key(row: tuple) -> tuple:
    return tuple((v is None, f"{v:.9g}" if isinstance(v, float) else repr(v)) for v in row)


def assert_same_rows(name: str, columns: list[str], expected: list[dict], actual: list[dict]) -> None:
    exp = sorted((tuple(normalize(r[c]) for c in columns) for r in expected), key=sort_key)
    act = sorted((tuple(normalize(r[c]) for c in columns) for r in actual), key=sort_key)
    assert len(exp) == len(act), f"{name}: {len(act)} rows, Spark reads {len(exp)}"
    for e, a in zip(exp, act, strict=True):
        assert all(same_value(x, y) for x, y in zip(e, a, strict=True)), f"{name}: row differs\nSpark: {e}\nother: {a}"


# ------------------------------------------------------------------------------------------


def test_delta_rs_and_polars_read_every_gold_table_and_version_as_spark_does(spark, gold):
    compared = []
    for path in gold_tables(gold):
        latest = DeltaTable(str(path)).version()
        for version in sorted({0, latest}):
            name = f"gold.{path.name}@v{version}"
            df = spark.read.format("delta").option("versionAsOf", version).load(str(path))
            columns = df.columns
            spark_rows = [row.asDict() for row in df.collect()]

            table = DeltaTable(str(path), version=version)
            assert table.version() == version
            arrow = pa.table(table.scan())  # delta-rs' own engine
            assert arrow.column_names == columns, name
            for field in df.schema.fields:
                assert arrow_type_matches(field.dataType, arrow.schema.field(field.name).type), \
                    f"{name}.{field.name}: delta-rs reads {arrow.schema.field(field.name).type}, Spark {field.dataType}"
            assert_same_rows(f"{name} (deltalake)", columns, spark_rows, arrow.to_pylist())

            frame = pl.read_delta(str(path), version=version)
            assert frame.columns == columns, name
            polars_arrow = frame.to_arrow()
            for field in df.schema.fields:
                assert arrow_type_matches(field.dataType, polars_arrow.schema.field(field.name).type), \
                    f"{name}.{field.name}: polars reads {frame.schema[field.name]}, Spark {field.dataType}"
            assert_same_rows(f"{name} (polars)", columns, spark_rows, frame.to_dicts())
            compared.append((name, len(spark_rows)))
    # every Gold table has rows from the first release on (the ledger is created empty, append-only, first)
    assert all(n > 0 for name, n in compared if name != "gold.privacy_ledger@v0"), compared


def test_gold_stays_at_delta_protocol_reader_1_writer_2_without_table_features(gold):
    for path in gold_tables(gold):
        log = path / "_delta_log"
        protocol, configuration, schema = None, {}, None
        for commit in sorted(log.glob("*.json"), key=lambda p: int(p.name.split(".")[0])):
            for line in commit.read_text().splitlines():
                action = json.loads(line) if line.strip() else {}
                if "protocol" in action:
                    protocol = action["protocol"]
                if "metaData" in action:
                    configuration = action["metaData"].get("configuration") or {}
                    schema = action["metaData"]["schemaString"]
        assert protocol == {"minReaderVersion": 1, "minWriterVersion": 2}, (path.name, protocol)

        seen_by_delta_rs = DeltaTable(str(path)).protocol()
        assert (seen_by_delta_rs.min_reader_version, seen_by_delta_rs.min_writer_version) == (1, 2), path.name
        assert not seen_by_delta_rs.reader_features and not seen_by_delta_rs.writer_features, path.name

        enabled = {k: v for k, v in configuration.items()
                   if k.startswith("delta.feature.") or (k in READER_BREAKING_PROPERTIES and v not in ("false", "none"))}
        assert not enabled, (path.name, enabled)
        assert "timestamp_ntz" not in schema, path.name
        assert not (log / "_sidecars").exists(), path.name  # v2 checkpoints
