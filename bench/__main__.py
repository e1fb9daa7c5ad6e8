"""`make bench`: is the lakehouse as fast as plain Spark, and does a run cost what its new data costs?

Generates its data (BENCH_SESSIONS sessions, default 1M), runs every measurement in this one
command (each task in its own process, JVM start-up excluded, median of BENCH_REPS runs), prints a
table of ratios against their targets and writes bench/results/latest.json.

    BENCH_SESSIONS=1000000 BENCH_LARGE_SESSIONS=5000000 BENCH_INCREMENT=10000 BENCH_REPS=3
    BENCH_REFERENCE=1   also time PipelineDP's SparkRDDBackend engine once (about a minute)
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

from lakehouse.generate import generate

REPO = Path(__file__).resolve().parent.parent
BASE_END = dt.date(2016, 8, 1)  # the base data ends here; increments follow it
TARGETS = {  # figure -> (limit, what it means)
    "ingest_vs_plain_spark": (1.5, "lakehouse ingest / plain Spark JSON->Parquet, same files"),
    "ingest_growth_5x": (1.3, "ingest of one fixed increment: 5x Silver / 1x Silver"),
    "release_vs_plain_aggregate": (3.0, "lakehouse release / plain groupBy of the same statistics"),
    "release_growth_5x": (1.3, "release of one fixed increment: 5x Silver / 1x Silver"),
    "release_peak_rss_mb": (1500.0, "peak RSS of the release's process tree (JVM included), MB"),
    "ingest_peak_rss_mb": (None, "peak RSS of the ingest's process tree (JVM included), MB"),
}
# Lower bounds, measured in the same run: the steps any implementation of the contract must take
# (bench.tasks.ingest_floor, release_floor), timed against the same baseline. A floor over its
# target means no implementation on this machine can meet that target.
FLOORS = {  # floor figure -> (the figure it bounds, what it times)
    "ingest_floor_vs_plain_spark": ("ingest_vs_plain_spark",
                                    "floor: text + from_json + HMAC -> Delta, no checks or dedupe / plain"),
    "release_floor_vs_plain_aggregate": ("release_vs_plain_aggregate",
                                         "floor: rows counted per user and partition + one commit per table / plain"),
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
    warmup = ensure("warmup", sessions=min(2_000, sessions), seed=100, start=BASE_END, days=1)
    increments = [ensure(f"increment-{increment}-{i}", sessions=increment, seed=101 + i,
                         start=BASE_END + dt.timedelta(days=2 + 2 * i), days=2) for i in range(n_increments)]
    one_file = lambda folder: str(next(folder.glob("*.jsonl")))  # noqa: E731
    return {"base": str(base), "warmup_dir": str(warmup), "warmup_file": one_file(warmup),
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


def figures(ingest: dict, release: dict, small: dict, large: dict) -> dict:
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
    if "reference" in release:
        out["reference_engine_release_s"] = release["reference"]["median_s"]
        out["reference_vs_plain_aggregate"] = release["reference"]["median_s"] / release["plain"]["median_s"]
        out["reference_peak_rss_mb"] = release["reference_peak_rss_mb"]
    return {k: round(v, 3) for k, v in out.items()}


def table(figs: dict) -> str:
    lines = [f"{'figure':34} {'value':>10} {'target':>10}  verdict  meaning", "-" * 110]
    for name, value in figs.items():
        if name in FLOORS:  # a floor is held against the target of the figure it bounds
            bounds, meaning = FLOORS[name]
            limit = TARGETS[bounds][0]
            verdict = "below" if value <= limit else "ABOVE"
        else:
            limit, meaning = TARGETS.get(name, (None, ""))
            verdict = "" if limit is None else ("ok" if value <= limit else "MISSED")
        target = f"<= {limit:g}" if limit is not None else ""
        lines.append(f"{name:34} {value:>10.3f} {target:>10}  {verdict:7}  {meaning}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition: checks the bench runs")
    parser.add_argument("--in-process", action="store_true", help="run the tasks in this process's Spark session")
    parser.add_argument("--data", type=Path, default=REPO / "bench" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "latest.json")
    args = parser.parse_args(argv)
    sessions = 3_000 if args.smoke else _env_int("BENCH_SESSIONS", 1_000_000)
    large = 5 * sessions if args.smoke else _env_int("BENCH_LARGE_SESSIONS", 5 * sessions)
    increment = 300 if args.smoke else _env_int("BENCH_INCREMENT", 10_000)
    reps = 1 if args.smoke else _env_int("BENCH_REPS", 3)
    reference = not args.smoke and os.environ.get("BENCH_REFERENCE", "1") == "1"

    started = time.perf_counter()
    data = prepare_data(args.data, sessions, increment, reps)
    work = args.data / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ingest = run_task("ingest_vs_plain", {"bronze": data["base"], "warmup_bronze": data["warmup_dir"],
                                          "work": str(work / "ingest"), "reps": reps}, args.in_process)
    release = run_task("release_vs_plain", {"silver_root": ingest["silver_root"], "work": str(work / "release"),
                                            "reps": reps, "reference": reference}, args.in_process)
    growth = {rows: run_task("growth", {"silver_rows": rows, "increments": data["increments"],
                                        "warmup": data["warmup_file"], "end": BASE_END.isoformat(),
                                        "work": str(work / "growth")}, args.in_process)
              for rows in (sessions, large)}
    figs = figures(ingest, release, growth[sessions], growth[large])
    print(table(figs))
    report = {
        "figures": figs,
        "targets": {k: v[0] for k, v in TARGETS.items()},
        "floors": {k: v[0] for k, v in FLOORS.items()},
        "params": {"sessions": sessions, "large_sessions": large, "increment": increment, "reps": reps},
        "raw": {"ingest_vs_plain": ingest, "release_vs_plain": release, "growth": growth},
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
