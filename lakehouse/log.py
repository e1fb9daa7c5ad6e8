"""The pipeline's own concise progress lines (stderr), so Spark's logs can stay at WARN."""

from __future__ import annotations

import logging
import sys
import time

_start = time.monotonic()


def progress(message: str) -> None:
    elapsed = time.monotonic() - _start
    print(f"[{elapsed:7.1f}s] {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"lakehouse: warning: {message}", file=sys.stderr, flush=True)


class _NotPy4j(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "py4j" not in record.pathname


def quiet_py4j(debug: bool) -> None:
    """py4j reports a lost JVM connection with `logging.exception` on the root logger, which (with no
    handler set) prints a two-exception traceback before the CLI's own one-line error about the
    dead JVM. Other libraries' warnings still reach stderr; with LAKEHOUSE_DEBUG=1 py4j's too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    if not debug:
        handler.addFilter(_NotPy4j())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
