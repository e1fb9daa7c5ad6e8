"""Months of hourly runs, simulated with the pipeline's own code: what they leave behind (one Silver
commit and one small file per hour, the stream's checkpoint of every batch, a Gold append and a
spend per closed day, weekly `maintain`) and whether a cold hourly run pays for it.

Each simulated hour is one micro-batch of the same availableNow stream `lakehouse run` starts, with
`max_files_per_trigger = 1` so that a day's files, landed at once, are still committed one batch
per file - the commits, files and checkpoint entries 24 hourly runs would write. Only JVM start-up
and the idle path's cost are left out of the simulation; the cold runs measured after it pay them.
Every file is dated by the wall clock, so nothing is old enough for VACUUM, Delta's log expiry or
the stream's log clean-up to remove: the simulated lakehouse holds more files than 60 real days
would leave (a stricter test, not a laxer one).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path

from pyspark.sql import SparkSession

from dp.maintain import maintain
from dp.release import release_dp_metrics
from lakehouse import catalog
from lakehouse.config import Config, IngestConfig, StorageConfig
from lakehouse.generate import generate
from lakehouse.lock import RunLease
from lakehouse.log import progress
from lakehouse.storage import Locations
from streaming.ingest import ingest

MAINTAIN_EVERY_DAYS = 7  # the README's "daily or weekly": the less frequent, the more small files
RETAIN_HOURS = 168


def simulate_hourly(spark: SparkSession, root: str, days: int, runs_per_day: int, sessions_per_run: int,
                    last_day: str) -> dict:
    """A fresh lakehouse at `root` after `days` x `runs_per_day` runs, the last day `last_day`.
    A closed day is released when its release would have run (close_after_hours after its end),
    unless that moment is still to come - a release cannot be dated later than the wall clock."""
    shutil.rmtree(root, ignore_errors=True)
    config = Config(storage=StorageConfig(root=root), ingest=IngestConfig(max_files_per_trigger=1))
    loc = Locations.from_config(config)
    bronze = Path(loc.bronze)
    bronze.mkdir(parents=True)
    landing = Path(root) / "landing"
    end = dt.date.fromisoformat(last_day)
    started, releases, maintains = time.perf_counter(), 0, 0
    for d in range(days):
        day = end - dt.timedelta(days=days - 1 - d)
        generate(landing, sessions=runs_per_day * sessions_per_run, files=runs_per_day, seed=d, start=day, days=1)
        for k, f in enumerate(sorted(landing.iterdir())):  # one file per run, landed in time order
            target = bronze / f.name
            shutil.move(f, target)
            stamp = time.time() - (runs_per_day - k)
            os.utime(target, (stamp, stamp))
        ingest(spark, config, loc)
        day_end = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
        release_at = day_end + dt.timedelta(hours=config.privacy.close_after_hours + 1)
        if release_at <= dt.datetime.now(dt.UTC):
            release_dp_metrics(spark, config, loc, now=release_at)
            releases += 1
        if (d + 1) % MAINTAIN_EVERY_DAYS == 0:
            maintain(spark, config, loc, RETAIN_HOURS, RunLease(), now=min(release_at, dt.datetime.now(dt.UTC)))
            maintains += 1
        progress(f"hourly simulation: day {d + 1}/{days} ({day}), {(d + 1) * runs_per_day} runs, "
                 f"{time.perf_counter() - started:.0f} s")
    shutil.rmtree(landing)
    log = Path(loc.silver_sessions) / "_delta_log"
    return {"root": root, "runs": days * runs_per_day, "releases": releases, "maintains": maintains,
            "silver_version": catalog.latest_version(spark, loc.silver_sessions),
            "silver_log_files": sum(1 for _ in log.iterdir()),
            "silver_data_files": sum(1 for _ in Path(loc.silver_sessions).rglob("*.parquet")),
            "simulation_s": round(time.perf_counter() - started, 1)}
