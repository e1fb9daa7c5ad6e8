"""Helpers the tests share: the CLI in this process or as its own, kills, sample sessions, and a
lakehouse's tables as a comparable snapshot. (Fixtures are in conftest.py.)"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_PSEUDONYM_KEY = "test-pseudonym-key-not-a-secret"
# A short-lived `lakehouse` subprocess on tiny data spends most of its time compiling: the C1
# compiler alone gets it to the point under test ~20 % sooner (measured 58 s -> 46 s for a cold
# release). The long-lived test session itself keeps the JVM's defaults (C1 alone is slower there).
FAST_START_JVM = "-XX:TieredStopAtLevel=1"
SUBPROCESS_SPARK_CONF = f'[spark]\njava_options = "{FAST_START_JVM}"\n'


@dataclasses.dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def error(self) -> str:
        """The one-line reason the CLI gives on failure (progress lines may precede it)."""
        lines = [line for line in self.err.splitlines() if line.startswith("lakehouse: error:")]
        assert len(lines) == 1 and self.err.rstrip("\n").endswith(lines[0]), self.err
        return lines[0]


def run_cli(*args: str, spark=None) -> CliResult:
    """Runs `lakehouse ARGS` in this process (sharing the test Spark session) and captures output."""
    from lakehouse import cli

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return CliResult(code, out.getvalue(), err.getvalue())


def lakehouse_subprocess(*args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    """`lakehouse ARGS` as its own process (own JVM): for kill and concurrency tests."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "lakehouse.cli", *args], cwd=REPO, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@contextlib.contextmanager
def lakehouse_running_until(*args: str, wait_for: str, env: dict | None = None) -> Iterator[subprocess.Popen]:
    """`lakehouse ARGS` in its own process group, yielded once a line of its stderr contains
    `wait_for`; the group is SIGKILLed on the way out if it is still alive."""
    proc = lakehouse_subprocess(*args, env=env, start_new_session=True)
    try:
        for line in proc.stderr:
            if wait_for in line:
                break
        else:
            pytest.fail(f"`lakehouse {' '.join(args)}` ended before {wait_for!r}: exit {proc.wait()}")
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def sigkill_group(proc: subprocess.Popen) -> int:
    """SIGKILL to the whole group takes the Python driver and its JVM at once, like a container
    dying; returns the exit status."""
    os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait(timeout=60)


def session(**overrides) -> dict:
    """A valid GA-shaped session; overrides replace top-level keys (None deletes)."""
    record = {
        "fullVisitorId": "1234567890", "visitId": "1501591568", "visitStartTime": "1501591568",
        "device": {"browser": "Chrome", "operatingSystem": "Windows", "isMobile": False, "deviceCategory": "desktop"},
        "geoNetwork": {"continent": "Europe", "subContinent": "Western Europe", "country": "Germany", "city": "Berlin"},
        "totals": {"visits": "1", "hits": "4", "pageviews": "3", "timeOnSite": "120"},
        "trafficSource": {"source": "google"}, "hits": [{"hitNumber": "1"}],
    }
    for key, value in overrides.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return record


# ------------------------------------------------------------------------------------------
# a period-"none" lakehouse, its config and its tables

CONTINENTS = ["Africa", "Americas", "Antarctica", "Asia", "Europe", "Oceania", "(not set)"]
CONF = """
[privacy]
period = "none"
epsilon_per_release = 1.0
delta_per_release = 1e-6
epsilon_cap = {cap}
delta_cap = {delta_cap}

[metrics.sessions_per_continent]
kind = "COUNT"
group_by = "continent"
output = "dp_sessions"
public_partitions = {continents}
max_partitions_contributed = 1
max_contributions_per_partition = 5
share = 2.0

[metrics.avg_session_duration_per_device]
kind = "MEAN"
group_by = "device"
output = "dp_avg_duration_s"
value = "total_time_on_page"
min_value = 0.0
max_value = 3600.0
public_partitions = ["desktop", "mobile", "tablet", "(not set)"]
share = 1.0

[metrics.sessions_per_country]
kind = "COUNT"
group_by = "country"
output = "dp_sessions"
share = 1.0
"""
ROW_LEVEL = {"user_id", "session_id", "raw", "source_file", "session_start", "rows_in", "rows_late"}
METRICS = ["avg_session_duration_per_device", "sessions_per_continent", "sessions_per_country"]


def write_conf(path: Path, cap: float = 10.0, delta_cap: float = 1e-5) -> Path:
    # The [spark] JVM options only matter to subprocesses: the in-process session is already up.
    path.write_text(CONF.format(cap=cap, delta_cap=delta_cap, continents=json.dumps(CONTINENTS))
                    + SUBPROCESS_SPARK_CONF)
    return path


def cli(conf: Path, root: Path, *args: str) -> CliResult:
    return run_cli("--conf", str(conf), "--root", str(root), *args)


def sql_json(conf: Path, root: Path, query: str) -> list[dict]:
    r = cli(conf, root, "sql", query, "--format", "json")
    assert r.code == 0, r.err
    return [json.loads(line) for line in r.out.splitlines()]


def table_version(spark, path: Path) -> int:
    return spark.sql(f"DESCRIBE HISTORY delta.`{path}`").agg({"version": "max"}).first()[0]


def table_dirs(root: Path, layer: str) -> list[str]:
    """Tables with at least one commit. (A process killed mid-publish can leave a table that another
    thread was still creating: its folder, but no commit yet.)"""
    base = root / layer
    return sorted(p.name for p in base.iterdir() if any((p / "_delta_log").glob("*.json"))) if base.is_dir() else []


def versions(spark, root: Path) -> dict[str, int]:
    return {f"{layer}.{t}": table_version(spark, root / layer / t) for layer in ("silver", "gold")
            for t in table_dirs(root, layer)}


@contextlib.contextmanager
def process_time_zone(zone: str) -> Iterator[None]:
    """This process in another time zone, as a host or notebook there runs it: PySpark converts
    Python datetimes with the process's zone, not Spark's session zone. Restored on the way out
    (cli.main sets TZ=UTC, so a `cli` call inside ends the zone early)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


class Template:
    """A lakehouse built once (per module and xdist worker) and restored for each test that starts
    from it, at the path it was built at: Structured Streaming's checkpoint names Bronze files by
    absolute path, so a copy elsewhere would ingest them all again."""

    def __init__(self, root: Path):
        self.root, self._saved = root, root.with_name(f"{root.name}.template")

    def save(self) -> None:
        shutil.copytree(self.root, self._saved)

    def restore(self, spark) -> Path:
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.copytree(self._saved, self.root)
        # the session's Delta logs are cached by path and still hold the previous test's later versions
        spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
        return self.root


def snapshot(spark, root: Path, layer: str = "gold") -> dict[str, list[tuple]]:
    return {t: sorted(tuple(r) for r in spark.read.format("delta").load(str(root / layer / t)).collect())
            for t in table_dirs(root, layer)}


