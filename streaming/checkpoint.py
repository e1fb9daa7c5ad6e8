"""The only code that reads Spark's private checkpoint layout of the Bronze file stream.

Spark offers no public API for "which files does micro-batch N read" or "which batch did a crash
leave planned but uncommitted", and the ingest needs both: the files, to check each one can be read
before the batch does (an unreadable file is quarantined as a whole instead of failing every run),
and to count them; the unfinished batch, so its replay skips the appends that already committed.
Spark 4.2's layout, under the checkpoint folder:

* ``offsets/<N>`` exists once batch N is planned, ``commits/<N>`` once it is done;
* ``sources/0/<N>`` (or, every ``compactInterval`` batches, ``sources/0/<N>.compact``, holding all
  entries so far) lists batch N's files: a ``v1`` line, then one JSON object per file with its
  ``path`` and ``batchId``.

tests/test_checkpoint.py runs a real stream and checks these functions against it, so a Spark
upgrade that changes the layout fails there, loudly, not in production.
"""

from __future__ import annotations

import json

from pyspark.sql import SparkSession

from lakehouse import fs
from lakehouse.storage import join


def _last(spark: SparkSession, checkpoint: str, log: str) -> int:
    return max((int(n) for n in fs.list_names(spark, join(checkpoint, log)) if n.isdigit()), default=-1)


def unfinished_batch(spark: SparkSession, checkpoint: str) -> int | None:
    """The micro-batch a crash left planned (in offsets/) but not committed (in commits/): the
    stream re-runs it under the same id, and some of its writes may have landed."""
    planned = _last(spark, checkpoint, "offsets")
    return planned if planned > _last(spark, checkpoint, "commits") else None


def batch_files(spark: SparkSession, checkpoint: str, batch_id: int) -> list[str]:
    """The Bronze files the file source assigned to batch `batch_id` (as URIs, e.g. file:///x),
    empty files included. Raises if the source log has no entry for the batch."""
    log = join(checkpoint, "sources", "0")
    for name in (str(batch_id), f"{batch_id}.compact"):
        path = join(log, name)
        if fs.exists(spark, path):
            lines = fs.read_text(spark, path).splitlines()
            if not lines or lines[0] != "v1":
                raise RuntimeError(f"{path}: not a file-source log of the expected version (v1): "
                                   "Spark's checkpoint layout changed; see streaming/checkpoint.py")
            entries = [json.loads(line) for line in lines[1:] if line.startswith("{")]
            return [e["path"] for e in entries if e.get("batchId") == batch_id]
    raise RuntimeError(f"no entry for batch {batch_id} in {log}: Spark's checkpoint layout changed; "
                       "see streaming/checkpoint.py")
