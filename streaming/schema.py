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
# Only the fields Silver is built from are listed: the parser skips the others (visitNumber, date,
# device.isMobile, geoNetwork.subContinent and city, totals.visits, hits, bounces and newVisits,
# trafficSource, hits[], ...) without copying them, where each listed field is a string copied per
# line (the nine unused ones of DESIGN.md's input shape cost ~0.3-0.5 s of parsing 1M lines,
# measured). Leaving such a string field out never changes a line's outcome: a string field takes
# any JSON value as its text, so it never fails the parse, and nothing downstream reads it.
# (device, geoNetwork and totals are objects: a line where one is not is quarantined as wrong_type.)
BRONZE_SCHEMA = T.StructType([
    T.StructField("fullVisitorId", T.StringType()),
    T.StructField("visitId", T.StringType()),
    T.StructField("visitStartTime", T.StringType()),
    T.StructField("device", _strings("browser", "operatingSystem", "deviceCategory")),
    T.StructField("geoNetwork", _strings("continent", "country")),
    T.StructField("totals", _strings("pageviews", "timeOnSite")),
    T.StructField(CORRUPT_COLUMN, T.StringType()),
])

SILVER_COLUMNS = [f.name for f in schemas.SILVER_SESSIONS.fields]
QUARANTINE_COLUMNS = [f.name for f in schemas.SILVER_QUARANTINE.fields]
