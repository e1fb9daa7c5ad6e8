"""`make bench`: is the lakehouse as fast as plain Spark, and does a run cost what its new data costs?

Generates its data (BENCH_SESSIONS sessions, default 1M), runs every measurement in this one
command (each task in its own process, JVM start-up excluded, median of BENCH_REPS runs), prints a
table of ratios against their targets and writes bench/results/latest.json.

    BENCH_SESSIONS=1000000 BENCH_LARGE_SESSIONS=5000000 BENCH_INCREMENT=10000 BENCH_REPS=3
    BENCH_REFERENCE=1   also time PipelineDP's SparkRDDBackend engine once (about a minute)
    BENCH_HOURLY_DAYS=60   days of hourly runs simulated (bench.hourly; about 50 s a day)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.cold import cold_runs, hourly_cold_runs, write_conf
from lakehouse.generate import generate

REPO = Path(__file__).resolve().parent.parent
BASE_END = dt.date(2016, 8, 1)  # the base data ends here; increments follow it
HOURLY_SESSIONS = 120  # an hour's sessions at the bench's 1M a year
TARGETS = {  # figure -> (limit, what it means)
    "cold_run_idle_vs_spark_start": (1.3, "fresh-process `lakehouse run`, nothing new / fresh-process Spark start"),
    "cold_run_increment_vs_spark_start": (2.0, "fresh-process `run` with one increment onto 1x Silver / Spark start"),
    "release_vs_reference": (0.10, "release / PipelineDP's SparkRDDBackend engine, same rows, same run"),
    "release_vs_floor": (1.5, "release / the release floor, same run"),
    "ingest_vs_floor": (1.5, "ingest / the ingest floor, same run"),
    "release_10x_vs_1x": (10.0, "release of all of a 10x synthesized Silver / of a 1x one"),
    "release_10x_peak_rss_mb": (2000.0, "peak RSS of the 10x release's process tree (JVM included), MB"),
    "release_peak_rss_mb": (1500.0, "peak RSS of the release's process tree (JVM included), MB"),
    "ingest_growth_5x": (1.3, "ingest of one fixed increment: 5x Silver / 1x Silver"),
    "release_growth_5x": (1.3, "release of one fixed increment: 5x Silver / 1x Silver"),
    "run_after_1440_runs_vs_first": (1.3, "a cold hourly run after 60 days of hourly runs / the same on day 1"),
    # the first targets, against plain baselines: printed for the record
    "ingest_vs_plain_spark": (None, "lakehouse ingest / plain Spark JSON->Parquet, same files"),
    "release_vs_plain_aggregate": (None, "lakehouse release / plain groupBy of the same statistics"),
    "ingest_peak_rss_mb": (None, "peak RSS of the ingest's process tree (JVM included), MB"),
    "cold_run_increment_vs_cold_floor": (None, "fresh-process `run` with one increment / the cold floor, same files"),
}
# Lower bounds, measured in the same run: the steps any implementation of the contract must take
# (bench.floors), timed against the same baseline.
FLOORS = {  # floor figure -> what it times
    "ingest_floor_vs_plain_spark": "floor: text + from_json + HMAC -> Delta, no checks or dedupe / plain",
    "release_floor_vs_plain_aggregate": "floor: rows counted per user and partition + one commit per table / plain",
    "cold_floor_vs_spark_start": "floor: fresh process, the increment through both floors onto a Silver copy / start",
}


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def prepare_data(data: Path, sessions: int, increment: int, n_increments: int) -> dict:
    """Bronze files, generated once per size and kept under bench/data (git-ignored)."""
    def ensure(name: str, **kwargs) -> Path:
        folder = data / name
        stamp = folder / ".complete"
        if not stamp.exists():
            shutil.rmtree(folder, ignore_errors=True)
            started = time.perf_counter()
            result = generate(folder, **kwargs)
            print(f"  generated {name}: {result.summary()} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            stamp.write_text(json.dumps(kwargs, default=str))
        return folder

    base = ensure(f"bronze-{sessions}", sessions=sessions, files=max(1, sessions // 50_000), seed=1,
                  start=BASE_END - dt.timedelta(days=365), days=365, duplicate_rate=0.002, bad_rate=0.001)
    # The growth task's untimed increment: enough lines for the JIT to compile the ingest's hot paths
    # before anything is timed (after a warm-up of 2k lines the first timed 1M-line ingest took 32 s,
    # the next ones 22 and 20 s).
    warmup_sessions = min(50_000, sessions)
    warmup = ensure(f"warmup-{warmup_sessions}", sessions=warmup_sessions, seed=100, start=BASE_END, days=1)
    increments = [ensure(f"increment-{increment}-{i}", sessions=increment, seed=101 + i,
                         start=BASE_END + dt.timedelta(days=2 + 2 * i), days=2) for i in range(n_increments)]
    one_file = lambda folder: str(next(folder.glob("*.jsonl")))  # noqa: E731
    return {"base": str(base), "warmup_file": one_file(warmup),
            "increments": [one_file(f) for f in increments]}


def run_task(task: str, params: dict, in_process: bool) -> dict:
    print(f"== {task} {params.get('silver_rows', '')}", file=sys.stderr, flush=True)
    if in_process:  # the smoke test: same code, the test's Spark session
        from pyspark.sql import SparkSession

        from bench.tasks import TASKS

        return json.loads(json.dumps(TASKS[task](SparkSession.getActiveSession(), **params)))
    env = {**os.environ, "LAKEHOUSE_PSEUDONYM_KEY": os.environ.get("LAKEHOUSE_PSEUDONYM_KEY", "bench-only-key")}
    proc = subprocess.run([sys.executable, "-m", "bench.worker", task, json.dumps(params)], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench task {task} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def scale_releases(work: Path, sessions: int, reps: int, in_process: bool) -> dict:
    """The release of all of a synthesized 1x and 10x Silver: each Silver synthesized by a process of
    its own, each size released by another (warmed up on a small Silver first), as a scheduled job
    would run it; each Silver removed after (10x is about a gigabyte)."""
    end = BASE_END.isoformat()
    warmup = str(work / "warmup")
    run_task("synthesize", {"silver_rows": max(1, sessions // 10), "end": end, "root": warmup}, in_process)
    out: dict = {}
    for label, rows in (("1x", sessions), ("10x", 10 * sessions)):
        root = str(work / f"silver{rows}")
        run_task("synthesize", {"silver_rows": rows, "end": end, "root": root}, in_process)
        result = run_task("scale_release", {"root": root, "warmup_root": warmup, "reps": reps}, in_process)
        out[label], out[f"{label}_peak_rss_mb"] = result["release"], result["peak_rss_mb"]
        shutil.rmtree(root)
    shutil.rmtree(warmup)
    return out


def hourly_runs(work: Path, data: Path, days: int, runs_per_day: int, reps: int, in_process: bool) -> dict:
    """Day 1 and day `days` of hourly runs up to yesterday (UTC), each lakehouse simulated by a
    process of its own (bench.hourly), then `reps` cold runs on each with one more hour's file."""
    if days < 2:
        raise SystemExit(f"BENCH_HOURLY_DAYS={days}: at least 2 (day 1 is the baseline)")
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date()
    out: dict = {}
    for label, n in (("day_1", 1), (f"day_{days}", days)):
        out[label] = run_task("simulate_hourly", {
            "root": str(work / f"day{n}"), "days": n, "runs_per_day": runs_per_day,
            "sessions_per_run": HOURLY_SESSIONS, "last_day": yesterday.isoformat()}, in_process)
    if in_process:  # the smoke test: the simulation only (cold runs need fresh processes)
        return out
    increments = []
    for i in range(reps):  # an hour's sessions of today, the open period, as each further run brings
        folder = data / f"hourly-{yesterday}-{i}"
        shutil.rmtree(folder, ignore_errors=True)
        generate(folder, sessions=HOURLY_SESSIONS, seed=1000 + i, start=yesterday + dt.timedelta(days=1), days=1)
        increments.append(str(next(folder.glob("*.jsonl"))))
    print("== cold hourly runs (fresh processes)", file=sys.stderr, flush=True)
    out["cold"] = hourly_cold_runs({label: Path(out[label]["root"]) for label in ("day_1", f"day_{days}")},
                                   increments, reps)
    return out


