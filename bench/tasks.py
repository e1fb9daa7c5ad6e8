"""The measurements. Each task runs in one Spark session (its own process under `make bench`) and
returns seconds per repetition and the peak RSS of the process tree; JVM start-up is never timed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from bench.floors import ingest_floor, release_floor
from bench.hourly import simulate_hourly
from bench.rss import PeakRss
from dp.release import release_dp_metrics
from lakehouse import catalog
from lakehouse.config import Config, Engine, Period, PrivacyConfig, StorageConfig
from lakehouse.storage import Locations
from streaming.ingest import ingest
from streaming.keys import key_fingerprint, pseudonym_key, silver_properties
from streaming.schema import BRONZE_SCHEMA, SILVER_COLUMNS

CONTINENTS = ["Americas", "Asia", "Europe", "Oceania", "Africa", "(not set)"]
COUNTRIES = ["United States", "India", "United Kingdom", "Canada", "Germany", "Japan", "France", "Brazil",
             "Australia", "Spain", "Mexico", "Italy", "(not set)"]
DEVICES = ["desktop", "mobile", "tablet", "(not set)"]


def config_for(root: Path, bronze: Path | None = None, **privacy) -> tuple[Config, Locations]:
    config = Config(storage=StorageConfig(root=str(root), bronze=str(bronze or root / "bronze")),
                    privacy=dataclasses.replace(PrivacyConfig(epsilon_cap=1e6, period=Period.NONE), **privacy))
    return config, Locations.from_config(config)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def summary(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "runs_s": [round(t, 3) for t in times]}


def taking_turns(reps: int, runs: dict[str, Callable[[int], float]], measured: str,
                 untimed_rounds: int = 0) -> tuple[dict, float]:
    """`reps` repetitions of each run (given the repetition's number, it returns the seconds it
    timed), the runs taking turns - A B C, A B C... - rather than all of A's repetitions first: the
    JVM still speeds up for minutes after a warm-up (JIT), which favoured whatever was timed last
    (measured: a 1M-line ingest took 27, 23 then 19 s). The first `untimed_rounds` rounds are
    warm-up, left out of the median and reported apart (`untimed_s`). Also the peak RSS of the
    process tree during `measured`'s runs, the untimed ones included."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    peak = 0.0
    for i in range(untimed_rounds + reps):
        for name, run in runs.items():
            with PeakRss() as rss:
                times[name].append(run(i))
            if name == measured:
                peak = max(peak, rss.peak_mb)
    return {name: {**summary(t[untimed_rounds:]), "untimed_s": [round(x, 3) for x in t[:untimed_rounds]]}
            for name, t in times.items()}, peak


# ------------------------------------------------------------------------------------------
# ingest vs plain Spark JSON -> Parquet


def plain_json_to_parquet(spark: SparkSession, bronze: Path, out: Path) -> None:
    spark.read.schema(BRONZE_SCHEMA).json(str(bronze)).write.mode("overwrite").parquet(str(out))


def ingest_vs_plain(spark: SparkSession, bronze: str, work: str, reps: int) -> dict:
    """The ingest, plain Spark's JSON -> Parquet and the ingest floor over the same Bronze, after
    one untimed round of each on it: a process's first ingest of the full batch was the slowest of
    every full bench (21.1, 12.5, 16.9 s; 19.0, 12.9, 12.4 s; 16.6, 12.0, 11.3 s), a warm-up of
    50k lines before it notwithstanding - its heap grows to hold the batch (~150k page faults and
    full collections), and code the small batch does not reach is compiled - so the median of
    three was the slower of the other two."""
    bronze, work = Path(bronze), Path(work)
    untimed = 1
    times, peak_mb = taking_turns(reps, {
        "ingest": lambda i: timed(partial(ingest, spark, *config_for(work / f"ingest{i}", bronze=bronze))),
        "plain": lambda i: timed(partial(plain_json_to_parquet, spark, bronze, work / f"plain{i}.parquet")),
        "floor": lambda i: timed(partial(ingest_floor, spark, bronze, work / f"floor{i}")),
    }, measured="ingest", untimed_rounds=untimed)
    silver_root = work / f"ingest{untimed + reps - 1}"
    rows = spark.read.format("delta").load(config_for(silver_root)[1].silver_sessions).count()
    return {**times, "ingest_peak_rss_mb": peak_mb, "silver_rows": rows, "silver_root": str(silver_root)}


