"""Named points where a crash test can freeze the process before killing it.

Set ``LAKEHOUSE_FAILPOINT=<name>``: on reaching that point the process prints ``FAILPOINT <name>`` to
stderr and sleeps until killed. Unset (always, outside tests) a failpoint costs one dict lookup.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "LAKEHOUSE_FAILPOINT"


def reached(name: str) -> None:
    if os.environ.get(ENV) == name:
        print(f"FAILPOINT {name}", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)
