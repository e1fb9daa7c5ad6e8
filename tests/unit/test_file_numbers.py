"""A batch's rows carry their Bronze file's number, not its path, while the ingest keeps them
(streaming.ingest.FileNumbers): the path comes back whole, whichever file a row came from."""

from __future__ import annotations

from chispa import assert_df_equality
from pyspark.sql import functions as F

from streaming.ingest import FileNumbers

ROWS = [("a", "file:/b/2.jsonl"), ("b", "file:/b/1.jsonl"), ("c", "file:/elsewhere/it's 3.jsonl"), ("d", None),
        ("e", "file:/b/1.jsonl")]


def test_numbers_in_name_order_and_paths_back_whole(spark):
    df = spark.createDataFrame(ROWS, "v string, source_file string")
    numbers = FileNumbers(["file:/b/1.jsonl", "file:/b/2.jsonl"])
    compact = numbers.compact(df)
    assert [(r["v"], r["_file_number"]) for r in compact.orderBy("v").collect()] == [
        ("a", 1), ("b", 0), ("c", None), ("d", None), ("e", 0)]
    assert "source_file" not in compact.columns
    # a path the batch's list lacks is kept as it is, a null stays null
    assert_df_equality(numbers.expand(compact), df, ignore_row_order=True)


def test_no_names_keeps_every_path(spark):
    df = spark.createDataFrame(ROWS, "v string, source_file string")
    numbers = FileNumbers([])
    assert numbers.compact(df).where(F.col("_file_number").isNotNull()).count() == 0
    assert_df_equality(numbers.expand(numbers.compact(df)), df, ignore_row_order=True)


def test_a_batch_of_many_files_keeps_its_paths(spark):
    """Spark looks a path up in a literal map key by key: past MAX_FILES the paths stay as they are."""
    many = [f"file:/b/{i}.jsonl" for i in range(FileNumbers.MAX_FILES + 1)]
    df = spark.createDataFrame([(str(i), path) for i, path in enumerate(many)], "v string, source_file string")
    numbers = FileNumbers(many)
    assert numbers.compact(df).where(F.col("_file_number").isNotNull()).count() == 0
    assert_df_equality(numbers.expand(numbers.compact(df)), df, ignore_row_order=True)
    fewer = FileNumbers(many[:-1])
    assert fewer.compact(df).where(F.col("_file_number").isNotNull()).count() == FileNumbers.MAX_FILES
