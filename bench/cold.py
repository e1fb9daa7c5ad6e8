"""What an hourly job pays per execution, each command a fresh process (JVM start included), timed
from outside like a scheduler would: `lakehouse run` with nothing new, `run` with one increment, and
the yardstick - a fresh process that only starts Spark with the same session config and answers
`SELECT 1` - and the cold floor: a fresh process that does the least such a run must
(bench.floors.cold_floor). `python -m bench.cold spark-start CONF` is the yardstick's process,
`python -m bench.cold cold-floor CONF INCREMENT WORK` the floor's."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lakehouse.config import load_config
from lakehouse.storage import Locations

REPO = Path(__file__).resolve().parent.parent


def write_conf(path: Path, root: Path) -> Path:
    """The bench's lakehouse as a config file (period "none", a cap the bench never reaches)."""
    path.write_text(f'[storage]\nroot = "{root}"\n\n[privacy]\nperiod = "none"\nepsilon_cap = 1000000.0\n')
    return path


def _timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def _env() -> dict[str, str]:
    return {**os.environ, "LAKEHOUSE_PSEUDONYM_KEY": os.environ.get("LAKEHOUSE_PSEUDONYM_KEY", "bench-only-key")}


def _lakehouse(conf: Path) -> list[str]:
    return [sys.executable, "-m", "lakehouse.cli", "--conf", str(conf)]


def _summary(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "runs_s": [round(t, 3) for t in times]}


def cold_runs(conf: Path, bronze: Path, increments: list[str], reps: int) -> dict:
    """Medians of `reps` fresh processes each: Spark start, an idle run, the cold floor of the
    next increment (on a copy of Silver as the run will find it), a run with that increment."""
    env, lakehouse = _env(), _lakehouse(conf)
    silver = Locations.from_config(load_config(str(conf))).silver_sessions
    floor_work = conf.parent / "cold-floor"
    start, idle, floor, increment = [], [], [], []
    _timed([*lakehouse, "run"], env)  # whatever the lakehouse holds unreleased: not a figure
    for i in range(reps):
        start.append(_timed([sys.executable, "-m", "bench.cold", "spark-start", str(conf)], env)[0])
        seconds, out = _timed([*lakehouse, "run"], env)
        assert "the stream was not started" in out and "nothing to release" in out, out
        idle.append(seconds)
        shutil.rmtree(floor_work, ignore_errors=True)
        shutil.copytree(silver, floor_work / "sessions")  # untimed: the floor appends to it
        floor.append(_timed([sys.executable, "-m", "bench.cold", "cold-floor", str(conf), increments[i],
                             str(floor_work)], env)[0])
        shutil.copy(increments[i], bronze / f"cold-{i}-{Path(increments[i]).name}")
        seconds, out = _timed([*lakehouse, "run"], env)
        assert "the stream was not started" not in out and "release " in out, out
        increment.append(seconds)
    shutil.rmtree(floor_work, ignore_errors=True)
    return {"spark_start": _summary(start), "idle_run": _summary(idle), "cold_floor": _summary(floor),
            "increment_run": _summary(increment)}


def hourly_cold_runs(roots: dict[str, Path], increments: list[str], reps: int) -> dict:
    """Medians of `reps` fresh-process runs on each lakehouse (label -> root), each run with one
    more hour's file, the lakehouses taking turns so that drift in the machine hits both alike."""
    env, times = _env(), {label: [] for label in roots}
    for i in range(reps):
        for label, root in roots.items():
            shutil.copy(increments[i], root / "bronze" / f"cold-{i}-{Path(increments[i]).name}")
            seconds, out = _timed([*_lakehouse(hourly_conf(root)), "run"], env)
            assert "the stream was not started" not in out, out
            times[label].append(seconds)
    return {label: _summary(t) for label, t in times.items()}


def hourly_conf(root: Path) -> Path:
    """A simulated hourly lakehouse's config: the embedded defaults (period "day", each day
    released once when it closes) on its own root."""
    path = root.parent / f"{root.name}.toml"
    path.write_text(f'[storage]\nroot = "{root}"\n')
    return path


def spark_start(conf: str) -> None:
    from lakehouse.spark import get_spark

    get_spark(load_config(conf)).sql("SELECT 1").collect()


def cold_floor_process(conf: str, increment: str, work: str) -> None:
    from bench.floors import cold_floor
    from lakehouse.spark import get_spark

    config = load_config(conf)
    cold_floor(get_spark(config), increment, str(Path(work) / "sessions"), Path(work) / "gold", config.metrics)


if __name__ == "__main__":
    if sys.argv[1] == "spark-start":
        spark_start(sys.argv[2])
    else:
        assert sys.argv[1] == "cold-floor", sys.argv
        cold_floor_process(*sys.argv[2:5])
