"""The keys a frame's rows hold more than once (lakehouse/jvm/RepeatedKeys.java), which the
ingest's dedupe asks of a checkpointed batch, against Python's own count of the same keys."""

from __future__ import annotations

import random
import struct
from collections import Counter

import pytest
from pyspark.sql import functions as F

from lakehouse import jvm_bridge


def _keys(result: bytes) -> list[int]:
    return list(struct.unpack(f">{len(result) // 8}q", result))


def _frame(spark, keys: list[int | None], tasks: int):
    return spark.createDataFrame([(k,) for k in keys], "k long").repartition(tasks)


@pytest.mark.parametrize("tasks", [1, 5])
def test_repeated_keys_are_those_python_counts_more_than_once(spark, tasks):
    rng = random.Random(tasks)
    # the extremes of a long, negatives, a key three times, nulls (ignored) and many unique keys
    keys: list[int | None] = [rng.randrange(-2**63, 2**63) for _ in range(3000)]
    keys += [-2**63, -2**63, 2**63 - 1, 2**63 - 1, -1, -1, -1, 0, None, None] + keys[:40]
    rng.shuffle(keys)
    expected = sorted(k for k, n in Counter(k for k in keys if k is not None).items() if n > 1)
    assert len(expected) == 43  # keys[:40], the two extremes and -1
    result = jvm_bridge.repeated_keys(_frame(spark, keys, tasks))
    assert result is not None and _keys(result) == expected


def test_no_rows_or_no_repeats_give_no_keys(spark):
    assert jvm_bridge.repeated_keys(_frame(spark, [], 2)) == b""
    assert jvm_bridge.repeated_keys(_frame(spark, [1, 2, None, None, 3], 2)) == b""


@pytest.mark.parametrize("tasks", [1, 4])
def test_more_keys_than_the_limit_give_none_not_a_partial_answer(spark, tasks):
    df = _frame(spark, [1, 2, 3, 4, 5, 5, None, None], tasks)  # 6 keys, nulls not counted
    assert jvm_bridge.repeated_keys(df, max_keys=6) == struct.pack(">q", 5)
    assert jvm_bridge.repeated_keys(df, max_keys=5) is None


def test_key_in_selects_the_rows_of_the_repeated_keys(spark):
    keys = list(range(500)) + [7, 7, 499, -3]
    df = spark.createDataFrame([(k,) for k in keys], "k long")
    repeated = jvm_bridge.repeated_keys(df)
    assert repeated is not None
    got = sorted(r["k"] for r in df.where(jvm_bridge.key_in(spark, F.col("k"), repeated)).collect())
    assert got == [7, 7, 7, 499, 499]
    assert df.where(jvm_bridge.key_in(spark, F.col("k"), b"")).count() == 0
