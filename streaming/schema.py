"""Schemas of the Bronze input and of the Silver tables (the contracts in DESIGN.md)."""

from pyspark.sql import types as T

CORRUPT_COLUMN = "_corrupt_record"


def _strings(*names: str) -> T.StructType:
    return T.StructType([T.StructField(n, T.StringType()) for n in names])


# Explicit Bronze schema: no inference, ever. Every scalar is read as a string because real GA
# exports carry numbers as strings ("pageviews": "3"); casting and range checks happen in
# streaming.transform, where a bad value is quarantined with a reason instead of becoming null.
# Fields not listed here (trafficSource, hits[], customDimensions, ...) are ignored unparsed.
BRONZE_SCHEMA = T.StructType([
    T.StructField("fullVisitorId", T.StringType()),
    T.StructField("visitId", T.StringType()),
    T.StructField("visitNumber", T.StringType()),
    T.StructField("visitStartTime", T.StringType()),
    T.StructField("date", T.StringType()),
    T.StructField("device", _strings("browser", "operatingSystem", "isMobile", "deviceCategory")),
    T.StructField("geoNetwork", _strings("continent", "subContinent", "country", "city")),
    T.StructField("totals", _strings("visits", "hits", "pageviews", "timeOnSite", "bounces", "newVisits")),
    T.StructField(CORRUPT_COLUMN, T.StringType()),
])

SILVER_SESSIONS_SCHEMA = T.StructType([
    T.StructField("session_id", T.StringType(), False),
    T.StructField("user_id", T.StringType(), False),
    T.StructField("session_start", T.TimestampType(), False),
    T.StructField("continent", T.StringType(), False),
    T.StructField("country", T.StringType(), False),
    T.StructField("device", T.StringType(), False),
    T.StructField("browser", T.StringType(), False),
    T.StructField("operating_system", T.StringType(), False),
    T.StructField("num_pageviews", T.IntegerType(), False),
    T.StructField("total_time_on_page", T.IntegerType(), False),
    T.StructField("source_file", T.StringType(), False),
    T.StructField("ingested_at", T.TimestampType(), False),
])

SILVER_QUARANTINE_SCHEMA = T.StructType([
    T.StructField("source_file", T.StringType(), False),
    T.StructField("raw", T.StringType(), True),
    T.StructField("reason", T.StringType(), False),
    T.StructField("ingested_at", T.TimestampType(), False),
])

SILVER_COLUMNS = [f.name for f in SILVER_SESSIONS_SCHEMA.fields]
QUARANTINE_COLUMNS = [f.name for f in SILVER_QUARANTINE_SCHEMA.fields]