def figures(ingest_vs_plain: dict, release_vs_plain: dict, growth: dict, cold: dict, scale: dict) -> dict:
    ingest, release = ingest_vs_plain, release_vs_plain
    small, large = (growth[rows] for rows in sorted(growth))
    out = {
        "ingest_vs_plain_spark": ingest["ingest"]["median_s"] / ingest["plain"]["median_s"],
        "ingest_floor_vs_plain_spark": ingest["floor"]["median_s"] / ingest["plain"]["median_s"],
        "ingest_growth_5x": large["ingest"]["median_s"] / small["ingest"]["median_s"],
        "release_vs_plain_aggregate": release["release"]["median_s"] / release["plain"]["median_s"],
        "release_floor_vs_plain_aggregate": release["floor"]["median_s"] / release["plain"]["median_s"],
        "release_growth_5x": large["release"]["median_s"] / small["release"]["median_s"],
        "release_peak_rss_mb": release["release_peak_rss_mb"],
        "ingest_peak_rss_mb": ingest["ingest_peak_rss_mb"],
        "ingest_s": ingest["ingest"]["median_s"], "plain_json_to_parquet_s": ingest["plain"]["median_s"],
        "ingest_floor_s": ingest["floor"]["median_s"],
        "release_s": release["release"]["median_s"], "plain_aggregate_s": release["plain"]["median_s"],
        "release_floor_s": release["floor"]["median_s"],
        "ingest_increment_on_1x_s": small["ingest"]["median_s"], "ingest_increment_on_5x_s": large["ingest"]["median_s"],
        "release_increment_on_1x_s": small["release"]["median_s"],
        "release_increment_on_5x_s": large["release"]["median_s"],
    }
    out["release_vs_floor"] = release["release"]["median_s"] / release["floor"]["median_s"]
    out["ingest_vs_floor"] = ingest["ingest"]["median_s"] / ingest["floor"]["median_s"]
    if "reference" in release:
        out["reference_engine_release_s"] = release["reference"]["median_s"]
        out["release_vs_reference"] = release["release"]["median_s"] / release["reference"]["median_s"]
        out["reference_peak_rss_mb"] = release["reference_peak_rss_mb"]
    if cold:
        start = cold["spark_start"]["median_s"]
        out["cold_run_idle_vs_spark_start"] = cold["idle_run"]["median_s"] / start
        out["cold_run_increment_vs_spark_start"] = cold["increment_run"]["median_s"] / start
        out["cold_floor_vs_spark_start"] = cold["cold_floor"]["median_s"] / start
        out["cold_run_increment_vs_cold_floor"] = cold["increment_run"]["median_s"] / cold["cold_floor"]["median_s"]
        out.update(spark_start_s=start, cold_run_idle_s=cold["idle_run"]["median_s"],
                   cold_floor_s=cold["cold_floor"]["median_s"], cold_run_increment_s=cold["increment_run"]["median_s"])
    if scale:
        out["release_10x_vs_1x"] = scale["10x"]["median_s"] / scale["1x"]["median_s"]
        out["release_10x_peak_rss_mb"] = scale["10x_peak_rss_mb"]
        out.update(release_synth_1x_s=scale["1x"]["median_s"], release_synth_10x_s=scale["10x"]["median_s"])
    return {k: round(v, 3) for k, v in out.items()}


