"""First come, first kept across a period's runs (dp.continual): a unit is both of its hashes, and
contributions kept before silver.release_bounds had the second one still bound the period."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from dp import continual
from lakehouse import schemas
from lakehouse.config import Config, MetricConfig, StorageConfig
from lakehouse.storage import Locations

DAY = dt.date(2026, 11, 10)
METRIC = MetricConfig(name="per_continent", kind="COUNT", group_by="continent", public_partitions=("Asia", "Europe"),
                      max_partitions_contributed=1, max_contributions_per_partition=2)
# the columns of release_bounds before unit_check
OLD_BOUNDS = "period_start date, metric string, unit long, key string, kept int, attempt string"


def _rows(spark, sessions: list[tuple[str, str, int]]):
    """(user_id, continent, minute) -> Silver rows of DAY with period_start."""
    start = dt.datetime(2026, 11, 10, 9, tzinfo=dt.UTC)
    rows = [schemas.row(schemas.SILVER_SESSIONS, {
        "session_id": f"{user}-{minute}", "user_id": user, "session_start": start + dt.timedelta(minutes=minute),
        "continent": continent, "country": "x", "device": "desktop", "browser": "b", "operating_system": "o",
        "num_pageviews": 1, "total_time_on_page": 1, "source_file": "f", "ingested_at": start})
        for user, continent, minute in sessions]
    return spark.createDataFrame(rows, schemas.SILVER_SESSIONS).withColumn("period_start", F.lit(DAY))


def _locations(tmp_path) -> Locations:
    return Locations.from_config(Config(storage=StorageConfig(root=str(tmp_path))))


def _kept(leaf) -> dict[str, int]:
    return {key: a.count for (_, key), a in leaf.totals[METRIC.name].items()}


def test_units_whose_first_hashes_collide_are_bounded_apart(spark, monkeypatch, tmp_path):
    """Every user's first hash is the same (as if all collided): A in Asia and B in Europe, L0 = 1,
    are still two units, each keeping its own partition; merged, one of them would be dropped."""
    real = continual.privacy_unit
    monkeypatch.setattr(continual, "privacy_unit", lambda: (F.lit(7).cast("long"), real()[1]))
    rows = _rows(spark, [("A", "Asia", 1), ("B", "Europe", 2), ("B", "Europe", 3)])
    nothing_kept = continual.kept_so_far(spark, _locations(tmp_path), [], set())  # the period's first run
    leaf = continual.bounded_leaf(rows, (METRIC,), nothing_kept)
    try:
        assert _kept(leaf) == {"Asia": 1, "Europe": 2}
    finally:
        leaf.release()


@pytest.mark.parametrize("old_table", [True, False])
def test_contributions_kept_before_the_unit_check_still_bound_the_period(spark, tmp_path, old_table):
    """A period whose first run kept A's 2 Asian sessions (its Linf) in a release_bounds table of the
    old columns: its next run keeps none of A's new Asian sessions nor A's European one (L0 = 1),
    and B's as usual; the same when the table was written with unit_check."""
    loc = _locations(tmp_path)
    unit, check = spark.createDataFrame([("A", DAY)], "user_id string, period_start date").select(
        *continual.privacy_unit()).first()  # A's first hash: what the old code kept
    first = spark.createDataFrame([(DAY, METRIC.name, unit, "Asia", 2, "a1")], OLD_BOUNDS)
    if not old_table:  # as written now: with A's check
        first = first.withColumn("unit_check", F.lit(check))
    first.write.format("delta").partitionBy("period_start").save(loc.release_bounds)
    previous = continual.kept_so_far(spark, loc, [DAY], {"a1"})
    rows = _rows(spark, [("A", "Asia", 30), ("A", "Europe", 31), ("B", "Asia", 32), ("B", "Asia", 33),
                         ("B", "Asia", 34)])
    leaf = continual.bounded_leaf(rows, (METRIC,), previous)
    try:
        assert _kept(leaf) == {"Asia": 2}  # B's first two; nothing of A's
        new = {(r["unit"] == unit, r["key"]): r["kept"] for r in leaf.kept.collect()}
        assert new == {(False, "Asia"): 2}
    finally:
        leaf.release()