# ------------------------------------------------------------------------------------------
# release vs a plain aggregate of the same statistics


def plain_aggregate(spark: SparkSession, silver: str) -> None:
    """The same statistics as the default metrics, without DP: what a plain report would run."""
    df = spark.read.format("delta").load(silver)
    df.groupBy("continent").count().collect()
    df.groupBy("device").agg(F.avg("total_time_on_page")).collect()
    df.groupBy("country").count().collect()


def first_release_timed(spark: SparkSession, config: Config, loc: Locations, gold: Path) -> float:
    """Seconds of a release of all of Silver, as the lakehouse's first: into a fresh Gold, with a
    fresh restricted record (it lives beside Silver, which the repetitions share; left in place,
    every release after the first would find nothing new)."""
    for restricted in (loc.release_audit, loc.release_bounds, loc.release_tree, loc.release_staging):
        shutil.rmtree(restricted, ignore_errors=True)
    loc = dataclasses.replace(loc, gold=str(gold))
    outcome: list = []
    seconds = timed(lambda: outcome.append(release_dp_metrics(spark, config, loc)))
    assert outcome[0].release_id is not None, f"the timed release released nothing: {outcome[0].message}"
    return seconds


def release_vs_plain(spark: SparkSession, silver_root: str, work: str, reps: int, reference: bool) -> dict:
    silver_root, work = Path(silver_root), Path(work)
    config, loc = config_for(silver_root)
    first_release_timed(spark, config, loc, work / "gold-warmup")
    plain_aggregate(spark, loc.silver_sessions)
    release_floor(spark, loc.silver_sessions, work / "floor-warmup", config.metrics)
    times, peak_mb = taking_turns(reps, {
        "release": lambda i: first_release_timed(spark, config, loc, work / f"gold{i}"),
        "plain": lambda i: timed(partial(plain_aggregate, spark, loc.silver_sessions)),
        "floor": lambda i: timed(partial(release_floor, spark, loc.silver_sessions, work / f"floor{i}", config.metrics)),
    }, measured="release")
    out = {**times, "release_peak_rss_mb": peak_mb}
    if reference:
        # PipelineDP's SparkRDDBackend end to end, once: the yardstick the issue was filed against.
        with PeakRss() as ref_rss:
            ref_config, _ = config_for(silver_root, engine=Engine.PIPELINEDP)
            out["reference"] = summary([first_release_timed(spark, ref_config, loc, work / "gold-ref")])
        out["reference_peak_rss_mb"] = ref_rss.peak_mb
    return out


# ------------------------------------------------------------------------------------------
# cost growth: one fixed increment onto a small and a large Silver


