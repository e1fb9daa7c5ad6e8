"""Checks a lakehouse's Gold from outside, without Spark, the way an analyst reads it (delta-rs):

    python deploy/check_gold.py ROOT

Every Delta table under ROOT/gold is read at its latest version; the checks hold whatever the
tables' schemas are: the privacy ledger exists; each (release_id, metric, period_start) is in it at
most once;
every other Gold table has rows, and each of its release_ids is in the ledger under its own name;
and every table stays readable by any Delta reader (protocol reader 1 / writer 2, no table
features). Prints one line per table; exits 1 with the reasons if a check fails.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable

LEDGER = "privacy_ledger"


def check(root: Path) -> list[str]:
    gold = root / "gold"
    tables = sorted(p for p in gold.iterdir() if (p / "_delta_log").is_dir()) if gold.is_dir() else []
    if not any(t.name == LEDGER for t in tables):
        return [f"no Delta table {gold / LEDGER}"]
    problems: list[str] = []
    rows = {}
    for path in tables:
        table = DeltaTable(str(path))
        protocol = table.protocol()
        features = (protocol.reader_features or []) + (protocol.writer_features or [])
        if (protocol.min_reader_version, protocol.min_writer_version) != (1, 2) or features:
            problems.append(f"{path.name}: protocol reader {protocol.min_reader_version} / writer "
                            f"{protocol.min_writer_version}, features {features}: not reader 1 / writer 2")
        # scan(): delta-rs' own engine. to_pyarrow_table() with its default filesystem can abort the
        # interpreter at exit (deltalake 1.6.6, pyarrow 26: "terminate called without an active exception").
        rows[path.name] = pa.table(table.scan()).to_pylist()
        print(f"gold.{path.name}: version {table.version()}, {len(rows[path.name])} rows")

    ledger = rows.pop(LEDGER)
    counts = Counter((r["release_id"], r["metric"], r.get("period_start")) for r in ledger)
    twice = sorted((key for key, n in counts.items() if n > 1), key=str)
    if twice:
        problems.append(f"{LEDGER}: (release_id, metric, period_start) more than once: {twice}")
    if not rows:
        problems.append("no Gold metric table besides the ledger")
    for name, table_rows in rows.items():
        if not table_rows:
            problems.append(f"{name}: no rows")
        orphans = sorted({r["release_id"] for r in table_rows} - {rid for rid, metric, _ in counts if metric == name})
        if orphans:
            problems.append(f"{name}: release_ids not in the ledger for this metric: {orphans}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    problems = check(Path(argv[1]))
    for problem in problems:
        print(f"check_gold: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
