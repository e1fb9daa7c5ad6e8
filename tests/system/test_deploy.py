"""The container image definition and the deployment script: linted, and the script's plan checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

BIN = Path(sys.executable).parent
DEPLOY = REPO / "deploy" / "containerapps-job.sh"
NAMES = {"RESOURCE_GROUP": "rg-lh", "LOCATION": "westeurope", "STORAGE_ACCOUNT": "stlh", "REGISTRY": "acrlh",
         "KEY_VAULT": "kv-lh"}


def run(*cmd: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_dockerfile_passes_hadolint():
    r = run(str(BIN / "hadolint"), "Dockerfile")
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_runs_lakehouse_as_non_root_and_resolves_jars_at_build_time():
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    assert 'ENTRYPOINT ["lakehouse"]' in lines and 'CMD ["run"]' in lines
    user = [line for line in lines if line.startswith("USER ")]
    assert user and user[-1] not in ("USER root", "USER 0")
    assert any("python -m lakehouse.jars" in line for line in lines)  # the image starts offline


def test_dockerfile_is_architecture_neutral_and_quiet():
    text = (REPO / "Dockerfile").read_text()
    assert "JAVA_HOME=" not in text and "openjdk-amd64" not in text  # pyspark finds java on PATH, any arch
    assert text.count("ARG DEBIAN_FRONTEND=noninteractive") == 2  # both stages; build-time only
    jars_step = next(line for line in text.splitlines() if "python -m lakehouse.jars" in line)
    assert "SPARK_LOCAL_IP=127.0.0.1" in jars_step  # the build container's hostname need not resolve
    assert "ENV SPARK_LOCAL_IP" not in text and "SPARK_LOCAL_IP=" not in text.split("FROM ")[-1]


def test_shell_scripts_pass_shellcheck():
    scripts = sorted(str(p) for p in (REPO / "deploy").glob("*.sh"))
    assert str(DEPLOY) in scripts
    r = run(str(BIN / "shellcheck"), "--severity=style", "--external-sources", *scripts, str(REPO / ".ci" / "run"))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(("master", "preset", "expected"), [
    ("local[*]", None, "127.0.0.1"),
    ("local[2]", "10.1.2.3", "10.1.2.3"),          # an explicit choice wins
    ("spark://10.0.0.5:7077", None, None),         # a cluster driver must bind a reachable address
])
def test_local_masters_bind_loopback_so_a_container_hostname_need_not_resolve(monkeypatch, master, preset,
                                                                               expected):
    from lakehouse.jvm_process import bind_loopback_if_local

    if preset is None:
        monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)
    else:
        monkeypatch.setenv("SPARK_LOCAL_IP", preset)
    bind_loopback_if_local(master)
    assert os.environ.get("SPARK_LOCAL_IP") == expected


def test_deploy_script_grants_least_privilege():
    r = run("bash", str(DEPLOY), "--dry-run", env={**NAMES, "ANALYSTS_PRINCIPAL_ID": "analysts-group"})
    assert r.returncode == 0, r.stderr
    grants = [line for line in r.stdout.splitlines() if line.startswith("az role assignment create")]
    storage_grants = {(line.split("--role ")[1].split(" --scope")[0].replace("\\", ""),
                       line.split("--assignee-object-id ")[1].split()[0].replace("\\", ""),
                       line.rsplit("/containers/", 1)[-1].split()[0])
                      for line in grants if "/containers/" in line}
    assert storage_grants == {
        ("Storage Blob Data Reader", "<tsv>", "bronze"),
        ("Storage Blob Data Contributor", "<tsv>", "silver"),
        ("Storage Blob Data Contributor", "<tsv>", "gold"),
        ("Storage Blob Data Reader", "analysts-group", "gold"),
    }
    jobs = [line for line in r.stdout.splitlines() if line.startswith("az containerapp job create")]
    assert len(jobs) == 2  # the hourly run and the daily maintain
    for job, command, cron in zip(jobs, ("run", "maintain"), (r"17\ \*\ \*\ \*\ \*", r"47\ 3\ \*\ \*\ \*"), strict=True):
        assert "--trigger-type Schedule" in job and "--mi-user-assigned" in job and "secretref:pseudonym-key" in job
        assert job.rstrip().endswith(f"--args {command} --output none") and cron in job, job


def test_deploy_script_names_a_missing_parameter():
    env = {k: v for k, v in NAMES.items() if k != "KEY_VAULT"}
    r = run("bash", str(DEPLOY), "--dry-run", env={**env, "KEY_VAULT": ""})
    assert r.returncode == 2 and "set KEY_VAULT" in r.stderr