def synthesize_silver(spark: SparkSession, loc: Locations, rows: int, end: dt.date) -> None:
    """A Silver table of `rows` sessions, one million a year up to `end`, laid out as the ingest
    writes it (files in time order). Built directly: ingesting millions of sessions only to have a
    large table would take most of the bench's time."""
    key = pseudonym_key(loc)
    catalog.ensure_silver_tables(spark, loc, silver_properties(key_fingerprint(key)))
    span = int(rows / 1_000_000 * 365 * 86_400)
    t_end = int(dt.datetime(end.year, end.month, end.day, tzinfo=dt.UTC).timestamp())
    users = max(1, int(rows / 2.2))
    pick = lambda values, salt: F.element_at(F.array(*map(F.lit, values)),  # noqa: E731
                                             (F.pmod(F.hash("id", F.lit(salt)), F.lit(len(values))) + 1).cast("int"))
    start = F.lit(t_end - span) + (F.col("id") * F.lit(span) / F.lit(rows)).cast("long")  # evenly spread
    df = spark.range(rows).select(
        F.concat(F.lit("9"), F.lpad(F.col("id").cast("string"), 18, "0"), F.lit("-"),
                 start.cast("string")).alias("session_id"),
        F.sha2(F.pmod(F.hash("id", F.lit(1)), F.lit(users)).cast("string"), 256).alias("user_id"),
        F.timestamp_seconds(start).alias("session_start"),
        pick(CONTINENTS, 2).alias("continent"), pick(COUNTRIES, 3).alias("country"),
        pick(DEVICES, 4).alias("device"), F.lit("Chrome").alias("browser"), F.lit("Windows").alias("operating_system"),
        F.pmod(F.hash("id", F.lit(5)), F.lit(20)).cast("int").alias("num_pageviews"),
        F.pmod(F.hash("id", F.lit(6)), F.lit(1800)).cast("int").alias("total_time_on_page"),
        F.lit("synthetic").alias("source_file"), F.current_timestamp().alias("ingested_at"),
    ).select(*SILVER_COLUMNS)
    files = max(1, rows // 250_000)
    df.repartitionByRange(files, "session_start").write.format("delta").mode("append").save(loc.silver_sessions)


def growth(spark: SparkSession, silver_rows: list[int], increments: list[str], warmup: str, end: str,
           work: str) -> dict:
    """One fixed increment's ingest and release onto a Silver of each size, all in this process, the
    sizes taking turns increment by increment: the machine's drift over minutes then hits each size
    alike (each size in a process of its own, minutes apart, moved a half-second release by 40 %)."""
    lakehouses = {}
    for rows in silver_rows:
        root = Path(work) / f"silver{rows}"
        shutil.rmtree(root, ignore_errors=True)
        config, loc = config_for(root)
        Path(loc.bronze).mkdir(parents=True)
        synthesize_silver(spark, loc, rows, dt.date.fromisoformat(end))
        release_dp_metrics(spark, config, loc)  # the base is released: later releases see only increments
        shutil.copy(warmup, loc.bronze)
        ingest(spark, config, loc)  # warm-up increment, untimed
        release_dp_metrics(spark, config, loc)
        lakehouses[rows] = (config, loc)
    times: dict[int, tuple[list[float], list[float]]] = {rows: ([], []) for rows in silver_rows}
    for increment in increments:
        for rows, (config, loc) in lakehouses.items():
            shutil.copy(increment, loc.bronze)
            times[rows][0].append(timed(partial(ingest, spark, config, loc)))
            times[rows][1].append(timed(partial(release_dp_metrics, spark, config, loc)))
    return {str(rows): {"silver_rows": rows, "ingest": summary(ingest_times), "release": summary(release_times)}
            for rows, (ingest_times, release_times) in times.items()}


# ------------------------------------------------------------------------------------------
# scale: the release of all of a synthesized Silver, 1x and 10x, each in a process of its own


def synthesize(spark: SparkSession, silver_rows: int, end: str, root: str) -> dict:
    """A fresh lakehouse at `root` holding a synthesized Silver of `silver_rows` sessions. Run in a
    process of its own: the 10M-row sort that lays it out grows that JVM's heap to ~2.5 GB, which
    no release should be charged with."""
    shutil.rmtree(root, ignore_errors=True)
    config, loc = config_for(Path(root))
    synthesize_silver(spark, loc, silver_rows, dt.date.fromisoformat(end))
    return {"silver_rows": silver_rows, "root": root}


def scale_release(spark: SparkSession, root: str, warmup_root: str, reps: int) -> dict:
    """Releases all of the Silver at `root` on a fresh Gold `reps` times, with the peak RSS of the
    process tree while it does, after one untimed release of the small Silver at `warmup_root`
    (JIT and code generation, the same for every size)."""
    config, loc = config_for(Path(warmup_root))
    warmup_gold = Path(warmup_root) / "gold-warmup"
    shutil.rmtree(warmup_gold, ignore_errors=True)  # each size's warm-up is a first release too
    first_release_timed(spark, config, loc, warmup_gold)
    config, loc = config_for(Path(root))
    with PeakRss() as rss:
        times = [first_release_timed(spark, config, loc, Path(root) / f"gold{i}") for i in range(reps)]
    return {"release": summary(times), "peak_rss_mb": rss.peak_mb}


TASKS = {"ingest_vs_plain": ingest_vs_plain, "release_vs_plain": release_vs_plain, "growth": growth,
         "synthesize": synthesize, "scale_release": scale_release, "simulate_hourly": simulate_hourly}
