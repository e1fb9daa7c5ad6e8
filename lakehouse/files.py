"""Reading small files and listings, on any storage: `Files` is what streaming.checkpoint and the idle
check need; `LocalFiles` answers it for local paths without a JVM (fs.SparkFiles through Hadoop)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse


class Files(Protocol):
    def exists(self, path: str) -> bool: ...

    def list_names(self, directory: str) -> list[str]:
        """File names directly in `directory` ([] if it does not exist)."""
        ...

    def read_text(self, path: str) -> str: ...


class LocalFiles:
    def exists(self, path: str) -> bool:
        return Path(path).exists()

    def list_names(self, directory: str) -> list[str]:
        folder = Path(directory)
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def read_text(self, path: str) -> str:
        return Path(path).read_text(encoding="utf-8")


def os_path_of(uri: str) -> str:
    """/a b/c of file:///a%20b/c, file:/a%20b/c or /a b/c (as Hadoop writes local paths)."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri
