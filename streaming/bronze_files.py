"""Which Bronze files are event files, and listing them on local disk without a JVM (the idle check;
lakehouse/jvm/BronzeFile.scan lists any Hadoop file system the same way)."""

from __future__ import annotations

import os
import re

EVENT_SUFFIXES = ("json", "jsonl", "ndjson")  # each optionally .gz
BRONZE_GLOB = "*.{" + ",".join(f"{s},{s}.gz" for s in EVENT_SUFFIXES) + "}"
BRONZE_NAME = r"^[^._].*\.(" + "|".join(EVENT_SUFFIXES) + r")(\.gz)?$"  # hidden (. or _) names are never read


def local_scan(bronze: str) -> tuple[list[str], list[str]]:
    """(the event files' absolute paths, the other visible files' paths relative to Bronze, as
    BronzeFile.scan gives them). Like Spark's file index, a name starting with . or _ hides the file
    or the folder under it."""
    events: list[str] = []
    ignored: list[str] = []
    name, top = re.compile(BRONZE_NAME), os.path.abspath(bronze)
    for folder, dirs, names in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for n in sorted(names):
            if n.startswith((".", "_")):
                continue
            path = os.path.join(folder, n)
            if name.match(n):
                events.append(path)
            else:
                ignored.append(os.path.relpath(path, top))
    return events, ignored


def ignored_warning(ignored: list[str]) -> str:
    shown = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
    return (f"Bronze holds {len(ignored)} file(s) that are not event files and are not read (event files are "
            f"*.json, *.jsonl or *.ndjson, optionally .gz): {shown}")
