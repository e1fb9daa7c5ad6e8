"""Shared fixtures: one Spark session for the whole test run, a fresh lakehouse root per test.

tests/unit/ holds tests of functions on tiny frames or plain values (no CLI process; seconds to a
couple of minutes in all, `make unit`); tests/system/ runs the real CLI, other processes, Azurite,
a Spark cluster and the image's scripts. Helpers both use are in tests/support.py."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest
from support import TEST_PSEUDONYM_KEY

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


