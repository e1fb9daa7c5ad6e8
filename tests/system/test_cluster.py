"""The same pipeline on a real Spark standalone cluster: a master and a worker from the installed
pyspark distribution on 127.0.0.1, a `lakehouse --master spark://...` driver, everything stopped by PID."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pyspark
import pytest
from oracle import expected_from
from support import FAST_START_JVM, SUBPROCESS_SPARK_CONF, lakehouse_subprocess, run_cli

SPARK_HOME = Path(pyspark.__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _json(url: str):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def _wait(predicate, what: str, procs: list, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"{what}: a cluster process exited with {p.returncode}")
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def standalone_cluster(tmp_path):
    env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_NO_DAEMONIZE": "1", "SPARK_LOG_DIR": str(tmp_path), "SPARK_WORKER_DIR": str(tmp_path / "work"),
           "SPARK_DAEMON_JAVA_OPTS": FAST_START_JVM}
    port, master_ui, worker_ui = _free_port(), _free_port(), _free_port()
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    logs = [(tmp_path / "master.log").open("w"), (tmp_path / "worker.log").open("w")]
    master = subprocess.Popen([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(master_ui)],
                              env=env, stdout=logs[0], stderr=subprocess.STDOUT)
    procs = [master]
    try:
        _wait(lambda: _json(f"http://127.0.0.1:{master_ui}/json/")["status"] == "ALIVE", "the master", procs)
        url = f"spark://127.0.0.1:{port}"
        worker = subprocess.Popen([spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                                   "--cores", "2", "--memory", "2g", "--webui-port", str(worker_ui)],
                                  env=env, stdout=logs[1], stderr=subprocess.STDOUT)
        procs.append(worker)
        _wait(lambda: _json(f"http://127.0.0.1:{master_ui}/json/")["aliveworkers"] == 1, "the worker", procs)
        yield url, f"http://127.0.0.1:{master_ui}/json/"
    finally:
        for p in reversed(procs):  # stopped by PID: spark-class execs the JVM in place
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()


@pytest.mark.slow
def test_ingest_and_release_on_a_standalone_cluster(spark, root, tmp_path, standalone_cluster):
    master, master_json = standalone_cluster
    assert run_cli("--root", str(root), "generate", "--sessions", "1500", "--files", "2", "--seed", "61",
                   "--start", "2026-11-01", "--days", "3").code == 0
    exp = expected_from(sorted((root / "bronze").glob("*.jsonl")))

    def run_on_the_cluster(engine: str, now: str) -> str:
        conf = tmp_path / f"{engine}.toml"
        conf.write_text(f'[privacy]\nengine = "{engine}"\n' + SUBPROCESS_SPARK_CONF + "shuffle_partitions = 4\n")
        driver = lakehouse_subprocess("--conf", str(conf), "--root", str(root), "--master", master, "run",
                                      "--now", now, "--counts")
        out, err = driver.communicate(timeout=600)
        assert driver.returncode == 0, err[-3000:]
        return out

    # The reference engine (PipelineDP on SparkRDDBackend) runs Python on the executors: this also
    # proves they use the venv's interpreter (no "No module named 'pipeline_dp'").
    out = run_on_the_cluster("pipelinedp", "2026-11-04T03:00:00Z")
    assert f"rows ingested: {len(exp.sessions)}" in out
    assert "release 1 (closed): periods 2026-11-01..2026-11-03 (3), silver.sessions versions 0..1" in out
    # The default engine bounds contributions in our own JVM class (lakehouse/jvm/Bounding.java),
    # on the executors: they must have lakehouse-jvm.jar.
    assert run_cli("--root", str(root), "generate", "--sessions", "300", "--seed", "62", "--start", "2026-11-04",
                   "--days", "1").code == 0
    out = run_on_the_cluster("spark", "2026-11-05T03:00:00Z")
    assert "release 2 (closed): period 2026-11-04, silver.sessions versions 0..2" in out, out

    # The master ran both: finished applications, with executors on our worker.
    apps = _json(master_json)["completedapps"]
    assert [a["name"] for a in apps] == ["dp-lakehouse"] * 2 and {a["state"] for a in apps} == {"FINISHED"}
    sessions = spark.read.format("delta").load(str(root / "silver" / "sessions"))
    assert sessions.count() == len(exp.sessions) + 300
    ledger = spark.read.format("delta").load(str(root / "gold" / "privacy_ledger"))
    # 3 metrics x 3 days, then x 1 day
    assert sorted(r["engine"] for r in ledger.collect()) == ["pipelinedp"] * 9 + ["spark"] * 3
