"""Peak resident memory of a process tree (the Python driver, its JVM, Spark's Python workers)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

PF_FORKNOEXEC = 0x40  # kernel task flag: forked and not (yet) replaced by exec


def _processes(proc: Path) -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, task flags) for every process."""
    out = {}
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(stat.parent.name)] = (int(fields[1]), int(fields[6]))
    return out


def _rss(proc: Path, pid: int) -> int:
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss_bytes(pid: int, proc: Path = Path("/proc")) -> int:
    """RSS of `pid` and all its descendants, each memory counted once.

    A child that was forked and has not exec'd yet, with its parent's RSS (within 1 %), is its
    parent's memory seen twice: the JVM starts external commands from a vfork-style clone that
    shares the JVM's address space until it execs (seen in samples as a child of the JVM named
    after the spawning thread, "Executor" or "Thread-94", with the JVM's RSS to the MB). Counted,
    it added the whole JVM (0.8-1.4 GB) to a peak for a moment, in about 1 release in 3. (Python
    workers forked by Spark's daemon have RSS of their own and are counted.)"""
    procs, total, todo = _processes(proc), 0, [(pid, None)]
    children: dict[int, list[int]] = {}
    for child, (parent, _) in procs.items():
        children.setdefault(parent, []).append(child)
    while todo:
        p, parent_rss = todo.pop()
        rss = _rss(proc, p)
        forked_copy = parent_rss is not None and abs(rss - parent_rss) <= parent_rss / 100
        if not (procs.get(p, (0, 0))[1] & PF_FORKNOEXEC and forked_copy):
            total += rss
        todo.extend((c, rss) for c in children.get(p, []))
    return total


class PeakRss:
    """Samples the RSS of this process's tree every `interval` seconds while active."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        self.peak = tree_rss_bytes(os.getpid())
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, tree_rss_bytes(os.getpid()))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_bytes(os.getpid()))

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20
