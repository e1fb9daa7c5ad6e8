"""The DP release: Silver rows added since the last release -> Gold, with ledger and budget.

A release must never be half-published and never be computed twice with fresh noise, whatever
point it is killed at. Delta has no multi-table transactions, so a release is written like a
write-ahead log:

1. **compute** the DP results in memory (nothing written: a crash here loses nothing and spends
   nothing, because no noisy value left the process);
2. **stage**: one file, ``<silver>/_release_staging/release-<id>.json``, written under a temporary
   name and renamed, holds every Gold row and ledger row of the release (restricted, beside
   Silver) - the release now exists, atomically;
3. **publish**: append the staged rows to ``gold.privacy_ledger`` first, then to the Gold metric
   tables (in parallel), so the ledger always accounts for every Gold row. Re-publishing after a
   crash first asks each table whether it already holds the release's rows (a Delta commit is
   atomic: all of them or none) and appends only where it does not, so nothing is written twice;
4. **mark** it published: ``release-<id>.published``.

Every release command first re-publishes staged releases that were not marked published, with
the values computed the first time (no new noise, no new spend).
"""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dp import engine_pipelinedp, engine_spark
from dp import metrics as dp_metrics
from dp.ledger import fits_cap, read_ledger
from dp.noise import MetricResult
from lakehouse import catalog, failpoints, fs
from lakehouse.config import Config
from lakehouse.errors import BudgetExceeded, LakehouseError
from lakehouse.log import progress
from lakehouse.storage import Locations, join

LEDGER = "gold.privacy_ledger"
ENGINES = {"spark": engine_spark.release_metrics, "pipelinedp": engine_pipelinedp.release_metrics}


@dataclass
class ReleaseOutcome:
    release_id: int | None = None
    kind: str = "incremental"
    version_from: int = -1
    version_to: int = -1
    rows_in: int = 0
    tables: dict[str, int] = field(default_factory=dict)  # Gold table -> rows appended
    spend: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric -> (epsilon, delta)
    recovered: list[int] = field(default_factory=list)
    epsilon_spent_total: float = 0.0
    epsilon_cap: float = 0.0
    message: str = ""

    def summary(self) -> str:
        lines = [f"recovered release {r}: published the results staged before a crash" for r in self.recovered]
        if self.release_id is None:
            lines.append(self.message)
        else:
            lines.append(f"release {self.release_id} ({self.kind}): silver.sessions versions "
                         f"{self.version_from}..{self.version_to}, {self.rows_in} rows in")
            for metric, (eps, delta) in self.spend.items():
                table = f"gold.{metric}"
                lines.append(f"  {table}: {self.tables.get(table, 0)} rows, epsilon {eps:.6g}, delta {delta:.6g}")
        lines.append(f"epsilon spent: {self.epsilon_spent_total:.6g} of {self.epsilon_cap:.6g} "
                     f"({max(0.0, self.epsilon_cap - self.epsilon_spent_total):.6g} remaining)")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# staging and publishing

Tables = dict[str, tuple[T.StructType, list[tuple]]]  # qualified table name -> (schema, rows)


_STAGED_PREFIX = "release-"


def _staged_file(loc: Locations, release_id: int, suffix: str = "json") -> str:
    return join(loc.release_staging, f"{_STAGED_PREFIX}{release_id:010d}.{suffix}")


def _staged_releases(spark: SparkSession, loc: Locations) -> dict[int, bool]:
    """release id -> published?, for every release ever staged (a directory listing)."""
    names = set(fs.list_names(spark, loc.release_staging))
    return {int(n.removeprefix(_STAGED_PREFIX).removesuffix(".json")): n.replace(".json", ".published") in names
            for n in names if n.startswith(_STAGED_PREFIX) and n.endswith(".json")}


def _json_default(value):
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(type(value))


def _stage(spark: SparkSession, loc: Locations, release_id: int, tables: Tables, epsilon: float) -> None:
    """One file holding the whole release: it exists entirely or not at all."""
    body = {"release_id": release_id, "epsilon": epsilon,
            "tables": {t: {"schema": schema.jsonValue(), "rows": [list(r) for r in rows]}
                       for t, (schema, rows) in tables.items() if rows}}
    fs.write_text_atomically(spark, _staged_file(loc, release_id), json.dumps(body, default=_json_default))


