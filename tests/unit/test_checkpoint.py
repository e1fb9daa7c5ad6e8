"""Spark's private checkpoint layout, which streaming.checkpoint reads, checked against a real
stream: if a Spark upgrade changes it, this fails - not the ingest in production."""

from __future__ import annotations

import shutil

import pytest
from pyspark.sql import functions as F

from streaming import checkpoint


def test_batch_files_and_the_unfinished_batch_match_a_real_stream(spark, tmp_path):
    bronze, ckpt = tmp_path / "bronze", str(tmp_path / "ckpt")
    bronze.mkdir()
    for i in range(12):  # more batches than the file-source log's compaction interval (10)
        (bronze / f"f{i:02d}.jsonl").write_text(f'{{"i": {i}}}\n')
    seen: dict[int, set[str]] = {}

    def record(batch, batch_id):
        seen[batch_id] = {r[0] for r in batch.select("source_file").distinct().collect()}

    query = (spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(str(bronze))
             .select(F.col("_metadata.file_path").alias("source_file"))
             .writeStream.foreachBatch(record).option("checkpointLocation", ckpt).trigger(availableNow=True).start())
    query.awaitTermination()
    assert sorted(seen) == list(range(12))
    for batch_id, files in seen.items():
        logged = checkpoint.batch_files(spark, ckpt, batch_id)
        assert {f.replace("file:///", "file:/") for f in logged} == files, batch_id
    assert (tmp_path / "ckpt" / "sources" / "0" / "9.compact").exists()  # the compacted entry was read above
    assert checkpoint.unfinished_batch(spark, ckpt) is None

    # a crash between planning batch 11 and committing it leaves offsets/11 without commits/11
    (tmp_path / "ckpt" / "commits" / "11").unlink()
    assert checkpoint.unfinished_batch(spark, ckpt) == 11
    shutil.rmtree(tmp_path / "ckpt" / "sources")
    with pytest.raises(RuntimeError, match="checkpoint layout changed"):
        checkpoint.batch_files(spark, ckpt, 3)
