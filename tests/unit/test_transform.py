"""Unit tests of the pure Bronze -> Silver transformations on tiny in-memory frames."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from support import session

from streaming import transform
from streaming.schema import BRONZE_SCHEMA, CORRUPT_COLUMN, SILVER_COLUMNS

KEY = b"unit-test-key"
UTC = dt.UTC


def pseudonym(message: str, key: bytes = KEY) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def lines_df(spark, *lines: str, source_file: str = "file:/bronze/a.jsonl"):
    return spark.createDataFrame([(line, source_file) for line in lines], "value string, source_file string")


def silver(spark, *lines: str):
    return transform.bronze_to_silver(lines_df(spark, *lines), KEY, F.lit(dt.datetime(2026, 1, 1)))


def reasons(spark, *records) -> list[str | None]:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    return [row["reason"] for row in silver(spark, *lines).collect()]


def test_hmac_matches_python_hmac(spark):
    ids = ["1234567890", "0000180837325221777", "é-unicode"]
    long_key = b"k" * 100  # longer than one SHA-256 block: hashed first, per RFC 2104
    for key in (KEY, long_key):
        df = spark.createDataFrame([(i,) for i in ids], "id string")
        got = [r[0] for r in df.select(transform.hmac_sha256_hex(key, F.col("id"))).collect()]
        assert got == [hmac.new(key, i.encode(), hashlib.sha256).hexdigest() for i in ids]


def test_clean_dimension_maps_placeholders_to_not_set(spark):
    values = [" Europe ", "(not set)", "not available in demo dataset", "", None, "Americas", "(NOT SET)"]
    df = spark.createDataFrame([(v,) for v in values], "v string")
    actual = df.select(transform.clean_dimension(F.col("v")).alias("v"))
    expected = spark.createDataFrame([(v,) for v in ["Europe", "(not set)", "(not set)", "(not set)", "(not set)",
                                                     "Americas", "(not set)"]], "v string")
    assert_df_equality(actual, expected, ignore_nullable=True)


def test_device_category_keeps_known_categories_only(spark):
    df = spark.createDataFrame([(v,) for v in ["desktop", "Mobile ", "tablet", "smart tv", None]], "v string")
    actual = df.select(transform.device_category(F.col("v")).alias("v"))
    expected = spark.createDataFrame([(v,) for v in ["desktop", "mobile", "tablet", "(not set)", "(not set)"]],
                                     "v string")
    assert_df_equality(actual, expected, ignore_nullable=True)


def test_valid_session_is_flattened_and_cast(spark):
    row = silver(spark, json.dumps(session())).first()
    assert row["reason"] is None and row["raw"] is None  # raw is kept for quarantined lines only
    # Both ids are keyed pseudonyms: nothing in Silver holds the raw visitor id.
    assert row["session_id"] == pseudonym("1234567890/1501591568")
    assert row["user_id"] == pseudonym("1234567890")
    assert "1234567890" not in "".join(str(v) for v in row.asDict().values() if v is not None)
    assert row["session_start"].replace(tzinfo=UTC) == dt.datetime(2017, 8, 1, 12, 46, 8, tzinfo=UTC)
    assert (row["continent"], row["country"], row["device"]) == ("Europe", "Germany", "desktop")
    assert (row["browser"], row["operating_system"]) == ("Chrome", "Windows")
    assert (row["num_pageviews"], row["total_time_on_page"]) == (3, 120)
    assert row["source_file"] == "file:/bronze/a.jsonl"


def test_numbers_as_strings_and_as_numbers_give_the_same_row(spark):
    as_numbers = session(visitId=1501591568, visitStartTime=1501591568,
                         totals={"visits": 1, "hits": 4, "pageviews": 3, "timeOnSite": 120})
    df = silver(spark, json.dumps(session()), json.dumps(as_numbers)).select(*SILVER_COLUMNS)
    first, second = df.collect()
    assert first == second


def test_bounce_without_time_on_site_and_missing_pageviews_are_zero(spark):
    bounce = session(totals={"visits": "1", "bounces": "1"})
    row = silver(spark, json.dumps(bounce)).first()
    assert row["reason"] is None
    assert (row["num_pageviews"], row["total_time_on_page"]) == (0, 0)


def test_missing_geo_and_device_become_not_set(spark):
    row = silver(spark, json.dumps(session(geoNetwork=None, device=None))).first()
    assert row["reason"] is None
    assert {row[c] for c in ("continent", "country", "device", "browser", "operating_system")} == {"(not set)"}


@pytest.mark.parametrize("record, expected", [
    ("{not json", "not_json: the line is not a JSON object"),
    ("[1, 2, 3]", "not_json: the line is not a JSON object"),
    (session(totals="lots"), "wrong_type: device, geoNetwork and totals must be JSON objects"),
    (session(fullVisitorId=None), "missing_field: fullVisitorId"),
    (session(fullVisitorId="  "), "missing_field: fullVisitorId"),
    (session(fullVisitorId="has space"), "bad_value: fullVisitorId='has space' is not an identifier"),
    (session(visitId=None), "missing_field: visitId"),
    (session(visitId="abc"), "bad_value: visitId='abc' is not an integer"),
    (session(visitId="-5"), "out_of_range: visitId=-5 is outside [0, 9223372036854775807)"),
    (session(visitStartTime=None), "missing_field: visitStartTime"),
    (session(visitStartTime="yesterday"), "bad_value: visitStartTime='yesterday' is not an integer"),
    (session(visitStartTime="12"), "out_of_range: visitStartTime=12 is outside [946684800, 4102444800)"),
    (session(totals={"pageviews": "-3"}), "out_of_range: totals.pageviews=-3 is outside [0, 100001)"),
    (session(totals={"pageviews": "2.5"}), "bad_value: totals.pageviews='2.5' is not an integer"),
    (session(totals={"pageviews": "1", "timeOnSite": "x"}), "bad_value: totals.timeOnSite='x' is not an integer"),
    (session(totals={"pageviews": "1", "timeOnSite": "90000"}),
     "out_of_range: totals.timeOnSite=90000 is outside [0, 86401)"),
])
def test_each_quarantine_reason(spark, record, expected):
    assert reasons(spark, record) == [expected]


def test_one_parse_reads_every_line_as_parsing_it_both_ways_does(spark):
    """parse_bronze parses a line once, as an array of records, and again only when that is not one
    record with its objects: on lines of every shape, (rec, _one_value) must equal what a record
    parse (with the corrupt-record column) and an array count of every line give."""
    good = json.dumps(session())
    lines = [good, good + "}", good + " " + good, good + ", " + good, "[" + good + "]", "{}", "null", "5", '"text"',
             "{not json", "[1, 2, 3]", "[]", "]", "[", "],", "{", "}", good + "   ", "  " + good, '{"_corrupt_record": "x"}',
             json.dumps(session(fullVisitorId=None)), json.dumps(session(visitId={"a": 1})),
             json.dumps(session(visitId=[1, 2])), json.dumps(session(hits=None, trafficSource=None))]
    for field in ("device", "geoNetwork", "totals"):
        lines += [json.dumps(session(**{field: bad})) for bad in ("lots", 5, [1], [{"a": "b"}], True, None, {})]
    lines += [json.dumps(session(device={"browser": {"nested": "object"}})), json.dumps(session(totals={"pageviews": [3]}))]
    lines += [good[:-1] + ', "x": NaN}', good[:-1] + ', "y": -Infinity}', good.replace('"120"', "NaN"),
              good + "]", good + "] junk", "]" + good, "\ufeff" + good, good.replace('"device"', '"Device"'),
              good.replace('"Chrome"', '"Chr\tome"'), good.replace('"1501591568"', "007", 1),
              good[:-1] + ', "_corrupt_record": null}', good[:-1] + ', "hits": ' + "[" * 999 + "]" * 999 + "}",
              good[:-1] + ', "n": 1' + "0" * 1000 + "}"]
    df = lines_df(spark, *lines)
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_COLUMN}
    expected = df.select(F.col("value").alias("raw"), F.from_json("value", BRONZE_SCHEMA, options).alias("rec"),
                         (F.json_array_length(F.concat(F.lit("["), "value", F.lit("]"))) == 1).alias("_one_value"))
    actual = transform.parse_bronze(df).select("raw", "rec", "_one_value")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_key_given_twice_reads_its_object_copy(spark):
    """The one difference from parsing both ways, pinned: a line with device, geoNetwork or totals
    twice, one copy not an object, reads the object copy in either order (the record parse marked it
    corrupt, with the same values read)."""
    good = json.dumps(session())
    twice = [line for field in ("device", "geoNetwork", "totals")
             for line in (good[:-1] + f', "{field}": "lots"}}', f'{{"{field}": "lots", ' + good[1:])]
    rows = transform.parse_bronze(lines_df(spark, good, *twice)).select("rec", "_one_value").collect()
    assert len(rows) == 7 and all(row == rows[0] for row in rows)
    assert rows[0]["_one_value"] and rows[0]["rec"]["totals"]["pageviews"] == "3"


def test_quarantined_rows_keep_raw_line_and_source(spark):
    bad = '{"fullVisitorId": "1", "visitId": "x"}'
    df = transform.quarantined(silver(spark, bad, json.dumps(session())))
    expected = spark.createDataFrame(
        [("file:/bronze/a.jsonl", bad, "bad_value: visitId='x' is not an integer", dt.datetime(2026, 1, 1))],
        "source_file string, raw string, reason string, ingested_at timestamp")
    assert_df_equality(df, expected, ignore_nullable=True)


def test_blank_lines_carry_no_record(spark):
    df = silver(spark, "", "   ", json.dumps(session()))
    assert df.count() == 1


def test_dedupe_keeps_one_row_per_session_first_file_wins(spark):
    line = json.dumps(session())
    other = json.dumps(session(fullVisitorId="999", visitId="1"))
    df = transform.bronze_to_silver(
        spark.createDataFrame([(line, "file:/b/2.jsonl"), (line, "file:/b/1.jsonl"), (other, "file:/b/2.jsonl")],
                              "value string, source_file string"), KEY, F.lit(dt.datetime(2026, 1, 1)))
    deduped = transform.dedupe_sessions(transform.valid_sessions(df))
    got = sorted((r["session_id"], r["source_file"]) for r in deduped.collect())
    assert got == sorted([(pseudonym("1234567890/1501591568"), "file:/b/1.jsonl"), (pseudonym("999/1"), "file:/b/2.jsonl")])


def test_dedupe_resolves_ids_whose_hash_collides_by_the_ids_themselves(spark):
    """Rows whose hash another id shares are resolved by their own session_id: with a hash that
    collides for every id, or for some, the rows kept are the same as with no collision."""
    rows = [("a", "file:/b/2.jsonl", 1), ("a", "file:/b/1.jsonl", 2), ("b", "file:/b/2.jsonl", 3),
            ("c", "file:/b/1.jsonl", 4), ("c", "file:/b/1.jsonl", 4), ("dd", "file:/b/3.jsonl", 5)]
    df = spark.createDataFrame(rows, "session_id string, source_file string, n int").select(
        "session_id", "source_file", F.timestamp_seconds("n").alias("session_start"), F.lit("u").alias("user_id"), "n")
    expected = spark.createDataFrame([("a", "file:/b/1.jsonl", 2), ("b", "file:/b/2.jsonl", 3),
                                      ("c", "file:/b/1.jsonl", 4), ("dd", "file:/b/3.jsonl", 5)],
                                     "session_id string, source_file string, n int")
    for key in (None, F.lit(0), F.length("session_id")):
        got = transform.dedupe_sessions(df, key).select("session_id", "source_file", "n")
        assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    # the rows known to repeat (as the ingest finds them), or more of them: the same rows are kept
    # (a null test resolves the row: whatever the condition, no row is lost)
    for repeated in (F.col("session_id").isin("a", "c"), F.lit(True), F.length("session_id") == 1,
                     F.when(F.col("session_id") != "a", F.lit(None).cast("boolean")).otherwise(True)):
        got = transform.dedupe_sessions(df, repeated=repeated).select("session_id", "source_file", "n")
        assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_session_id_is_one_pseudonym_per_session(spark):
    """The same session written differently (visitId as a number, as a padded string) is one
    session; another visit of the same visitor, or another visitor, is another."""
    same = [session(visitId=1501591568), session(visitId="1501591568"), session(visitId=" 01501591568 ")]
    other = [session(visitId="1501591569"), session(fullVisitorId="12345678901", visitId="501591568")]
    rows = silver(spark, *[json.dumps(r) for r in same + other]).collect()
    assert all(r["reason"] is None for r in rows)
    ids = [r["session_id"] for r in rows]
    assert len(set(ids[:3])) == 1 and len(set(ids)) == 3
    # a session's pseudonym never equals a user's, even for a crafted visitor id
    assert not {r["session_id"] for r in rows} & {r["user_id"] for r in rows}
