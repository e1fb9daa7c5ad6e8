"""Bad input never stops the pipeline, and a newcomer's errors say what to do - through the real CLI.

Bronze files that cannot be read, lines that are not UTF-8 or not exactly one JSON object, files
that are not event files, JSON arrays; and the errors a newcomer meets: a wrong master URL, a JVM
that cannot start or dies, a mistyped --root, a time-travel query before the table's history.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from oracle import pseudonym
from pyspark.sql import functions as F
from support import SUBPROCESS_SPARK_CONF, lakehouse_running_until, lakehouse_subprocess, run_cli, session, sigkill_group


def _line(visitor: int, **changes) -> str:
    return json.dumps(session(fullVisitorId=str(visitor), visitId=str(1_500_000_000 + visitor),
                              visitStartTime=str(1_500_000_000 + visitor), **changes))


def _truncated_gz(lines: list[str]) -> bytes:
    data = gzip.compress("".join(line + "\n" for line in lines).encode())
    return data[: len(data) // 2]


def _table(spark, root: Path, name: str):
    return spark.read.format("delta").load(str(root / "silver" / name))


def test_an_unreadable_file_is_quarantined_whole_and_the_batch_goes_on(spark, root):
    bronze = root / "bronze"
    bronze.mkdir(parents=True)
    (bronze / "good.jsonl").write_text("".join(_line(v) + "\n" for v in range(5)))
    (bronze / "broken.jsonl.gz").write_bytes(_truncated_gz([_line(v) for v in range(100, 3000)]))
    r = run_cli("--root", str(root), "ingest", "--counts")
    assert r.code == 0, r.err
    assert "files read: 2" in r.out and "rows ingested: 5" in r.out and "rows quarantined: 1" in r.out
    assert "broken.jsonl.gz cannot be read (EOFException" in r.err and "quarantined as a whole" in r.err
    assert "Traceback" not in r.err and len(r.err.splitlines()) < 10
    (row,) = _table(spark, root, "quarantine").collect()
    assert row["source_file"].endswith("broken.jsonl.gz") and row["reason"].startswith("unreadable_file: EOFException")
    assert row["raw"].startswith(_line(100))  # what could be read before the end came too early
    assert _table(spark, root, "sessions").count() == 5  # none of the broken file's partial lines

    # the checkpoint moved past it: later runs neither fail nor count it again
    (bronze / "more.jsonl").write_text(_line(7) + "\n")
    r = run_cli("--root", str(root), "ingest", "--counts")
    assert r.code == 0 and "files read: 1" in r.out and "rows ingested: 1" in r.out
    assert _table(spark, root, "quarantine").count() == 1


@pytest.mark.slow
def test_an_unreadable_file_is_quarantined_exactly_once_across_a_crash(spark, root, tmp_path):
    bronze = root / "bronze"
    bronze.mkdir(parents=True)
    (bronze / "good.jsonl").write_text("".join(_line(v) + "\n" for v in range(20)))
    (bronze / "broken.jsonl.gz").write_bytes(_truncated_gz([_line(v) for v in range(100, 3000)]))
    conf = tmp_path / "conf.toml"
    conf.write_text(SUBPROCESS_SPARK_CONF)
    env = {"LAKEHOUSE_FAILPOINT": "ingest-after-quarantine"}
    with lakehouse_running_until("--conf", str(conf), "--root", str(root), "ingest", env=env,
                                 wait_for="FAILPOINT ingest-after-quarantine") as proc:
        sigkill_group(proc)
    r = run_cli("--conf", str(conf), "--root", str(root), "ingest")
    assert r.code == 0, r.err
    assert "batch 0 was interrupted after it had committed to silver.sessions" in r.out
    assert [row["reason"][:25] for row in _table(spark, root, "quarantine").collect()] == ["unreadable_file: EOFExcep"]
    assert _table(spark, root, "sessions").count() == 20


def test_lines_that_are_not_utf8_or_not_one_object_are_quarantined(spark, root):
    bronze = root / "bronze"
    bronze.mkdir(parents=True)
    latin = json.loads(_line(1))
    latin["geoNetwork"]["country"] = "Curaçao"
    (bronze / "mixed.jsonl").write_bytes(json.dumps(latin, ensure_ascii=False).encode("latin-1") + b"\n"
                                         + (_line(2) + "}\n").encode() + (_line(3) + " trailing\n").encode()
                                         + (_line(4) + _line(5) + "\n").encode() + (_line(6) + "\n").encode())
    (bronze / "one.ndjson").write_text(_line(7) + "\n")
    (bronze / "two.ndjson.gz").write_bytes(gzip.compress((_line(8) + "\n").encode()))
    (bronze / "notes.txt").write_text(_line(9) + "\n")
    (bronze / "events.csv").write_text("a,b\n")
    r = run_cli("--root", str(root), "ingest")
    assert r.code == 0, r.err
    assert "Bronze holds 2 file(s) that are not event files and are not read" in r.err
    assert "events.csv" in r.err and "notes.txt" in r.err and r.err.count("not event files") == 1
    reasons = sorted(row["reason"].split(":")[0] for row in _table(spark, root, "quarantine").collect())
    assert reasons == ["not_json", "not_json", "not_json", "not_utf8"]
    assert {row["session_id"] for row in _table(spark, root, "sessions").collect()} == {
        pseudonym(f"{v}/{1_500_000_000 + v}") for v in (6, 7, 8)}
    # nothing in Silver holds a replacement character
    assert not [row for row in _table(spark, root, "sessions").collect() if "\ufffd" in str(row.asDict())]


# Byte sequences the whole-file UTF-8 check (BronzeFile.check, in the JVM's decoder) must judge as
# Spark's per-line is_valid_utf8 does: the ingest only checks line by line the files it found invalid.
UTF8_CASES = {
    "ascii": b"plain", "2-byte": "\u00e9".encode(), "3-byte": "\u20ac".encode(), "4-byte": "\U0001f600".encode(),
    "U+10FFFF": b"\xf4\x8f\xbf\xbf", "U+FFFE": "\ufffe".encode(), "BOM": b"\xef\xbb\xbf", "NUL": b"\x00",
    "stray continuation": b"\x80", "continuation after ASCII": b"a\xbf", "lone lead": b"\xc3",
    "overlong C0": b"\xc0\xaf", "overlong C1": b"\xc1\xbf", "overlong 3-byte": b"\xe0\x80\xaf",
    "overlong 4-byte": b"\xf0\x80\x80\xaf", "high surrogate": b"\xed\xa0\x80", "low surrogate": b"\xed\xbf\xbf",
    "CESU-8 pair": b"\xed\xa0\xbd\xed\xb8\x80", "above U+10FFFF": b"\xf4\x90\x80\x80", "F5": b"\xf5\x80\x80\x80",
    "5-byte": b"\xf8\x88\x80\x80\x80", "FE": b"\xfe", "FF": b"\xff", "cut 3-byte": b"\xe2\x82",
    "cut 4-byte": b"\xf0\x9f\x98",
}
BUFFER = 1 << 16  # BronzeFile.check reads this many bytes at a time


def test_the_whole_file_utf8_check_agrees_with_sparks_line_check(spark, tmp_path):
    from lakehouse.jvm_bridge import check_file

    files = {f"{i:02d}.jsonl": b"x" + sequence + b"y\n" for i, sequence in enumerate(UTF8_CASES.values())}
    euro = "\u20ac".encode()
    files.update({  # where the check's buffer ends: a sequence cut by it is completed by the next read
        "straddles.jsonl": b"a" * (BUFFER - 1) + euro + b"\n",
        "straddles-cut.jsonl": b"a" * (BUFFER - 1) + euro[:2] + b"\n",
        "late-bad.jsonl": b"a" * (3 * BUFFER) + b"\n\xff\n",
        "ends-cut.jsonl": b"a" * BUFFER + b"\n" + euro[:2],
        "late-bad.jsonl.gz": gzip.compress(b"b" * (2 * BUFFER + 7) + b"\n\xc3\n"),
        "fine.jsonl.gz": gzip.compress((b"a" * 100 + euro + b"\n") * 2000),
    })
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    per_line = {Path(r["file"]).name: r["valid"] for r in spark.read.text(str(tmp_path)).groupBy(
        F.col("_metadata.file_path").alias("file")).agg(F.bool_and(F.is_valid_utf8("value")).alias("valid")).collect()}
    whole = {name: check_file(spark, (tmp_path / name).as_uri(), 16).utf8 for name in files}
    assert whole == per_line
    assert sum(whole.values()) == 8 + 2  # the eight valid cases, straddles and fine.jsonl.gz


def test_an_invalid_line_deep_in_a_file_whose_name_needs_escaping_is_quarantined_alone(spark, root):
    bronze = root / "bronze"
    bronze.mkdir(parents=True)
    lines = [_line(v).encode() for v in range(300)]  # ~100 KB: the bad line comes after the first buffer
    latin = json.loads(_line(1000))
    latin["geoNetwork"]["country"] = "Cura\u00e7ao"
    lines.insert(250, json.dumps(latin, ensure_ascii=False).encode("latin-1"))
    # the stream names files by escaped URI (%20, %25): the file check must open this file, not
    # "mostly%20fine...", nor find nothing and quarantine it whole as unreadable
    (bronze / "mostly fine 100%.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (bronze / "mostly%20fine 100%25.jsonl").write_bytes("".join(_line(v) + "\n" for v in range(2000, 2010)).encode())
    r = run_cli("--root", str(root), "ingest")
    assert r.code == 0, r.err
    assert "cannot be read" not in r.err
    (bad,) = _table(spark, root, "quarantine").collect()
    assert bad["reason"].startswith("not_utf8") and bad["source_file"].endswith("mostly%20fine%20100%25.jsonl")
    assert _table(spark, root, "sessions").count() == 310


def test_a_checkout_newer_than_its_built_jar_is_told_to_run_make_setup(spark, root, monkeypatch):
    """After a pull that changed lakehouse/jvm, Spark may run without our classes: py4j then hands
    out a package for the missing class, which failed only when called, as a TypeError."""
    from lakehouse import jvm_bridge

    real = jvm_bridge._jvm

    class WithoutOurJar:  # the JVM as seen without lakehouse-jvm.jar: dplakehouse.* are no classes
        def __init__(self, jvm):
            self.jvm = jvm

        def __getattr__(self, name):
            return getattr(self.jvm, "no_such_package_here" if name == "dplakehouse" else name)

    monkeypatch.setattr(jvm_bridge, "_jvm", lambda spark: WithoutOurJar(real(spark)))
    (root / "bronze").mkdir(parents=True)
    (root / "bronze" / "one.jsonl").write_text(_line(1) + "\n")
    r = run_cli("--root", str(root), "ingest")
    assert r.code == 1 and "dplakehouse.BronzeFile" in r.error and "run `make setup`" in r.error
    assert "Traceback" not in r.err and "JavaPackage" not in r.err


def test_a_json_array_file_is_named_once_with_the_fix(spark, root):
    bronze = root / "bronze"
    bronze.mkdir(parents=True)
    (bronze / "export.json").write_text(json.dumps([json.loads(_line(v)) for v in range(3)], indent=2))
    (bronze / "fine.jsonl").write_text(_line(9) + "\nnot json\n")
    r = run_cli("--root", str(root), "ingest")
    assert r.code == 0, r.err
    hints = [line for line in r.err.splitlines() if "Bronze expects JSON Lines" in line]
    assert len(hints) == 1 and "export.json" in hints[0] and "jq -c" in hints[0]


def test_a_bad_master_url_is_refused_before_spark_starts(root):
    r = run_cli("--root", str(root), "--master", "bogus://x", "run")
    assert r.code == 1
    assert r.error == ("lakehouse: error: --master: 'bogus://x' is not a Spark master URL: use local[*] (all cores), "
                       "local[N], spark://HOST:PORT, yarn or k8s://https://HOST:PORT")
    conf = root.parent / "master.toml"
    conf.write_text('[spark]\nmaster = "spark://no-port"\n')
    r = run_cli("--conf", str(conf), "budget")
    assert r.code == 1 and "spark.master: 'spark://no-port' is not a Spark master URL" in r.error


@pytest.mark.slow
@pytest.mark.parametrize("env, cause, hint", [
    ({"SPARK_LOCAL_IP": "256.0.0.1"}, "UnknownHostException: 256.0.0.1", "set SPARK_LOCAL_IP=127.0.0.1"),
    ({"JAVA_HOME": "/nonexistent/jdk"}, "/nonexistent/jdk/bin/java: No such file or directory", "Java 17 or newer"),
], ids=["unresolvable-host", "no-java"])
def test_a_jvm_that_cannot_start_says_why_in_one_line(root, env, cause, hint):
    bronze = root / "bronze"
    bronze.mkdir(parents=True)
    proc = lakehouse_subprocess("--root", str(root), "ingest", env=env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    error = err.strip().splitlines()[-1]
    assert error.startswith("lakehouse: error: Spark's JVM did not start: ") and cause in error and hint in error
    assert "its whole output: " in error
    log = Path(error.rsplit("its whole output: ", 1)[1].rstrip(")"))
    assert log.is_file() and cause.split(":")[0] in log.read_text()
    assert "\tat " not in err and "Traceback" not in err  # no stack trace on the terminal


def _java_child(pid: int) -> int:
    """The JVM the lakehouse process started (a child or grandchild: spark-submit execs java)."""
    for _ in range(200):
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                    cmd = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                parent = int(stat.rsplit(")", 1)[1].split()[1])
                if b"java" in cmd.split(b"\0")[0] and parent in (pid, *_children(pid)):
                    return int(entry.name)
        time.sleep(0.1)
    raise AssertionError("no JVM found under the lakehouse process")


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


@pytest.mark.slow
def test_a_jvm_killed_mid_release_is_named_with_its_log(root):
    assert run_cli("--root", str(root), "generate", "--sessions", "300", "--start", "2026-11-01", "--days", "1").code == 0
    assert run_cli("--root", str(root), "ingest").code == 0
    env = {"LAKEHOUSE_FAILPOINT": "release-before-stage", "LAKEHOUSE_FAILPOINT_PAUSE": "8"}
    proc = lakehouse_subprocess("--root", str(root), "release", "--now", "2026-11-03T00:00:00Z", env=env)
    for line in proc.stderr:
        if "FAILPOINT release-before-stage" in line:
            break
    os.kill(_java_child(proc.pid), signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    error = err.strip().splitlines()[-1]
    assert error.startswith("lakehouse: error: Spark's JVM died (killed by signal 9"), err[-2000:]
    assert "its log: " in error and "the next run recovers" in error
    assert "ConnectionRefusedError" not in err and "Traceback" not in err


@pytest.mark.parametrize("debug", [False, True])
def test_py4j_tracebacks_on_the_root_logger_stay_off_the_terminal_unless_debugging(debug):
    # The JVM killed while a command is on the wire: py4j calls logging.exception on the root logger
    # from its own module, before the CLI prints its one line (it broke the test above ~1 run in 20).
    code = """
