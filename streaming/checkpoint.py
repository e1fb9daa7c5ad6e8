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

from lakehouse.files import Files
from lakehouse.storage import join

_COMPACT = ".compact"


def _last(files: Files, checkpoint: str, log: str) -> int:
    return max((int(n) for n in files.list_names(join(checkpoint, log)) if n.isdigit()), default=-1)


def unfinished_batch(files: Files, checkpoint: str) -> int | None:
    """The micro-batch a crash left planned (in offsets/) but not committed (in commits/): the
    stream re-runs it under the same id, and some of its writes may have landed."""
    planned = _last(files, checkpoint, "offsets")
    return planned if planned > _last(files, checkpoint, "commits") else None


def _entries(files: Files, path: str) -> list[dict]:
    lines = files.read_text(path).splitlines()
    if not lines or lines[0] != "v1":
        raise RuntimeError(f"{path}: not a file-source log of the expected version (v1): "
                           "Spark's checkpoint layout changed; see streaming/checkpoint.py")
    return [json.loads(line) for line in lines[1:] if line.startswith("{")]


def batch_files(files: Files, checkpoint: str, batch_id: int) -> list[str]:
    """The Bronze files the file source assigned to batch `batch_id` (as URIs, e.g. file:///x),
    empty files included. Raises if the source log has no entry for the batch."""
    log = join(checkpoint, "sources", "0")
    for name in (str(batch_id), f"{batch_id}{_COMPACT}"):
        path = join(log, name)
        if files.exists(path):
            return [e["path"] for e in _entries(files, path) if e.get("batchId") == batch_id]
    raise RuntimeError(f"no entry for batch {batch_id} in {log}: Spark's checkpoint layout changed; "
                       "see streaming/checkpoint.py")


def source_log_ahead(files: Files, checkpoint: str) -> bool:
    """True if the file-source log has an entry for a batch not yet in offsets/: Spark writes the
    entry first, so a crash between the two leaves files logged that no batch has read yet (the
    restarted stream reads them as batch N)."""
    names = files.list_names(join(checkpoint, "sources", "0"))
    logged = max((int(n.removesuffix(_COMPACT)) for n in names if n.removesuffix(_COMPACT).isdigit()), default=-1)
    return logged > _last(files, checkpoint, "offsets")


def seen_files(files: Files, checkpoint: str) -> set[str]:
    """Every file the stream has taken so far (URIs as logged): the latest compacted entry holds all
    before it; the batches after it, one entry each (older entries may have been deleted)."""
    log = join(checkpoint, "sources", "0")
    names = files.list_names(log)
    compacted = [int(n.removesuffix(_COMPACT)) for n in names if n.endswith(_COMPACT) and n[:-len(_COMPACT)].isdigit()]
    start = max(compacted, default=-1)
    batches = sorted(int(n) for n in names if n.isdigit() and int(n) > start)
    paths = [join(log, f"{start}{_COMPACT}")] if start >= 0 else []
    paths += [join(log, str(b)) for b in batches]
    return {e["path"] for path in paths for e in _entries(files, path)}
