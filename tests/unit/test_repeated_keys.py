"""The keys a frame's rows hold more than once (lakehouse/jvm/RepeatedKeys.java), which the
ingest's dedupe asks of a checkpointed batch, against Python's own count of the same keys."""

from __future__ import annotations

import random
import struct
from collections import Counter

import pytest
from pyspark.sql import functions as F

from lakehouse import jvm_bridge
from streaming.ingest import dedupe_batch


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


def test_only_a_long_column_is_read(spark):
    with pytest.raises(Exception, match="reads a long column"):
        jvm_bridge.repeated_keys(spark.createDataFrame([(1,)], "k int"))


@pytest.mark.parametrize("rows", [6, jvm_bridge.MAX_KEYS + 1], ids=["keys found", "too many: counted by Spark"])
def test_dedupe_batch_keeps_the_first_files_copy_of_each_session(spark, rows):
    data = [("a", "file:/b/2.jsonl", 1), ("a", "file:/b/1.jsonl", 2), ("b", "file:/b/2.jsonl", 3),
            ("c", "file:/b/1.jsonl", 4), ("c", "file:/b/3.jsonl", 5), ("d", "file:/b/3.jsonl", 6)]
    sessions = spark.createDataFrame(data, "session_id string, source_file string, n int").select(
        "session_id", "source_file", F.timestamp_seconds("n").alias("session_start"), F.lit("u").alias("user_id"), "n")
    got = sorted((r["session_id"], r["source_file"]) for r in dedupe_batch(sessions, rows).collect())
    assert got == [("a", "file:/b/1.jsonl"), ("b", "file:/b/2.jsonl"), ("c", "file:/b/1.jsonl"), ("d", "file:/b/3.jsonl")]
