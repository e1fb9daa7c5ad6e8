"""Which Bronze files are event files, and listing a local Bronze folder without a JVM the way the
stream's file index lists it (the idle check; lakehouse/jvm/BronzeFile.scan counts them on any Hadoop
file system for the ingest's messages)."""

from __future__ import annotations

import os
import re

EVENT_SUFFIXES = ("json", "jsonl", "ndjson")  # each optionally .gz
BRONZE_GLOB = "*.{" + ",".join(f"{s},{s}.gz" for s in EVENT_SUFFIXES) + "}"
BRONZE_NAME = r"^[^._].*\.(" + "|".join(EVENT_SUFFIXES) + r")(\.gz)?$"  # hidden (. or _) names are never read


# What the stream's pathGlobFilter (BRONZE_GLOB) lets through, as a regex on the file name.
_GLOB_NAME = re.compile(r"^.*\.(" + "|".join(EVENT_SUFFIXES) + r")(\.gz)?$")


def spark_hides(name: str) -> bool:
    """Spark's file index skips a file or folder so named (InMemoryFileIndex.shouldFilterOutPathName)."""
    exclude = (name.startswith("_") and "=" not in name) or name.startswith(".") or name.endswith("._COPYING_")
    return exclude and not name.startswith(("_common_metadata", "_metadata"))


def local_scan(bronze: str) -> tuple[list[str], list[str]]:
    """(every file under a local Bronze folder the stream would take, as absolute paths; the other
    visible files, relative to Bronze). It lists as the stream's file index does: symlinked folders
    followed, names hidden by Spark's own rule (spark_hides), events by the stream's glob. Raises
    ValueError if symbolic links reach a folder twice."""
    events: list[str] = []
    ignored: list[str] = []
    top = os.path.abspath(bronze)
    seen_folders: set[str] = set()
    for folder, dirs, names in os.walk(top, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen_folders:  # a folder linked twice (or a loop): the stream lists it its own way
            raise ValueError(f"{folder}: reached twice through symbolic links")
        seen_folders.add(real)
        dirs[:] = sorted(d for d in dirs if not spark_hides(d))
        for n in sorted(names):
            if spark_hides(n):
                continue
            path = os.path.join(folder, n)
            if _GLOB_NAME.match(n):
                events.append(path)
            else:
                ignored.append(os.path.relpath(path, top))
    return events, ignored


def ignored_warning(ignored: list[str]) -> str:
    shown = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
    return (f"Bronze holds {len(ignored)} file(s) that are not event files and are not read (event files are "
            f"*.json, *.jsonl or *.ndjson, optionally .gz): {shown}")