def _read_staged(spark: SparkSession, loc: Locations, release_id: int) -> dict:
    return json.loads(fs.read_text(spark, _staged_file(loc, release_id)))


def _staged_tables(spark: SparkSession, loc: Locations, release_id: int) -> Tables:
    tables: Tables = {}
    for table, body in _read_staged(spark, loc, release_id)["tables"].items():
        schema = T.StructType.fromJson(body["schema"])
        timestamps = [isinstance(f.dataType, T.TimestampType) for f in schema.fields]
        rows = [tuple(dt.datetime.fromisoformat(v) if ts and v is not None else v for v, ts in zip(row, timestamps))
                for row in body["rows"]]
        tables[table] = (schema, rows)
    return tables


def _publish(spark: SparkSession, loc: Locations, release_id: int, tables: Tables,
             recovering: bool = False) -> dict[str, int]:
    """Appends a staged release to the ledger, then to the Gold tables (concurrently: they are
    independent), then marks it published. When recovering from a crash, tables that already hold
    the release are skipped. (Not Delta's txnAppId: checking it rebuilds each table's snapshot
    state, ~0.8 s per table per release, to guard against something only a crash can cause.)"""
    def append(table: str) -> None:
        schema, rows = tables[table]
        path = loc.table_path(table)
        # a metric whose partition selection kept nothing has no rows to publish
        if rows and not (recovering and catalog.holds_rows(spark, path, F.col("release_id") == release_id)):
            spark.createDataFrame(rows, schema).write.format("delta").mode("append").save(path)
        failpoints.reached("release-after-ledger" if table == LEDGER else f"release-after-{table}")

    append(LEDGER)  # first, always: the ledger accounts for every Gold row
    gold = sorted(t for t in tables if t != LEDGER)
    with ThreadPoolExecutor(max_workers=max(1, len(gold))) as pool:
        for future in [pool.submit(append, t) for t in gold]:
            future.result()
    fs.write_text_atomically(spark, _staged_file(loc, release_id, "published"),
                             dt.datetime.now(dt.timezone.utc).isoformat())
    return {t: len(rows) for t, (_, rows) in tables.items()}


def recover_pending(spark: SparkSession, loc: Locations, staged: dict[int, bool]) -> list[int]:
    """Publishes staged releases a crash left unpublished, with the values computed back then."""
    pending = sorted(r for r, published in staged.items() if not published)
    for release_id in pending:
        progress(f"release {release_id} was staged but not fully published (crash?): publishing it now")
        _publish(spark, loc, release_id, _staged_tables(spark, loc, release_id), recovering=True)
    return pending


def pending_epsilon(spark: SparkSession, loc: Locations) -> float:
    """Epsilon of staged releases not yet published: already spent, the next run publishes them."""
    return sum(_read_staged(spark, loc, r)["epsilon"] for r, published in _staged_releases(spark, loc).items()
               if not published)


# ------------------------------------------------------------------------------------------
# reading Silver


def silver_history(spark: SparkSession, path: str) -> list[tuple[int, int]]:
    """(version, rows it inserted) per commit of silver.sessions, from Delta's commit metrics: no
    data is read."""
    history = DeltaTable.forPath(spark, path).history().select("version", "operationMetrics").collect()
    return [(h["version"], int((h["operationMetrics"] or {}).get("numTargetRowsInserted")
                               or (h["operationMetrics"] or {}).get("numOutputRows") or 0)) for h in history]


def silver_increment(spark: SparkSession, path: str, version_from: int, version_to: int) -> DataFrame:
    """The rows versions [from, to] added, from the change data feed (only their files are read)."""
    return (spark.read.format("delta").option("readChangeFeed", "true")
            .option("startingVersion", version_from).option("endingVersion", version_to).load(path)
            .where(F.col("_change_type") == "insert")
            .drop("_change_type", "_commit_version", "_commit_timestamp"))


# ------------------------------------------------------------------------------------------
# the release


