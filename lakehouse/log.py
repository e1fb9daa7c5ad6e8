"""The pipeline's own concise progress lines (stderr), so Spark's logs can stay at WARN."""

from __future__ import annotations

import sys
import time

_start = time.monotonic()


def progress(message: str) -> None:
    elapsed = time.monotonic() - _start
    print(f"[{elapsed:7.1f}s] {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"lakehouse: warning: {message}", file=sys.stderr, flush=True)
