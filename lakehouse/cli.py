"""``lakehouse``: the one command-line entry point.

Exit code 0 on success; on failure a one-line reason on stderr and a non-zero code (1 error,
2 usage, 3 privacy budget exhausted, 75 another run holds the lock).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.config import Config, ConfigError, default_config_path, load_config

if TYPE_CHECKING:  # the heavy modules load when a command needs them: `generate` starts no JVM
    from pyspark.sql import SparkSession

    from dp.budget import BudgetStatus
    from dp.release import ReleaseOutcome
    from lakehouse.azure import AzureSettings
    from lakehouse.lock import RunLease
from lakehouse import log
from lakehouse import periods as P
from lakehouse.errors import LakehouseError, redact, spark_message
from lakehouse.storage import Locations, is_url

DESCRIPTION = """\
dp-lakehouse: raw web-session events (Bronze) -> clean Delta sessions (Silver) ->
differentially private aggregates (Gold), on Apache Spark and Delta Lake.

Typical periodic job:   lakehouse run        (and daily: lakehouse maintain)
First look at results:  lakehouse sql "SELECT * FROM gold.sessions_per_continent"
"""

EPILOG = """\
Configuration: --conf FILE, else $LAKEHOUSE_CONF, else ./conf/local.toml, else the built-in
defaults (identical to conf/local.toml: everything under ./lakehouse-data).
Secrets come from the environment only: LAKEHOUSE_PSEUDONYM_KEY (the HMAC key for user_id),
AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY (Azure storage).
Set LAKEHOUSE_DEBUG=1 to see Python tracebacks.
"""


@dataclass
class Context:
    """What every command needs, built lazily: `generate` never starts a JVM, `upload` never Spark."""

    config: Config
    _spark: SparkSession | None = field(default=None, repr=False)
    _azure_ready: bool = False

    @property
    def loc(self) -> Locations:
        return Locations.from_config(self.config)

    @functools.cached_property
    def azure(self) -> AzureSettings | None:
        if self.config.azure is None:
            return None
        from lakehouse import azure

        return azure.AzureSettings.from_config(self.config)

    def _prepare_azure(self) -> None:
        """Credentials checked (and containers created if allowed) before any Spark work."""
        if self.azure is not None and not self._azure_ready:
            from lakehouse import azure

            loc = self.loc
            azure.prepare_containers(self.azure, [u for u in (loc.bronze, loc.silver, loc.gold) if is_url(u)])
            self._azure_ready = True

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            from lakehouse.spark import get_spark

            self._prepare_azure()
            spark = get_spark(self.config)
            if self.azure is not None:
                from lakehouse import azure

                azure.configure_spark(spark, self.azure)
            self._spark = spark
        return self._spark

    def lock(self) -> AbstractContextManager[RunLease]:
        """The lakehouse-wide writer lock: a renewed blob lease on Azure, a flock on local disk."""
        from lakehouse import lock

        self._prepare_azure()
        if is_url(self.loc.silver):
            from lakehouse import azure

            assert self.azure is not None, "remote storage needs an [azure] section"
            return azure.lease_lock(self.azure, self.loc.lock, lock.holder())
        return lock.local_lock(self.loc.lock)

    def require_lakehouse(self) -> None:
        """Read-only commands on a root that holds no lakehouse (a mistyped --root) say so and
        create nothing - rather than report an unspent budget or an empty table."""
        from lakehouse import catalog, readers

        loc = self.loc
        tables = [loc.silver_sessions, loc.release_audit, loc.privacy_ledger]
        if readers.local(*tables):
            found = any(readers.LocalReader().exists(t) for t in tables)
        else:
            found = any(catalog.table_exists(self.spark, t) for t in tables)
        if not found:
            raise LakehouseError(f"no lakehouse at {loc.root or loc.silver}: neither {loc.silver_sessions} nor "
                                 f"{loc.privacy_ledger} exists - check --root (or [storage] in {self.config.source}); "
                                 "`lakehouse run` creates a lakehouse")

    def require_bronze(self) -> None:
        """A local Bronze folder must exist before anything is created (a mistyped --root)."""
        bronze = self.loc.bronze
        if not is_url(bronze) and not Path(bronze).is_dir():
            raise LakehouseError(f"Bronze folder {bronze} does not exist: land event files there (`lakehouse "
                                 "generate` or `lakehouse upload`), point --bronze or --root at it, or run `lakehouse "
                                 "run --generate-if-empty N` for sample events")


# ------------------------------------------------------------------------------------------
# commands


def cmd_generate(args: argparse.Namespace, ctx: Context) -> int:
    from lakehouse.generate import generate

    out = args.out or ctx.loc.bronze
    if is_url(out):
        raise LakehouseError(f"generate writes local files and Bronze is {out}: pass --out DIR, then "
                             "`lakehouse upload DIR/*.jsonl`")
    start = args.start or dt.datetime.now(dt.UTC).date() - dt.timedelta(days=args.days)
    result = generate(out, args.sessions, files=args.files, seed=args.seed, start=start, days=args.days,
                      duplicate_rate=args.duplicate_rate, bad_rate=args.bad_rate, gzip_output=args.gzip)
    print(result.summary())
    print(f"into {out}")
    return 0


def _ingest(ctx: Context, lease: RunLease, counts: bool = False) -> None:
    from streaming.idle import nothing_to_ingest

    result = nothing_to_ingest(ctx.loc)  # a local Bronze with nothing new: no JVM, no stream
    if result is None:
        from streaming.ingest import ingest

        result = ingest(ctx.spark, ctx.config, ctx.loc, show_counts=counts, lease=lease)
    print(result.summary(counts=counts))


def cmd_ingest(args: argparse.Namespace, ctx: Context) -> int:
    ctx.require_bronze()
    with ctx.lock() as lease:
        _ingest(ctx, lease, counts=args.counts)
    return 0


def _release(ctx: Context, lease: RunLease, now: dt.datetime | None = None, silver_version: int | None = None,
             period: dt.date | None = None, counts: bool = False) -> ReleaseOutcome:
    from dp.idle import idle_release
    from dp.release import release_dp_metrics

    # a local lakehouse with nothing to release (between two period closes): answered without a JVM
    outcome = idle_release(ctx.config, ctx.loc, now) if silver_version is None else None
    if outcome is None:
        outcome = release_dp_metrics(ctx.spark, ctx.config, ctx.loc, silver_version=silver_version, now=now,
                                     lease=lease, period=period)
    print(outcome.summary())
    if counts:
        for period_start, n in sorted(outcome.rows_in.items(), key=lambda kv: kv[0] or dt.date.min):
            print(f"rows in {period_start or 'release'}: {n}")
        for period_start, n in sorted(outcome.rows_late.items()):
            print(f"rows late for {period_start}: {n} (not in any release; `lakehouse reprocess --period` re-releases)")
    return outcome


def cmd_release(args: argparse.Namespace, ctx: Context) -> int:
    ctx.require_lakehouse()
    with ctx.lock() as lease:
        _release(ctx, lease, now=args.now, counts=args.counts)
    return 0


def cmd_reprocess(args: argparse.Namespace, ctx: Context) -> int:
    ctx.require_lakehouse()
    with ctx.lock() as lease:
        _release(ctx, lease, now=args.now, silver_version=args.silver_version, period=args.period, counts=args.counts)
    return 0


def _bronze_has_events(ctx: Context) -> bool:
    from streaming.bronze_files import local_scan

    if not Path(ctx.loc.bronze).is_dir():
        return False
    try:
        return bool(local_scan(ctx.loc.bronze)[0])
    except ValueError:  # folders linked twice: not an empty Bronze
        return True


SAMPLE_DAYS = 28


def cmd_run(args: argparse.Namespace, ctx: Context) -> int:
    if not args.generate_if_empty:
        ctx.require_bronze()
    with ctx.lock() as lease:
        if args.generate_if_empty:
            if is_url(ctx.loc.bronze):
                raise LakehouseError("--generate-if-empty works on a local Bronze folder only")
            if not _bronze_has_events(ctx):
                from lakehouse.generate import generate

                # the last SAMPLE_DAYS days before today (UTC): closed periods with a time series
                today = (args.now or dt.datetime.now(dt.UTC)).date()
                result = generate(ctx.loc.bronze, args.generate_if_empty, files=max(1, args.generate_if_empty // 20_000),
                                  seed=0, start=today - dt.timedelta(days=SAMPLE_DAYS), days=SAMPLE_DAYS,
                                  duplicate_rate=0.002, bad_rate=0.001)
                print(f"Bronze was empty: {result.summary()}")
        _ingest(ctx, lease, counts=args.counts)
        _release(ctx, lease, now=args.now, counts=args.counts)
    if args.show:
        _show_gold(ctx)
    return 0


SHOW_PERIODS = 14


def _show_gold(ctx: Context) -> None:
    from dp.plan import ReleaseKind
    from lakehouse import sql
    from lakehouse.config import Period

    spark, config = ctx.spark, ctx.config
    periodic = config.privacy.period != Period.NONE
    for metric in config.metrics:
        if periodic and metric.public_partitions is not None:
            # one row per period (the latest release of each), one column per partition
            keys = ", ".join(f"'{k}'" for k in metric.public_partitions)
            query = (f"SELECT * FROM (SELECT period_start, {metric.group_by}, round({metric.output}, 1) AS v FROM "
                     f"(SELECT *, max(release_id) OVER (PARTITION BY period_start) AS latest FROM {metric.table} "
                     f"WHERE kind != '{ReleaseKind.REPROCESS}') WHERE release_id = latest) "
                     f"PIVOT (first(v) FOR {metric.group_by} IN ({keys})) ORDER BY period_start DESC LIMIT {SHOW_PERIODS}")
            title = f"{metric.table}: {metric.output} per period (latest {SHOW_PERIODS})"
        else:
            latest = "max(period_start)" if periodic else "max(release_id)"
            column = "period_start" if periodic else "release_id"
            query = (f"SELECT * FROM {metric.table} WHERE {column} = (SELECT {latest} FROM {metric.table}) "
                     f"ORDER BY {metric.output} DESC LIMIT 20")
            title = f"{metric.table} ({'latest period' if periodic else 'latest release'})"
        print(f"\n== {title} ==")
        sql.run_query(spark, ctx.loc, query, "table", sys.stdout, quiet_missing=True)
    print("\n== gold.privacy_ledger (latest 12 rows) ==")
    sql.run_query(spark, ctx.loc, "SELECT * FROM gold.privacy_ledger ORDER BY release_id DESC, period_start DESC, "
                  "metric LIMIT 12", "table", sys.stdout, quiet_missing=True)
    print()
    print(_budget_status(ctx).summary())


def _budget_status(ctx: Context) -> BudgetStatus:
    """From the restricted record: with delta-rs for a local lakehouse (no JVM: under a second),
    through Spark for remote storage."""
    from dp import budget, staging
    from lakehouse import readers

    loc = ctx.loc
    gold = [loc.gold_table(m.name) for m in ctx.config.metrics]
    if readers.local(loc.silver, loc.gold):
        tables = readers.LocalReader()
        try:
            state = budget.read_state(tables, loc, gold, staging.local_staged_audit_rows(loc))
            return budget.status(state, ctx.config, len(budget.ledger_gap(tables, loc, state)))
        except budget.LOCAL_READ_ERRORS:  # what delta-rs cannot read, Spark reads
            pass
    spark_tables = readers.SparkReader(ctx.spark)
    state = budget.read_state(spark_tables, loc, gold, staging.staged_audit_rows(ctx.spark, loc))
    return budget.status(state, ctx.config, len(budget.ledger_gap(spark_tables, loc, state)))


def cmd_maintain(args: argparse.Namespace, ctx: Context) -> int:
    from dp.maintain import maintain

    ctx.require_lakehouse()
    with ctx.lock() as lease:
        for line in maintain(ctx.spark, ctx.config, ctx.loc, args.retain_hours, lease):
            print(line)
    return 0


def cmd_sql(args: argparse.Namespace, ctx: Context) -> int:
    from lakehouse import sql

    ctx.require_lakehouse()
    sql.run_query(ctx.spark, ctx.loc, args.query, args.format, sys.stdout, limit=args.limit)
    return 0


def cmd_budget(args: argparse.Namespace, ctx: Context) -> int:
    ctx.require_lakehouse()
    print(_budget_status(ctx).summary(recent=args.periods))
    return 0


def cmd_report(args: argparse.Namespace, ctx: Context) -> int:
    from lakehouse.report import write_report

    ctx.require_lakehouse()
    for path in write_report(ctx.spark, ctx.config, ctx.loc, args.out, compare_raw=args.compare_raw):
        print(path)
    return 0


def cmd_upload(args: argparse.Namespace, ctx: Context) -> int:
    from lakehouse import azure

    if ctx.azure is None:
        raise LakehouseError("upload needs an Azure config ([azure] section), e.g. --conf conf/azurite.toml")
    return azure.upload_files(ctx.azure, ctx.loc.bronze, args.files, prefix=args.prefix)


# ------------------------------------------------------------------------------------------
# parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def _timestamp(text: str) -> dt.datetime:
    """ISO 8601, as UTC; a time without an offset is UTC."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 timestamp such as 2026-11-30T14:00:00Z, got {text!r}") \
            from None
    return P.utc(value)


