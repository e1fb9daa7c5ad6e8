"""Shared fixtures: one Spark session for the whole test run, a fresh lakehouse root per test."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import signal
import subprocess
import sys
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


# Set before any Spark or CLI code runs: tests must never depend on a developer's environment.
os.environ["LAKEHOUSE_PSEUDONYM_KEY"] = TEST_PSEUDONYM_KEY
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.pop("LAKEHOUSE_CONF", None)
os.environ.pop("LAKEHOUSE_FAILPOINT", None)


@pytest.fixture(scope="session")
def spark():
    from lakehouse.config import Config, SparkConfig
    from lakehouse.spark import get_spark

    config = Config(spark=dataclasses.replace(SparkConfig(), master="local[2]", shuffle_partitions=2))
    session = get_spark(config)
    yield session
    session.stop()


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "lakehouse"


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
