"""The Bronze input schema (the input contract of ../shared/DESIGN.md). Silver's table schemas live
with the catalog, in lakehouse.schemas."""

from pyspark.sql import types as T

from lakehouse import schemas

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

SILVER_COLUMNS = [f.name for f in schemas.SILVER_SESSIONS.fields]
QUARANTINE_COLUMNS = [f.name for f in schemas.SILVER_QUARANTINE.fields]