def hourly_figures(hourly: dict) -> dict:
    if "cold" not in hourly:
        return {}
    first, last = (hourly["cold"][label]["median_s"] for label in hourly["cold"])
    return {"run_after_1440_runs_vs_first": round(last / first, 3), "hourly_run_day_1_s": round(first, 3),
            f"hourly_run_{list(hourly['cold'])[1]}_s": round(last, 3)}


def table(figs: dict) -> str:
    lines = [f"{'figure':34} {'value':>10} {'target':>10}  verdict  meaning", "-" * 110]
    for name, (limit, meaning) in TARGETS.items():
        value = figs.get(name)
        shown = "-" if value is None else f"{value:.3f}"
        verdict = "" if limit is None else ("not run" if value is None else "ok" if value <= limit else "MISSED")
        target = f"<= {limit:g}" if limit is not None else ""
        lines.append(f"{name:34} {shown:>10} {target:>10}  {verdict:7}  {meaning}")
    for name, meaning in FLOORS.items():
        if name in figs:
            lines.append(f"{name:34} {figs[name]:>10.3f} {'':>10}  {'':7}  {meaning}")
    lines.append("seconds: " + ", ".join(f"{k} {v:g}" for k, v in figs.items() if k.endswith("_s")))
    return "\n".join(lines)


