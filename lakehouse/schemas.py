"""Schemas of every table the lakehouse writes: the contracts of ../shared/DESIGN.md.

Silver (restricted: pseudonymised rows and exact counts) and Gold (DP aggregates only, shareable).
Rows are built by field name (:func:`row`), never by position.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from pyspark.sql import types as T

from lakehouse.config import MetricConfig, MetricKind


class ReleaseKind(enum.StrEnum):
    """The values of the `kind` column of the audit, the ledger and every Gold metric table."""

    INCREMENTAL = "incremental"  # period "none": the rows added since the last release
    CLOSED = "closed"  # one period, once, after it closed
    CONTINUAL = "continual"  # a running total of an open period (one tree leaf)
    REPROCESS = "reprocess"  # closed periods again, over Silver as of a version (time travel)
    LATE = "late"  # no release: rows that arrived after their period's release (audit only)


def _field(name: str, kind: T.DataType, nullable: bool = False) -> T.StructField:
    return T.StructField(name, kind, nullable)


STRING, LONG, INT, DOUBLE, DATE, TIMESTAMP = (T.StringType(), T.LongType(), T.IntegerType(), T.DoubleType(),
                                              T.DateType(), T.TimestampType())

SILVER_SESSIONS = T.StructType([
    _field("session_id", STRING),  # HMAC-SHA256(key, fullVisitorId "/" visitId): never the raw ids
    _field("user_id", STRING),  # HMAC-SHA256(key, fullVisitorId): the privacy unit
    _field("session_start", TIMESTAMP),
    _field("continent", STRING),
    _field("country", STRING),
    _field("device", STRING),
    _field("browser", STRING),
    _field("operating_system", STRING),
    _field("num_pageviews", INT),
    _field("total_time_on_page", INT),
    _field("source_file", STRING),
    _field("ingested_at", TIMESTAMP),
])

SILVER_QUARANTINE = T.StructType([
    _field("source_file", STRING),
    _field("raw", STRING, True),
    _field("reason", STRING),
    _field("ingested_at", TIMESTAMP),
])

# The authoritative record of every release (restricted): what it spent per metric and period, and
# the exact sizes that must not be published. gold.privacy_ledger is its published copy.
RELEASE_AUDIT = T.StructType([
    _field("release_id", LONG),
    _field("attempt", STRING),  # the computation that produced the release (continual state is keyed by it)
    _field("kind", STRING),  # incremental | closed | continual | reprocess | late
    _field("metric", STRING),  # "" for a late-rows record
    _field("period", STRING),  # none | day | week | month: the privacy unit's period
    _field("period_start", DATE, True),  # null with period "none"
    _field("epsilon", DOUBLE),  # spent by this row (0 for a continual run after the period's first)
    _field("delta", DOUBLE),
    _field("silver_version_from", LONG),
    _field("silver_version_to", LONG),
    _field("rows_in", LONG),  # exact: Silver rows of this period the release read
    _field("rows_late", LONG),  # exact: rows of this period that arrived after its release (kind late)
    _field("leaf", INT, True),  # continual: the run's leaf t in the period's tree
    _field("noise_kind", STRING),
    _field("engine", STRING),
    _field("released_at", TIMESTAMP),
    _field("spec", STRING),  # continual: the mechanism and bounds the period's tree was opened with
])

# Continual release state (restricted). Per (period, metric, user hash, partition): the rows kept so
# far - first come, first kept - so the bounds hold across all runs of a period.
RELEASE_BOUNDS = T.StructType([
    _field("period_start", DATE),
    _field("metric", STRING),
    _field("unit", LONG),  # the unit's two 64-bit hashes (dp.engine_spark.privacy_unit)
    _field("unit_check", LONG, True),  # null in rows written before it existed (dp.continual.kept_so_far)
    _field("key", STRING),
    _field("kept", INT),
    _field("attempt", STRING),
])

# Continual release state (restricted). Every completed tree node: exact and noisy value.
RELEASE_TREE = T.StructType([
    _field("period_start", DATE),
    _field("metric", STRING),
    _field("part", STRING),  # count | sum | users (MEAN: count and sum)
    _field("key", STRING),
    _field("level", INT),
    _field("node", INT),
    _field("true_value", DOUBLE),
    _field("noisy_value", DOUBLE),
    _field("release_id", LONG),
])

PRIVACY_LEDGER = T.StructType([
    _field("release_id", LONG),
    _field("kind", STRING),  # incremental | closed | continual | reprocess
    _field("metric", STRING),
    _field("period_start", DATE, True),
    _field("epsilon", DOUBLE),  # spent by this release for this metric and period
    _field("delta", DOUBLE),
    _field("silver_version_from", LONG),
    _field("silver_version_to", LONG),
    _field("released_at", TIMESTAMP),
    _field("noise_kind", STRING),
    _field("engine", STRING),
])
LEDGER_COLUMNS = tuple(f.name for f in PRIVACY_LEDGER.fields)


def gold_metric(metric: MetricConfig) -> T.StructType:
    fields = [
        _field("release_id", LONG),
        _field("kind", STRING),
        _field("period_start", DATE, True),
        _field("silver_version", LONG),
        _field(metric.group_by, STRING),
        _field(metric.output, DOUBLE),
        # Standard deviation of the noise added to the value, from the mechanism's parameters;
        # null for MEAN (a ratio of two noisy values has no closed form).
        _field("noise_stddev", DOUBLE, True),
    ]
    if metric.kind == MetricKind.MEAN:
        fields += [
            _field("dp_count", DOUBLE),  # the mean's own noisy denominator
            # Delta-method approximation of the mean's noise, from DP outputs only (post-processing).
            _field("approx_stddev", DOUBLE),
        ]
    fields += [_field("epsilon", DOUBLE), _field("delta", DOUBLE), _field("released_at", TIMESTAMP)]
    return T.StructType(fields)


def row(schema: T.StructType, values: Mapping[str, Any]) -> tuple:
    """A tuple in the schema's column order from a mapping by column name; a missing or unknown
    name is an error, not a shifted column."""
    names = [f.name for f in schema.fields]
    unknown = set(values) - set(names)
    missing = [n for n in names if n not in values]
    if unknown or missing:
        raise KeyError(f"row does not match its schema: unknown {sorted(unknown)}, missing {missing}")
    return tuple(values[n] for n in names)
