"""The keys an aggregate's rows hold more than once (lakehouse/jvm/RepeatedKeys.java), which the
ingest observes on the job that parses a batch, against Python's own count of the same keys."""

from __future__ import annotations

import random
import struct
from collections import Counter

import pytest
from pyspark.sql import Observation
from pyspark.sql import functions as F

from lakehouse import jvm_bridge


def _keys(result: bytes) -> list[int]:
    return list(struct.unpack(f">{len(result) // 8}q", result))


def _repeated(spark, keys: list[int | None], tasks: int, observed: bool,
              max_keys: int = jvm_bridge.MAX_OBSERVED_KEYS) -> bytes | None:
    jvm_bridge.register_repeated_keys(spark, max_keys)
    df = spark.createDataFrame([(k,) for k in keys], "k long").repartition(tasks)
    aggregate = F.call_function(jvm_bridge.REPEATED_KEYS, F.col("k")).alias("r")
    if not observed:
        result = df.agg(aggregate).first()["r"]
    else:
        seen = Observation("repeated_keys_test")
        df.observe(seen, aggregate).write.format("noop").mode("overwrite").save()
        result = seen.get["r"]
    return None if result is None else bytes(result)


@pytest.mark.parametrize("observed", [True, False], ids=["observed", "aggregated"])
@pytest.mark.parametrize("tasks", [1, 5])
def test_repeated_keys_are_those_python_counts_more_than_once(spark, tasks, observed):
    rng = random.Random(tasks)
    # the extremes of a long, negatives, a key three times, nulls (ignored) and many unique keys
    keys: list[int | None] = [rng.randrange(-2**63, 2**63) for _ in range(3000)]
    keys += [-2**63, -2**63, 2**63 - 1, 2**63 - 1, -1, -1, -1, 0, None, None] + keys[:40]
    rng.shuffle(keys)
    expected = sorted(k for k, n in Counter(k for k in keys if k is not None).items() if n > 1)
    assert len(expected) == 43  # keys[:40], the two extremes and -1
    result = _repeated(spark, keys, tasks, observed)
    assert result is not None and _keys(result) == expected


@pytest.mark.parametrize("tasks", [1, 4])
def test_more_keys_than_the_limit_give_null_not_a_partial_answer(spark, tasks):
    keys: list[int | None] = [1, 2, 3, 4, 5, 5, None, None]  # 6 keys, nulls not counted
    try:
        assert _repeated(spark, keys, tasks, True, max_keys=6) == struct.pack(">q", 5)
        assert _repeated(spark, keys, tasks, True, max_keys=5) is None
        assert _repeated(spark, keys, tasks, False, max_keys=5) is None
    finally:
        jvm_bridge.register_repeated_keys(spark)


def test_no_rows_or_no_repeats_give_no_keys(spark):
    assert _repeated(spark, [], 2, True) == b""
    assert _repeated(spark, [1, 2, None, None, 3], 2, True) == b""


def test_key_in_selects_the_rows_of_the_repeated_keys(spark):
    keys = list(range(500)) + [7, 7, 499, -3]
    repeated = _repeated(spark, keys, 3, True)
    df = spark.createDataFrame([(k,) for k in keys], "k long")
    got = sorted(r["k"] for r in df.where(jvm_bridge.key_in(spark, F.col("k"), repeated)).collect())
    assert got == [7, 7, 7, 499, 499]
    assert df.where(jvm_bridge.key_in(spark, F.col("k"), b"")).count() == 0
