"""The whole pipeline on a real Azure Blob endpoint: Azurite, started by the fixture, over ABFS."""

from __future__ import annotations

import http.server
import json
import secrets
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from oracle import expected_from
from support import REPO, lakehouse_subprocess, run_cli

from lakehouse.errors import LockBusy

# One Azurite for the whole run: with pytest-xdist, every test that needs it runs in one worker.
pytestmark = pytest.mark.xdist_group("azurite")

ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key: public, documented by Microsoft, useless outside the emulator.
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST, PORT = "127.0.0.1", 10000


def connection_string(key: str = DEV_KEY) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
            f"BlobEndpoint=http://{HOST}:{PORT}/{ACCOUNT};")


def _blob_service_answers() -> bool:
    try:
        urllib.request.urlopen(f"http://{HOST}:{PORT}/{ACCOUNT}?comp=list", timeout=2)
    except urllib.error.HTTPError:
        return True  # an HTTP answer (403 without credentials): a Blob service is there
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """Azurite's Blob service on 127.0.0.1:10000, stopped by PID at the end. If one already runs
    there (`make azurite`), it is used: every test works in containers of its own."""
    if _blob_service_answers():
        yield
        return
    with socket.socket() as probe:
        if probe.connect_ex((HOST, PORT)) == 0:
            pytest.fail(f"port {PORT} is taken by something that is not a Blob service")
    binary = REPO / "node_modules" / ".bin" / "azurite-blob"
    assert binary.exists(), "Azurite is not installed: run `make setup` (npm ci)"
    location = tmp_path_factory.mktemp("azurite")
    log = (location / "azurite.log").open("w")
    proc = subprocess.Popen([str(binary), "--blobHost", HOST, "--blobPort", str(PORT), "--location", str(location),
                             "--skipApiVersionCheck", "--disableTelemetry", "--loose"],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not _blob_service_answers():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"Azurite did not start: {(location / 'azurite.log').read_text()[-2000:]}")
        time.sleep(0.2)
    yield
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture
def azure_conf(azurite, tmp_path, monkeypatch) -> Path:
    """A config like conf/azurite.toml, with containers of this test's own."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string())
    suffix = secrets.token_hex(4)
    text = (REPO / "conf" / "azurite.toml").read_text()
    for layer in ("bronze", "silver", "gold"):
        text = text.replace(f"abfs://{layer}@", f"abfs://{layer}-{suffix}@")
    conf = tmp_path / "azurite.toml"
    conf.write_text(text)
    return conf


def test_upload_run_sql_incremental_and_collisions_on_azurite(spark, azure_conf, tmp_path):
    local = tmp_path / "events"
    assert run_cli("generate", "--sessions", "2000", "--files", "2", "--seed", "51", "--out", str(local),
                   "--start", "2026-11-01", "--days", "3").code == 0
    first = sorted(local.glob("*.jsonl"))
    r = run_cli("--conf", str(azure_conf), "upload", *map(str, first))
    assert r.code == 0, r.err
    assert "uploaded 2 of 2 files" in r.out and "MD5 ok" in r.err

    r = run_cli("--conf", str(azure_conf), "run", "--now", "2026-11-04T03:00:00Z", "--counts")
    assert r.code == 0, r.err
    exp = expected_from(first)
    assert f"rows ingested: {len(exp.sessions)}" in r.out
    assert "release 1 (closed): periods 2026-11-01..2026-11-03 (3), silver.sessions versions 0..1" in r.out

    r = run_cli("--conf", str(azure_conf), "sql", "SELECT continent, dp_sessions FROM gold.sessions_per_continent",
                "--format", "json")
    assert r.code == 0, r.err
    assert len(r.out.splitlines()) == 3 * 6  # three days, six continents

    # A second batch: only its day is new; the day before it had no rows and gets noisy zeros.
    second_dir = tmp_path / "more"
    run_cli("generate", "--sessions", "500", "--seed", "52", "--start", "2026-11-05", "--days", "1",
            "--out", str(second_dir))
    second = sorted(second_dir.glob("*.jsonl"))
    exp2 = expected_from(second, already=exp.sessions)
    assert run_cli("--conf", str(azure_conf), "upload", *map(str, second)).code == 0
    r = run_cli("--conf", str(azure_conf), "run", "--now", "2026-11-06T03:00:00Z")
    assert r.code == 0, r.err
    assert "release 2 (closed): periods 2026-11-04..2026-11-05 (2), silver.sessions versions 0..2" in r.out
    audit = run_cli("--conf", str(azure_conf), "sql", "SELECT DISTINCT release_id, period_start, rows_in FROM "
                    "silver.release_audit WHERE release_id = 2 ORDER BY period_start", "--format", "json")
    assert [json.loads(line) for line in audit.out.splitlines()] == [
        {"release_id": 2, "period_start": "2026-11-04", "rows_in": 0},
        {"release_id": 2, "period_start": "2026-11-05", "rows_in": len(exp2.sessions)}]

    # Bronze is immutable: an existing name is refused, the other file still lands.
    extra = tmp_path / "extra.jsonl"
    extra.write_text(first[0].read_text().splitlines()[0] + "\n")
    r = run_cli("--conf", str(azure_conf), "upload", str(first[0]), str(extra))
    assert r.code == 1
    assert "uploaded 1 of 2 files" in r.out
    assert "1 of 2 files not uploaded" in r.error and "already exists" in r.error and "immutable" in r.error


@pytest.mark.slow
def test_a_lost_run_lease_stops_the_run_before_it_stages_anything(azure_conf, tmp_path):
    """The run pauses just before staging its release; meanwhile its lease is broken (as when it
    expired and another run took it). When the run goes on it must notice and stop, writing nothing."""
    from azure.storage.blob import BlobLeaseClient

    from lakehouse import azure
    from lakehouse.config import load_config
    from lakehouse.storage import Locations

    local = tmp_path / "events"
    assert run_cli("generate", "--sessions", "300", "--seed", "53", "--out", str(local), "--start", "2026-11-01",
                   "--days", "1").code == 0
    assert run_cli("--conf", str(azure_conf), "upload", *map(str, local.glob("*.jsonl"))).code == 0
    assert run_cli("--conf", str(azure_conf), "ingest").code == 0
    config = load_config(azure_conf)
    settings, loc = azure.AzureSettings.from_config(config), Locations.from_config(config)
    lock = azure.parse_url(loc.lock)
    env = {"LAKEHOUSE_FAILPOINT": "release-before-stage", "LAKEHOUSE_FAILPOINT_PAUSE": "12",
           "AZURE_STORAGE_CONNECTION_STRING": connection_string()}
    proc = lakehouse_subprocess("--conf", str(azure_conf), "release", "--now", "2026-11-03T00:00:00Z", env=env)
    for line in proc.stderr:
        if "FAILPOINT release-before-stage" in line:
            break
    blob = settings.service_client().get_blob_client(lock.container, lock.path)
    BlobLeaseClient(blob).break_lease(lease_break_period=0)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 75, err
    assert "stopped before staging release 1: the run lease" in err and "could not be renewed" in err
    staging_dir = azure.parse_url(loc.release_staging)
    container = settings.service_client().get_container_client(staging_dir.container)
    assert not [b.name for b in container.list_blobs(name_starts_with=staging_dir.path)]
    assert not [b.name for b in container.list_blobs(name_starts_with=azure.parse_url(loc.release_audit).path)]
    gold = azure.parse_url(loc.gold)
    assert not list(settings.service_client().get_container_client(gold.container).list_blobs())


def test_wrong_key_is_a_clear_authentication_error_without_secrets(spark, azure_conf, monkeypatch):
    wrong = DEV_KEY[:-8] + "AAAAAAA="
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(wrong))
    for args in (["run"], ["budget"], ["upload", str(REPO / "README.md")]):
        r = run_cli("--conf", str(azure_conf), *args)
        assert r.code == 1, args
        assert "rejected the credentials" in r.error or "refused access" in r.error, r.err
        for secret in (wrong, DEV_KEY, wrong[:20], DEV_KEY[:20]):
            assert secret not in r.out + r.err
    # Nor does the key reach Spark's own configuration (what the Spark UI's environment page shows).
    dump = json.dumps(spark.sparkContext.getConf().getAll()) + json.dumps(dict(spark.conf.getAll))
    assert DEV_KEY not in dump and wrong not in dump


def test_blob_lease_lets_one_run_at_a_time(azure_conf):
    from lakehouse import azure
    from lakehouse.config import load_config
    from lakehouse.storage import Locations

    config = load_config(azure_conf)
    settings = azure.AzureSettings.from_config(config)
    loc = Locations.from_config(config)
    azure.prepare_containers(settings, [loc.silver])
    with azure.lease_lock(settings, loc.lock, "first"):
        with pytest.raises(LockBusy, match="another lakehouse run holds the lease"):
            with azure.lease_lock(settings, loc.lock, "second"):
                pass
    with azure.lease_lock(settings, loc.lock, "third"):  # released: the next run gets it
        pass


def test_secrets_are_redacted_from_any_message(monkeypatch):
    from lakehouse.errors import redact

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string())
    text = f"failed with {connection_string()} and key {DEV_KEY} and fs.azure.account.key.x.dfs.core.windows.net=abc"
    cleaned = redact(text)
    assert DEV_KEY not in cleaned and "=abc" not in cleaned and "***" in cleaned


class _FakeIdentityEndpoint(http.server.BaseHTTPRequestHandler):
    """Azure Container Apps' local managed-identity endpoint, as documented (api-version 2019-08-01)."""

    header = "identity-header-secret"
    expires_on = 1_900_000_000

    def do_GET(self):  # http.server's naming
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        ok = (self.headers.get("X-IDENTITY-HEADER") == self.header and query.get("api-version") == ["2019-08-01"]
              and query.get("resource") == ["https://storage.azure.com/"]
              and query.get("client_id") == ["client-123"])
        body = (json.dumps({"access_token": "token-for-storage", "expires_on": str(self.expires_on),
                            "token_type": "Bearer"}) if ok else '{"error": "unauthorized"}').encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_container_apps_identity_provider_speaks_the_identity_endpoint_protocol(spark):
    """The JVM token provider ABFS uses for `auth = "msi"` on Container Apps, against a local
    endpoint speaking that protocol (no Azure here)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeIdentityEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        jvm = spark.sparkContext._jvm
        conf = jvm.org.apache.hadoop.conf.Configuration(False)
        conf.set("lakehouse.identity.endpoint", f"http://127.0.0.1:{server.server_port}/msi/token")
        conf.set("lakehouse.identity.client.id", "client-123")
        conf.set("lakehouse.identity.header", _FakeIdentityEndpoint.header)
        provider = jvm.dplakehouse.azure.ManagedIdentityTokenProvider()
        provider.initialize(conf, ACCOUNT)
        assert provider.getAccessToken() == "token-for-storage"
        assert provider.getExpiryTime().getTime() == _FakeIdentityEndpoint.expires_on * 1000

        conf.set("lakehouse.identity.header", "wrong")
        provider.initialize(conf, ACCOUNT)
        with pytest.raises(Exception, match="HTTP 401"):
            provider.getAccessToken()
    finally:
        server.shutdown()


def test_msi_settings_pick_the_provider_for_the_platform(monkeypatch):
    from lakehouse.azure import CONTAINER_APPS_TOKEN_PROVIDER, AzureSettings

    settings = AzureSettings(account="acct", auth="msi", endpoint="", hierarchical_namespace=True,
                             create_containers=False, lock_lease_seconds=60, client_id="client-123")
    host = "acct.dfs.core.windows.net"
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://localhost:42356/msi/token")
    conf = settings.hadoop_conf()
    assert conf[f"fs.azure.account.auth.type.{host}"] == "Custom"
    assert conf[f"fs.azure.account.oauth.provider.type.{host}"] == CONTAINER_APPS_TOKEN_PROVIDER
    assert f"fs.azure.fns.account.service.type.{host}" not in conf  # HNS: the DFS endpoint
    monkeypatch.delenv("IDENTITY_ENDPOINT")
    conf = settings.hadoop_conf()
    assert conf[f"fs.azure.account.oauth.provider.type.{host}"].endswith("MsiTokenProvider")
    assert conf[f"fs.azure.account.oauth2.client.id.{host}"] == "client-123"
    assert not any("key" in k for k in conf)
