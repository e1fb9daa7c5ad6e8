"""Spark's private checkpoint layout, which streaming.checkpoint reads, checked against a real
stream: if a Spark upgrade changes it, this fails - not the ingest in production."""

from __future__ import annotations

import gzip
import os
import shutil

import pytest
from pyspark.sql import functions as F

from lakehouse.files import LocalFiles, os_path_of
from lakehouse.fs import SparkFiles
from streaming import checkpoint
from streaming.bronze_files import local_scan
from streaming.ingest import bronze_stream


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
    for files in (SparkFiles(spark), LocalFiles()):  # through Hadoop, and without a JVM
        for batch_id, taken in seen.items():
            logged = checkpoint.batch_files(files, ckpt, batch_id)
            assert {f.replace("file:///", "file:/") for f in logged} == taken, batch_id
        assert (tmp_path / "ckpt" / "sources" / "0" / "9.compact").exists()  # the compacted entry was read above
        # every file taken: the compacted entry (0..9) and the two batches after it
        assert {os_path_of(u) for u in checkpoint.seen_files(files, ckpt)} == {str(p) for p in bronze.iterdir()}
        assert checkpoint.unfinished_batch(files, ckpt) is None

    # a crash between planning batch 11 and committing it leaves offsets/11 without commits/11
    (tmp_path / "ckpt" / "commits" / "11").unlink()
    assert checkpoint.unfinished_batch(LocalFiles(), ckpt) == 11
    # Spark may delete the entries the compacted one holds: seen_files does not need them
    for n in range(9):
        (tmp_path / "ckpt" / "sources" / "0" / str(n)).unlink(missing_ok=True)
    assert len(checkpoint.seen_files(LocalFiles(), ckpt)) == 12
    shutil.rmtree(tmp_path / "ckpt" / "sources")
    with pytest.raises(RuntimeError, match="checkpoint layout changed"):
        checkpoint.batch_files(LocalFiles(), ckpt, 3)


def test_the_local_bronze_scan_lists_what_the_stream_takes(spark, tmp_path):
    """streaming.bronze_files.local_scan (the idle check) lists exactly the files the ingest's own
    stream takes: Spark's hidden-name rule, its glob, symlinked folders."""
    bronze, elsewhere = tmp_path / "bronze", tmp_path / "elsewhere"
    names = ["a.jsonl", "b.json.gz", "c.ndjson", "sub/d.jsonl", "sub/deeper/e.json", "with space.jsonl", "ünï.jsonl",
             "notes.txt", "f.jsonl.bak", ".hidden.jsonl", "_SUCCESS", "_tmp/g.jsonl", ".git/h.json", "sub/_x/i.jsonl",
             "_dt=2026-12-01/j.jsonl", "_metadata_k.jsonl", "part.jsonl._COPYING_"]
    for name in names + ["../elsewhere/l.jsonl"]:
        path = bronze / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(b"{}\n") if name.endswith(".gz") else b"{}\n")
    (bronze / "linked").symlink_to(elsewhere, target_is_directory=True)
    ckpt = str(tmp_path / "ckpt")
    bronze_stream(spark, str(bronze), 1000).writeStream.foreachBatch(lambda batch, batch_id: None) \
        .option("checkpointLocation", ckpt).trigger(availableNow=True).start().awaitTermination()
    taken = {os_path_of(u) for u in checkpoint.seen_files(LocalFiles(), ckpt)}
    events, ignored = local_scan(str(bronze))
    assert sorted(events) == sorted(taken)
    assert {os.path.relpath(p, bronze) for p in taken} >= {"a.jsonl", "ünï.jsonl", "_dt=2026-12-01/j.jsonl",
                                                            "_metadata_k.jsonl", "linked/l.jsonl"}
    assert sorted(ignored) == ["f.jsonl.bak", "notes.txt"]
    assert not checkpoint.source_log_ahead(LocalFiles(), ckpt)
    # a crash after Spark logged a batch's files but before its offsets: they are not taken yet
    (tmp_path / "ckpt" / "sources" / "0" / "1").write_text('v1\n{"path":"file:///x.jsonl","batchId":1}\n')
    assert checkpoint.source_log_ahead(LocalFiles(), ckpt)
    # a folder reached twice through links: the stream would list it twice; local_scan declines
    (bronze / "again").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match="reached twice"):
        local_scan(str(bronze))