def measure(args: argparse.Namespace, work: Path, sessions: int, large: int, increment: int, reps: int,
            reference: bool) -> dict:
    """Every task but the hourly simulation, in order; the raw results by name."""
    data = prepare_data(args.data, sessions, increment, 2 * reps)  # half for the growth task, half for cold runs
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ingest = run_task("ingest_vs_plain", {"bronze": data["base"], "work": str(work / "ingest"), "reps": reps},
                      args.in_process)
    release = run_task("release_vs_plain", {"silver_root": ingest["silver_root"], "work": str(work / "release"),
                                            "reps": reps, "reference": reference}, args.in_process)
    growth = {int(rows): result for rows, result in run_task(
        "growth", {"silver_rows": [sessions, large], "increments": data["increments"][:reps],
                   "warmup": data["warmup_file"], "end": BASE_END.isoformat(), "work": str(work / "growth")},
        args.in_process).items()}
    cold: dict = {}
    if not args.in_process:  # fresh processes, timed from outside (the smoke test runs in its session)
        root = work / "growth" / f"silver{sessions}"  # the 1x lakehouse the growth task left
        print("== cold runs (fresh processes)", file=sys.stderr, flush=True)
        cold = cold_runs(write_conf(work / "cold.toml", root), root / "bronze", data["increments"][reps:], reps)
    scale = scale_releases(work / "scale", sessions, 1 if args.smoke else _env_int("BENCH_SCALE_REPS", 1),
                           args.in_process)
    return {"ingest_vs_plain": ingest, "release_vs_plain": release, "growth": growth, "cold": cold, "scale": scale}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition: checks the bench runs")
    parser.add_argument("--in-process", action="store_true", help="run the tasks in this process's Spark session")
    parser.add_argument("--only", choices=["hourly", "main"],
                        help="hourly: only the simulation of months of hourly runs and its cold runs (~1 h); "
                             "main: everything else (~20 min)")
    parser.add_argument("--data", type=Path, default=REPO / "bench" / "data")
    parser.add_argument("--out", type=Path, help="default bench/results/latest.json (with --only: <part>.json)")
    args = parser.parse_args(argv)
    args.out = args.out or REPO / "bench" / "results" / f"{args.only or 'latest'}.json"
    sessions = 3_000 if args.smoke else _env_int("BENCH_SESSIONS", 1_000_000)
    large = 5 * sessions if args.smoke else _env_int("BENCH_LARGE_SESSIONS", 5 * sessions)
    increment = 300 if args.smoke else _env_int("BENCH_INCREMENT", 10_000)
    reps = 1 if args.smoke else _env_int("BENCH_REPS", 3)
    reference = not args.smoke and os.environ.get("BENCH_REFERENCE", "1") == "1"

    started = time.perf_counter()
    work = args.data / "work"
    hourly_days = 2 if args.smoke else _env_int("BENCH_HOURLY_DAYS", 60)
    if args.only == "hourly":
        shutil.rmtree(work / "hourly", ignore_errors=True)
        parts: dict = {}
        figs = hourly_figures(hourly := hourly_runs(work / "hourly", args.data, hourly_days, 24, reps, args.in_process))
    else:
        parts = measure(args, work, sessions, large, increment, reps, reference)
        hourly = {} if args.only == "main" else hourly_runs(work / "hourly", args.data, hourly_days,
                                                            2 if args.smoke else 24, reps, args.in_process)
        figs = {**figures(**parts), **hourly_figures(hourly)}
    print(table(figs))
    report = {
        "figures": figs,
        "targets": {k: v[0] for k, v in TARGETS.items()},
        "floors": FLOORS,
        "params": {"sessions": sessions, "large_sessions": large, "increment": increment, "reps": reps},
        "raw": {**parts, "hourly": hourly},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "wall_s": round(time.perf_counter() - started, 1),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {args.out} ({report['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
