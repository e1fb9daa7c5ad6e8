"""Is there anything new in a local Bronze folder? Answered from the stream's own checkpoint without
starting Spark, so that an hourly run with nothing new costs a second, not a JVM start and a stream.

The answer errs one way only: "nothing new" only when every event file under Bronze is one the
stream's file-source log has taken, no batch is left unfinished and Silver is the table this key
built; anything else (a new file, a path spelt differently, a remote store) says "look", and the
stream - the only judge of what is new - runs as always.
"""

from __future__ import annotations

from deltalake.exceptions import DeltaError

from lakehouse.files import LocalFiles, os_path_of
from lakehouse.log import warn
from lakehouse.readers import LocalReader, local
from lakehouse.storage import Locations
from streaming import checkpoint, keys
from streaming.bronze_files import ignored_warning, local_scan
from streaming.result import IngestResult


def nothing_to_ingest(loc: Locations) -> IngestResult | None:
    """The result of an ingest that would find nothing new; None when the stream must run."""
    if not local(loc.bronze, loc.silver, loc.ingest_checkpoint):
        return None
    files, tables = LocalFiles(), LocalReader()
    if not tables.exists(loc.silver_sessions) or not files.exists(loc.ingest_checkpoint):
        return None
    ckpt = loc.ingest_checkpoint
    try:
        if checkpoint.unfinished_batch(files, ckpt) is not None or checkpoint.source_log_ahead(files, ckpt):
            return None
        seen = {os_path_of(uri) for uri in checkpoint.seen_files(files, ckpt)}
        events, ignored = local_scan(loc.bronze)
        properties = tables.properties(loc.silver_sessions)
        version = max(c.version for c in tables.history(loc.silver_sessions))
    except (OSError, ValueError, RuntimeError, KeyError, DeltaError):  # unreadable or unexpected: the stream decides
        return None
    if any(path not in seen for path in events):
        return None
    # the check the ingest makes before any batch: a wrong key is reported now, not when data next comes
    keys.check_silver_properties(properties, loc, keys.key_fingerprint(keys.pseudonym_key(loc)))
    if ignored:
        warn(ignored_warning(ignored))
    return IngestResult(silver_version_before=version, silver_version=version,
                        idle=f"ingest: nothing new in {loc.bronze} ({len(events)} event files, all taken already by "
                        f"the checkpoint {ckpt}); the stream was not started")
