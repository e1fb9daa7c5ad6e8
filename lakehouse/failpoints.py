"""Named points where a crash test can freeze the process before killing it.

Set ``LAKEHOUSE_FAILPOINT=<name>``: on reaching that point the process prints ``FAILPOINT <name>`` to
stderr and sleeps until killed - or, with ``LAKEHOUSE_FAILPOINT_PAUSE=<seconds>``, for that long and
then goes on (for tests that change the world under a running process). Unset (always, outside
tests) a failpoint costs one dict lookup.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "LAKEHOUSE_FAILPOINT"
PAUSE_ENV = "LAKEHOUSE_FAILPOINT_PAUSE"


def reached(name: str) -> None:
    if os.environ.get(ENV) == name:
        print(f"FAILPOINT {name}", file=sys.stderr, flush=True)
        pause = os.environ.get(PAUSE_ENV)
        if pause:
            time.sleep(float(pause))
            return
        while True:
            time.sleep(60)
