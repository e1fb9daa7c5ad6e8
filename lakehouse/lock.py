"""One writer at a time per lakehouse.

A scheduled job can overlap the previous run (a slow release, a retried execution). Delta's
optimistic concurrency would reject most conflicting commits, but the stream checkpoint, the
release staging and Azure Blob (where Delta supports a single writing driver only) need a real
lock. The second run fails at once with :class:`LockBusy` (exit code 75, "try again later").

* local storage: ``fcntl.flock`` on ``<silver>/_lakehouse.lock``; the kernel releases it when the
  process dies, even on SIGKILL, so a crash never leaves a stale lock.
* Azure Blob: a lease on the blob ``_lakehouse.lock`` in the silver container, renewed by a
  background thread; a killed process's lease simply expires (15-60 s). A lease that could not be
  renewed may be another run's by now: :meth:`RunLease.check`, called before every write of Silver,
  the staging and every Gold table, then stops this run with :class:`LeaseLost` before it writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from lakehouse.errors import LockBusy


class LeaseLost(LockBusy):
    """This run no longer holds the writer lock: it must not write anything more."""


class RunLease:
    """The held writer lock. A local flock cannot be lost while the process lives; an Azure lease
    can (see lakehouse.azure.lease_lock, which subclasses this)."""

    def check(self, before: str) -> None:
        """Raises LeaseLost if the lock may no longer be ours; `before` names the write it guards."""


def holder() -> str:
    """Who holds the lock, recorded beside it (a busy lock names its holder)."""
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


@contextlib.contextmanager
def local_lock(path: str) -> Iterator[RunLease]:
    lock_file = Path(path)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            current = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            raise LockBusy(f"another lakehouse run holds {lock_file} ({current}); it will be released when "
                           "that run ends - try again later") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder().encode(), 0)
        yield RunLease()
    finally:
        os.close(fd)  # closing the descriptor releases the flock