def _gold_rows(result: MetricResult, release_id: int, version: int, released_at: dt.datetime) -> list[tuple]:
    eps, delta = result.budget.epsilon, result.budget.delta
    rows = []
    for p in result.partitions:
        extra = (p.dp_count, p.approx_stddev) if result.budget.metric.kind == "MEAN" else ()
        rows.append((release_id, version, p.key, float(p.value), p.noise_stddev, *extra, eps, delta, released_at))
    return rows


def release_dp_metrics(spark: SparkSession, config: Config, loc: Locations,
                       silver_version: int | None = None) -> ReleaseOutcome:
    """Incremental release (silver_version None) or reprocessing of Silver as of silver_version."""
    privacy = config.privacy
    dp_metrics.validate(config.metrics, privacy)  # every parameter error before any Spark work
    outcome = ReleaseOutcome(kind="incremental" if silver_version is None else "reprocess",
                             epsilon_cap=privacy.epsilon_cap)
    if not catalog.is_delta_table(spark, loc.silver_sessions):
        raise LakehouseError(f"silver.sessions does not exist at {loc.silver_sessions}: run `lakehouse ingest` first")
    staged = _staged_releases(spark, loc)
    outcome.recovered = recover_pending(spark, loc, staged)
    state = read_ledger(spark, loc)
    outcome.epsilon_spent_total = state.epsilon_spent
    history = silver_history(spark, loc.silver_sessions)
    latest = max(version for version, _ in history)

    if silver_version is None:
        v_from, v_to = state.last_incremental_version + 1, latest
        if not any(rows for version, rows in history if v_from <= version <= v_to):
            outcome.message = (f"nothing to release: no rows added to silver.sessions since version "
                               f"{state.last_incremental_version} (latest {latest}); no budget spent")
            return outcome
    else:
        if silver_version > latest:
            raise LakehouseError(f"silver.sessions has versions 0..{latest}; --silver-version {silver_version} "
                                 "does not exist")
        v_from, v_to = 0, silver_version

    if not fits_cap(state.epsilon_spent, privacy.epsilon_per_release, privacy.epsilon_cap):
        raise BudgetExceeded(
            f"privacy budget exhausted: this release needs epsilon {privacy.epsilon_per_release:.6g} but "
            f"{state.epsilon_spent:.6g} of the cap {privacy.epsilon_cap:.6g} ([privacy] epsilon_cap) is spent; "
            "nothing was released or written")

    sessions = (silver_increment(spark, loc.silver_sessions, v_from, v_to) if silver_version is None else
                spark.read.format("delta").option("versionAsOf", silver_version).load(loc.silver_sessions))
    progress(f"release: DP over silver.sessions versions {v_from}..{v_to} (engine {privacy.engine}, "
             f"{privacy.noise_kind} noise)")
    results, outcome.rows_in = ENGINES[privacy.engine](sessions, config.metrics, privacy)
    if outcome.rows_in == 0:
        outcome.message = f"nothing to release: silver.sessions versions {v_from}..{v_to} hold no rows; no budget spent"
        return outcome

    release_id = max([state.last_release_id, *staged]) + 1
    released_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    tables: Tables = {LEDGER: (dp_metrics.LEDGER_SCHEMA, [])}
    for result in results:
        metric = result.budget.metric
        tables[metric.table] = (dp_metrics.gold_schema(metric), _gold_rows(result, release_id, v_to, released_at))
        tables[LEDGER][1].append((release_id, outcome.kind, metric.name, result.budget.epsilon, result.budget.delta,
                                  v_from, v_to, outcome.rows_in, released_at, privacy.noise_kind, privacy.engine))
        outcome.spend[metric.name] = (result.budget.epsilon, result.budget.delta)
    spent = sum(eps for eps, _ in outcome.spend.values())
    _stage(spark, loc, release_id, tables, spent)
    failpoints.reached("release-after-stage")
    outcome.tables = _publish(spark, loc, release_id, tables)
    outcome.release_id, outcome.version_from, outcome.version_to = release_id, v_from, v_to
    outcome.epsilon_spent_total = state.epsilon_spent + spent
    return outcome
