"""Pure Bronze -> Silver transformations: DataFrame in, DataFrame out, no I/O.

The streaming job (``streaming.ingest``) feeds each micro-batch of raw lines through
:func:`bronze_to_silver`; the unit tests feed tiny in-memory frames through the same functions.
"""

from __future__ import annotations

import hashlib

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from streaming.schema import BRONZE_SCHEMA, CORRUPT_COLUMN, QUARANTINE_COLUMNS, SILVER_COLUMNS

NOT_SET = "(not set)"
# Values GA exports use for "unknown"; compared after trim + lower-case.
PLACEHOLDERS = ("", "(not set)", "not set", "not available in demo dataset", "(not provided)",
                "null", "undefined", "unknown")
DEVICE_CATEGORIES = ("desktop", "mobile", "tablet")
# Plausible ranges; a value outside is a broken record, not a fact to aggregate.
MIN_START, MAX_START = 946_684_800, 4_102_444_800  # [2000-01-01, 2100-01-01)
MAX_PAGEVIEWS = 100_000
MAX_TIME_ON_SITE = 86_400
VISITOR_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"


def hmac_sha256_hex(key: bytes, message: Column) -> Column:
    """HMAC-SHA256(key, message) as lower-case hex, computed in the JVM (no Python UDF).

    RFC 2104: H((K ^ opad) || H((K ^ ipad) || m)) with K padded to the 64-byte block. Only the padded
    and xored key enters the plan; spark.sql.redaction.string.regex hides it from EXPLAIN and the UI.
    """
    block = 64
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    ipad = bytes(b ^ 0x36 for b in key).hex()
    opad = bytes(b ^ 0x5C for b in key).hex()
    inner = F.sha2(F.concat(F.unhex(F.lit(ipad)), F.encode(message, "UTF-8")), 256)
    return F.sha2(F.concat(F.unhex(F.lit(opad)), F.unhex(inner)), 256)


def clean_dimension(raw: Column) -> Column:
    """Trimmed text, or "(not set)" for null, blank and GA placeholder values."""
    trimmed = F.trim(raw)
    return F.when(trimmed.isNull() | F.lower(trimmed).isin(*PLACEHOLDERS), F.lit(NOT_SET)).otherwise(trimmed)


def device_category(raw: Column) -> Column:
    lowered = F.lower(F.trim(raw))
    return F.when(lowered.isin(*DEVICE_CATEGORIES), lowered).otherwise(F.lit(NOT_SET))


def parse_bronze(lines: DataFrame) -> DataFrame:
    """(value, source_file) raw lines -> (raw, source_file, rec) with rec parsed by the Bronze schema.

    Blank lines carry no record and are dropped; every other line stays, parsed or not.
    """
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_COLUMN}
    return (lines.where(F.length(F.trim("value")) > 0)
            .select(F.col("value").alias("raw"), "source_file",
                    F.from_json("value", BRONZE_SCHEMA, options).alias("rec")))


def _problem(check: Column, reason: Column | str) -> tuple[Column, Column]:
    return check, reason if isinstance(reason, Column) else F.lit(reason)


def _shown(raw: Column) -> Column:
    return F.substring(F.coalesce(raw, F.lit("null")), 1, 60)


def _integer_problems(name: str, raw: Column, lo: int, hi: int, required: bool) -> list[tuple[Column, Column]]:
    text = F.trim(raw)
    value = text.try_cast("long")
    present = text.isNotNull() & (text != "")
    problems = []
    if required:
        problems.append(_problem(~present, f"missing_field: {name}"))
    problems.append(_problem(present & value.isNull(),
                             F.concat(F.lit(f"bad_value: {name}='"), _shown(raw), F.lit("' is not an integer"))))
    problems.append(_problem(present & ((value < lo) | (value >= hi)),
                             F.concat(F.lit(f"out_of_range: {name}="), _shown(raw),
                                      F.lit(f" is outside [{lo}, {hi})"))))
    return problems