def _add_now(p: argparse.ArgumentParser) -> None:
    p.add_argument("--now", type=_timestamp, metavar="TIMESTAMP",
                   help="the time to release as of (ISO 8601, UTC unless an offset is given), instead of the wall "
                   "clock: for backfills, and for simulating a schedule")


def _add_counts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--counts", action="store_true",
                   help="also print exact row counts (restricted: not for logs that others read)")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="lakehouse", description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt)
    parser.add_argument("--conf", metavar="FILE", help="TOML config (default: $LAKEHOUSE_CONF or conf/local.toml)")
    parser.add_argument("--root", metavar="DIR_OR_URL", help="storage root: Silver, Gold and checkpoints live under it")
    parser.add_argument("--bronze", metavar="DIR_OR_URL", help="Bronze location (default: <root>/bronze)")
    parser.add_argument("--master", metavar="URL", help="Spark master, e.g. local[*] or spark://host:7077 "
                        "(default: [spark] master)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("generate", help="write sample GA-shaped session events (default: into Bronze)",
                       description="Write sample events shaped like the Google Analytics sample export, as JSON "
                       "Lines, in time order across files. Deterministic for a seed.", formatter_class=fmt)
    p.add_argument("--sessions", type=_positive_int, required=True, help="number of distinct sessions")
    p.add_argument("--files", type=_positive_int, default=1, help="number of files (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed; also part of the file names (default 0)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: the Bronze folder)")
    p.add_argument("--start", type=_date, help="first day, YYYY-MM-DD (default: --days days before today, UTC: "
                   "recent, closed days that a run releases as a time series)")
    p.add_argument("--days", type=_positive_int, default=SAMPLE_DAYS, help=f"days the sessions span (default {SAMPLE_DAYS})")
    p.add_argument("--duplicate-rate", type=float, default=0.002,
                   help="fraction of sessions delivered twice (default 0.002)")
    p.add_argument("--bad-rate", type=float, default=0.001, help="fraction of broken lines (default 0.001)")
    p.add_argument("--gzip", action="store_true", help="write .jsonl.gz files")
    p.set_defaults(handler=cmd_generate)

    p = sub.add_parser("ingest", help="availableNow stream: new Bronze files -> silver.sessions / silver.quarantine",
                       description="Ingest every Bronze file not yet processed (the stream checkpoint decides), "
                       "then stop. Prints the files read and the new Silver version (exact row counts with "
                       "--counts).", formatter_class=fmt)
    _add_counts(p)
    p.set_defaults(handler=cmd_ingest)

    release_text = (
        "What is released depends on [privacy]: with a period (day, week, month; the privacy unit is (user, "
        "period)), release = \"closed\" releases each period once, close_after_hours after it ends, over all its "
        "rows (periods without rows get noisy zeros); release = \"continual\" also publishes, at every run, DP "
        "running totals of the open periods (tree aggregation: the period's budget covers up to "
        "max_releases_per_period runs). With period = \"none\" each release covers the rows added since the last "
        "one (and spends nothing when there are none). Every spend is recorded in silver.release_audit and "
        "published to gold.privacy_ledger; a release that would pass epsilon_cap or delta_cap (per period) is "
        "refused with exit 3 and writes nothing.")
    p = sub.add_parser("release", help="DP release of what is due (closed periods, open periods, new rows) -> Gold",
                       description=release_text, formatter_class=fmt)
    _add_now(p)
    _add_counts(p)
    p.set_defaults(handler=cmd_release)

    p = sub.add_parser("run", help="ingest, then release: the periodic job",
                       description="The scheduled job: ingest new Bronze files, then release what is due. "
                       + release_text, formatter_class=fmt)
    p.add_argument("--generate-if-empty", type=_non_negative_int, default=0, metavar="N",
                   help=f"first generate N sample sessions over the last {SAMPLE_DAYS} days if the (local) Bronze "
                   "folder has no event files")
    p.add_argument("--show", action="store_true", help="print the latest Gold results, the ledger and the budget")
    _add_now(p)
    _add_counts(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("reprocess", help="DP release over Silver as of version N (Delta time travel)",
                       description="Release the configured DP metrics again over silver.sessions as of version N "
                       "(Delta time travel; kind 'reprocess'): with a period, every closed period (or only --period), "
                       "each spending its own period's budget once more against its cap - e.g. for sessions that "
                       "arrived after their period was released; with period \"none\", the whole table.",
                       formatter_class=fmt)
    p.add_argument("--silver-version", type=_non_negative_int, required=True, metavar="N",
                   help="the silver.sessions version to read (see `lakehouse sql \"DESCRIBE HISTORY silver.sessions\"`)")
    p.add_argument("--period", type=_date, metavar="YYYY-MM-DD", help="only the period holding this day")
    _add_now(p)
    _add_counts(p)
    p.set_defaults(handler=cmd_reprocess)

    p = sub.add_parser("maintain", help="compact small files and VACUUM old ones (schedule it daily or weekly)",
                       description="Compacts the small files months of hourly runs leave (OPTIMIZE) in Silver and Gold, "
                       "then removes files older than --retain-hours that no younger version needs (VACUUM): "
                       "`reprocess --silver-version` can time-travel only within that window. silver.release_audit "
                       "is left as written (its history must show appends only). Takes the run lock: it never runs "
                       "while a run does.", formatter_class=fmt)
    p.add_argument("--retain-hours", type=_positive_int, default=168, metavar="H",
                   help="keep files younger than H hours (default and least: 168, Delta's floor)")
    p.set_defaults(handler=cmd_maintain)

    p = sub.add_parser("sql", help="read-only Spark SQL over silver.* and gold.* (Delta time travel included)",
                       description="Run one read-only Spark SQL query: SELECT / WITH / SHOW / DESCRIBE / EXPLAIN over "
                       "silver.sessions, silver.quarantine, silver.release_audit, gold.<metric>, gold.privacy_ledger; "
                       "e.g. \"SELECT * FROM gold.sessions_per_continent VERSION AS OF 0\" or \"SHOW TABLES IN gold\". "
                       "Statements that write, alter, cache, set configuration or read a path (text.`/x`, "
                       "delta.`/x`) are refused before they run.", formatter_class=fmt)
    p.add_argument("query")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="table (default), csv with a header, or json: one object per line")
    p.add_argument("--limit", type=_positive_int, help="print at most this many rows")
    p.set_defaults(handler=cmd_sql)

    p = sub.add_parser("budget", help="privacy budget: what is protected, spent and left (per period)",
                       description="What the releases protect, in one sentence, and what they spent: per period (the "
                       "latest first) with a period, or over the lakehouse's life with period \"none\". Read from "
                       "silver.release_audit, the restricted record; says so if gold.privacy_ledger, its published "
                       "copy, is missing rows, and refuses if it holds rows the record does not.", formatter_class=fmt)
    p.add_argument("--periods", type=_positive_int, default=14, metavar="N", help="show the N latest periods (default 14)")
    p.set_defaults(handler=cmd_budget)

    p = sub.add_parser("report", help="PNG plots of Gold with noise error bars",
                       description="Plot the latest DP results with +-2 sigma error bars and their time series over "
                       "periods (or history across releases). --compare-raw adds a raw-vs-DP plot computed from Silver "
                       "(NOT private), written "
                       "to <root>/_restricted/ only.", formatter_class=fmt)
    p.add_argument("--out", metavar="DIR", help="output folder (default: <root>/reports)")
    p.add_argument("--compare-raw", action="store_true",
                   help="also plot raw (non-private) values from Silver, into <root>/_restricted/")
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser("upload", help="put event files into the Azure Bronze container (never overwrites)",
                       description="Upload local event files to the Bronze container with an MD5 check. Bronze is "
                       "immutable: a name that already exists is an error for that file; the others still "
                       "upload.", formatter_class=fmt)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--prefix", default="", help="folder inside the container (default: its root)")
    p.set_defaults(handler=cmd_upload)
    return parser


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # A container stop or a scheduler timeout sends SIGTERM; as PID 1 in a container Python would
    # otherwise ignore it. Exiting unwinds the run lock and stops Spark cleanly.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    # Every time the lakehouse keeps is UTC, and PySpark converts naive datetimes with the process's
    # local time zone (not spark.sql.session.timeZone): west of UTC, a released_at read back through
    # Spark would differ from delta-rs' by the offset, and the clock check would refuse for hours.
    os.environ["TZ"] = "UTC"
    time.tzset()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = os.environ.get("LAKEHOUSE_DEBUG") == "1"
    log.quiet_py4j(debug)
    try:
        config = load_config(args.conf or default_config_path())
        config = config.with_overrides(root=args.root, bronze=args.bronze, master=args.master)
        return args.handler(args, Context(config))
    except (LakehouseError, ConfigError) as exc:
        if debug:
            print(redact(traceback.format_exc()), file=sys.stderr)  # causes included, secrets not
        if not isinstance(exc, ConfigError):
            from lakehouse import jvm_process

            jvm_process.mark_failed()
        print(f"lakehouse: error: {redact(str(exc))}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except KeyboardInterrupt:
        print("lakehouse: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence: one line, no traceback
        if debug:
            print(redact(traceback.format_exc()), file=sys.stderr)  # causes included, secrets not
        from pyspark import SparkContext
        from pyspark.errors import PySparkException

        from lakehouse import jvm_process

        jvm_process.mark_failed()
        died = jvm_process.death_message(SparkContext._gateway) if SparkContext._gateway is not None else None
        if died:
            print(f"lakehouse: error: {died}", file=sys.stderr)
            return 1
        kind = "Spark" if isinstance(exc, PySparkException) else type(exc).__name__
        spark_log = jvm_process.log_path()
        hint = ("" if debug else " (LAKEHOUSE_DEBUG=1 shows the traceback"
                + (f"; Spark's log: {spark_log})" if spark_log else ")"))
        print(f"lakehouse: error: {kind}: {redact(spark_message(exc))}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