import logging, py4j.java_gateway
from lakehouse import log
log.quiet_py4j(DEBUG)
exec(compile("import logging\\ntry:\\n 1/0\\nexcept Exception:\\n logging.exception('lost')",
             py4j.java_gateway.__file__, "exec"))
logging.getLogger("other").warning("still shown")
""".replace("DEBUG", str(debug))
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert "still shown" in err
    assert ("Traceback" in err and "lost" in err) is debug, err


def test_a_time_travel_error_is_one_whole_sentence(root):
    assert run_cli("--root", str(root), "generate", "--sessions", "50").code == 0
    assert run_cli("--root", str(root), "ingest").code == 0
    r = run_cli("--root", str(root), "sql", "SELECT * FROM silver.sessions TIMESTAMP AS OF '2020-01-01'")
    assert r.code == 1
    assert "is before the earliest version available to this table" in r.error
    assert r.error.rstrip().endswith(".") and "Please use a timestamp after" in r.error


@pytest.mark.parametrize("command", [["budget"], ["sql", "SELECT 1"], ["report"], ["release"],
                                     ["reprocess", "--silver-version", "0"]])
def test_a_mistyped_root_is_named_and_nothing_is_created(tmp_path, command):
    root = tmp_path / "lakehuose"
    r = run_cli("--root", str(root), *command)
    assert r.code == 1
    assert r.error.startswith(f"lakehouse: error: no lakehouse at {root}") and "check --root" in r.error
    assert not root.exists()


@pytest.mark.parametrize("command", [["run"], ["ingest"]])
def test_a_missing_bronze_is_named_and_nothing_is_created(tmp_path, command):
    root = tmp_path / "lakehuose"
    r = run_cli("--root", str(root), *command)
    assert r.code == 1 and "Bronze folder" in r.error and "does not exist" in r.error
    assert not root.exists()


def test_help_explains_reprocess_and_budget():
    for command, words in (("reprocess", ["--silver-version", "--period", "Delta time travel", "its cap"]),
                           ("budget", ["What the releases protect", "restricted record", "--periods"]),
                           ("run", ["--now", "closed", "continual", "--counts"])):
        r = run_cli(command, "--help")
        assert r.code == 0
        text = " ".join(r.out.split())
        assert all(w in text for w in words), (command, text)