def bronze_to_silver(lines: DataFrame, pseudonym_key: bytes, ingested_at: Column | None = None) -> DataFrame:
    """Raw lines -> one row per line with every Silver column plus ``raw`` and ``reason``.

    ``reason`` is null for a valid session and names the first problem otherwise, as
    ``<code>: <detail>`` with code one of not_json, wrong_type, missing_field, bad_value, out_of_range.
    """
    ingested_at = ingested_at if ingested_at is not None else F.current_timestamp()
    parsed = parse_bronze(lines)
    rec = F.col("rec")
    visitor = F.trim(rec["fullVisitorId"])
    visit_id = F.trim(rec["visitId"]).try_cast("long")
    start = F.trim(rec["visitStartTime"]).try_cast("long")
    pageviews = F.trim(rec["totals"]["pageviews"]).try_cast("long")
    time_on_site = F.trim(rec["totals"]["timeOnSite"]).try_cast("long")

    corrupt = rec[CORRUPT_COLUMN].isNotNull()
    nothing_parsed = rec["fullVisitorId"].isNull() & rec["visitId"].isNull() & rec["device"].isNull() \
        & rec["geoNetwork"].isNull() & rec["totals"].isNull() & rec["visitStartTime"].isNull()
    problems = [
        _problem(rec.isNull() | (corrupt & nothing_parsed), "not_json: the line is not a JSON object"),
        _problem(corrupt, "wrong_type: device, geoNetwork and totals must be JSON objects"),
        _problem(visitor.isNull() | (visitor == ""), "missing_field: fullVisitorId"),
        _problem(~visitor.rlike(VISITOR_ID_PATTERN),
                 F.concat(F.lit("bad_value: fullVisitorId='"), _shown(rec["fullVisitorId"]),
                          F.lit("' is not an identifier"))),
        *_integer_problems("visitId", rec["visitId"], 0, 2**63 - 1, required=True),
        *_integer_problems("visitStartTime", rec["visitStartTime"], MIN_START, MAX_START, required=True),
        *_integer_problems("totals.pageviews", rec["totals"]["pageviews"], 0, MAX_PAGEVIEWS + 1, required=False),
        *_integer_problems("totals.timeOnSite", rec["totals"]["timeOnSite"], 0, MAX_TIME_ON_SITE + 1,
                           required=False),
    ]
    reason = F.lit(None).cast("string")
    for check, text in reversed(problems):  # the first failing check wins
        reason = F.when(check, text).otherwise(reason)

    return parsed.select(
        F.concat(visitor, F.lit("-"), visit_id.cast("string")).alias("session_id"),
        hmac_sha256_hex(pseudonym_key, visitor).alias("user_id"),
        F.timestamp_seconds(start).alias("session_start"),
        clean_dimension(rec["geoNetwork"]["continent"]).alias("continent"),
        clean_dimension(rec["geoNetwork"]["country"]).alias("country"),
        device_category(rec["device"]["deviceCategory"]).alias("device"),
        clean_dimension(rec["device"]["browser"]).alias("browser"),
        clean_dimension(rec["device"]["operatingSystem"]).alias("operating_system"),
        F.coalesce(pageviews, F.lit(0)).cast("int").alias("num_pageviews"),
        F.coalesce(time_on_site, F.lit(0)).cast("int").alias("total_time_on_page"),
        "source_file",
        ingested_at.alias("ingested_at"),
        reason.alias("reason"),
        "raw",
    ).withColumn(
        # Only a quarantined line needs its raw text; dropping it for valid rows keeps the cached
        # micro-batch a fraction of the Bronze bytes.
        "raw", F.when(F.col("reason").isNotNull(), F.col("raw")))


def valid_sessions(candidates: DataFrame) -> DataFrame:
    return candidates.where(F.col("reason").isNull()).select(*SILVER_COLUMNS)


def quarantined(candidates: DataFrame) -> DataFrame:
    return candidates.where(F.col("reason").isNotNull()).select(*QUARANTINE_COLUMNS)


def dedupe_sessions(sessions: DataFrame) -> DataFrame:
    """One row per session_id; when a batch holds a session twice, the first file (by name) wins."""
    first = Window.partitionBy("session_id").orderBy("source_file", "session_start", "user_id")
    return (sessions.withColumn("_n", F.row_number().over(first))
            .where(F.col("_n") == 1).drop("_n"))
