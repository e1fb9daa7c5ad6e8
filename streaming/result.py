"""What one ingest did (streaming.ingest, or streaming.idle when nothing was new)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class IngestResult:
    """What one ingest did. The row counts are exact and data-dependent: they are restricted, and
    printed only on request (``--counts``), never by default into a job's logs."""

    files_read: int = 0
    rows_ingested: int = 0
    rows_quarantined: int = 0
    duplicates_skipped: int = 0
    batches: int = 0
    silver_version_before: int = -1
    silver_version: int = -1
    batch_ids: list[int] = field(default_factory=list)
    replayed: list[int] = field(default_factory=list)  # batches re-run after an interruption
    idle: str = ""  # why the stream was not started (streaming.idle), if it was not

    def summary(self, counts: bool = False) -> str:
        version = (f"silver.sessions version {self.silver_version}" if self.silver_version != self.silver_version_before
                   else f"silver.sessions unchanged at version {self.silver_version}")
        lines = [self.idle] if self.idle else []
        lines.append(f"files read: {self.files_read}")
        if counts:
            lines += [f"rows ingested: {self.rows_ingested}", f"rows quarantined: {self.rows_quarantined}",
                      f"duplicates skipped: {self.duplicates_skipped}"]
        lines.append(version)
        for batch in self.replayed:
            lines.append(f"batch {batch} was interrupted after it had committed to silver.sessions; it was replayed "
                         "and nothing was written twice")
        if not counts and self.files_read:
            lines.append("(exact row counts are restricted: `lakehouse ingest --counts`, or "
                         "`lakehouse sql \"DESCRIBE HISTORY silver.sessions\"`)")
        return "\n".join(lines)
