"""Spark's JVM as a child process whose output we own: noise filtered, all of it logged, its death
and its failure to start explained in one line.

PySpark starts the JVM (spark-submit) with the terminal as its stderr: every command then printed
"WARNING: Using incubator modules", a dozen Ivy lines on a first run, and - when the JVM could not
start - a Java stack trace followed by a hint that was often wrong. Here the JVM's stderr is a pipe
read by a thread that writes every line to a log file (``$LAKEHOUSE_LOG_DIR``, default
``<tmp>/dp-lakehouse/spark-<pid>.log``, removed after a successful command) and forwards what a
user needs (warnings and errors from our log4j pattern, anything unknown) to stderr.
"""

from __future__ import annotations

import atexit
import collections
import os
import re
import sys
import tempfile
import threading
from pathlib import Path

from py4j.java_gateway import JavaGateway
from pyspark import SparkConf
from pyspark.java_gateway import launch_gateway

from lakehouse.errors import LakehouseError

LOG_DIR_ENV = "LAKEHOUSE_LOG_DIR"
LOG4J = Path(__file__).with_name("log4j2.properties")  # Spark, Hadoop and Delta at WARN, known noise at ERROR
# Lines the JVM prints on every start, or Ivy prints while resolving jars: no user acts on them.
NOISE = re.compile(
    r"^(WARNING: Using incubator modules|Using Spark's default log4j profile|Setting default log level to"
    r"|To adjust logging level use|\s*::|\s*(found|downloading|\[SUCCESSFUL \]|confs:|\|)|Ivy Default Cache set to"
    r"|\s*\S+#\S+;\S+ from \S+ in \[\w+\]"
    r"|The jars for the packages stored in|\S+ added as a dependency|\s*-{10,}|\s*\d+ artifacts copied"
    r"|You probably access the destination server|\s*Host \S+ not found|\s*$|\s*:: (resolving|retrieving|loading))")
# A Java stack trace: in the log, never on the terminal.
STACK = re.compile(r"^(\s+at |\s*\.\.\. \d+ more|Caused by: |Exception in thread |\s+Suppressed: )")
# The line of a failed start that says why, in order of preference: the root cause of a Java
# exception, any exception, then any line that sounds like an error.
CAUSES = (re.compile(r"^Caused by: (.*)"), re.compile(r"\b(\w+(\.\w+)*(Exception|Error))\b.*"),
          re.compile(r"(?i)\b(error|not found|no such file|cannot|could not)\b.*"))


class JvmOutput:
    """Reads the JVM's stderr to its end: logs every line, forwards the useful ones, keeps the last."""

    def __init__(self, fd: int, log_path: Path):
        self.log_path = log_path
        self.tail: collections.deque[str] = collections.deque(maxlen=200)
        self._file = log_path.open("w", encoding="utf-8", errors="replace")
        self._reader = os.fdopen(fd, "r", encoding="utf-8", errors="replace")
        self._thread = threading.Thread(target=self._pump, name="spark-jvm-stderr", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        for line in self._reader:
            self._file.write(line)
            self._file.flush()
            text = line.rstrip("\n")
            self.tail.append(text)
            if not NOISE.match(text) and not STACK.match(text):
                print(text, file=sys.__stderr__, flush=True)
        self._file.close()

    def wait(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)

    def cause(self) -> str | None:
        """The line of the JVM's output that says why it stopped."""
        lines = [line.strip() for line in self.tail if line.strip() and not NOISE.match(line)]
        lines = [line for line in lines if not line.startswith(("at ", "..."))]
        root = [m.group(1) for m in map(CAUSES[0].match, lines) if m]
        if root:
            return root[-1]  # the innermost "Caused by"
        for pattern in CAUSES[1:]:
            for line in lines:
                if pattern.search(line):
                    return line.removeprefix('Exception in thread "main" ')
        return lines[-1] if lines else None


_output: JvmOutput | None = None
_failed = False


def log_path() -> Path | None:
    return _output.log_path if _output else None


def _log_dir() -> Path:
    directory = Path(os.environ.get(LOG_DIR_ENV) or Path(tempfile.gettempdir()) / "dp-lakehouse")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def mark_failed() -> None:
    """Keep the JVM's log: the command failed (the CLI says where it is)."""
    global _failed
    _failed = True


def _remove_log_unless_failed() -> None:
    if _output is not None and not _failed:
        _output.log_path.unlink(missing_ok=True)


def hint_for(cause: str) -> str:
    if "UnknownHostException" in cause:
        return ("a host name does not resolve to an address (this machine's, or SPARK_LOCAL_IP's): set "
                "SPARK_LOCAL_IP=127.0.0.1 (for local[*] masters), or add the host name to /etc/hosts")
    if re.search(r"(?i)java(_home)?\b.*(not found|no such file|is not set)|JAVA_HOME", cause):
        return "Java 17 or newer is needed: install it (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
    if "ClassNotFoundException" in cause or "NoClassDefFoundError" in cause:
        return "a jar is missing: run `make setup` (it resolves the Delta and hadoop-azure jars into .jars/)"
    if "Could not parse Master URL" in cause or "master" in cause.lower():
        return "check --master / [spark] master (local[*], spark://HOST:PORT, yarn, k8s://https://HOST:PORT)"
    if "BindException" in cause:
        return "the driver could not bind a port: set SPARK_LOCAL_IP to an address of this machine"
    return "see the log for the whole output"


def bind_loopback_if_local(master: str) -> None:
    """A local[*] driver only talks to itself: with SPARK_LOCAL_IP=127.0.0.1 Spark never resolves
    the hostname, which a container may not have in /etc/hosts (`docker run --network none`,
    podman: UnknownHostException). A spark:// driver must bind an address its cluster reaches."""
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def launch(conf: SparkConf) -> JavaGateway:
    """The py4j gateway to a new JVM started with `conf`, its stderr read by a JvmOutput."""
    global _output
    read_fd, write_fd = os.pipe()
    _output = JvmOutput(read_fd, _log_dir() / f"spark-{os.getpid()}.log")
    atexit.register(_remove_log_unless_failed)
    try:
        return launch_gateway(conf, popen_kwargs={"stderr": write_fd})
    except Exception as exc:
        mark_failed()
        _output.wait()
        cause = _output.cause() or str(exc).strip().splitlines()[0]
        raise LakehouseError(f"Spark's JVM did not start: {cause} - {hint_for(cause)} (its whole output: "
                             f"{_output.log_path})") from exc
    finally:
        os.close(write_fd)


def death_message(gateway: JavaGateway) -> str | None:
    """If the JVM behind `gateway` has died, one line saying so and where its log is."""
    proc = getattr(gateway, "proc", None)
    code = proc.poll() if proc is not None else None
    if proc is not None and code is None:
        return None
    how = (f"killed by signal {-code}" + (" (SIGKILL: out of memory, or killed by hand or by the system)"
                                          if code == -9 else "")
           if code is not None and code < 0 else f"exit code {code}" if code is not None else "connection lost")
    where = f"; its log: {log_path()}" if log_path() else ""
    return (f"Spark's JVM died ({how}) while the command ran{where}. Nothing half-written is lost: the next run "
            "recovers what was staged or committed")
