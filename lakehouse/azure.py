"""Azure Blob Storage: credentials, Spark's ABFS settings, containers, the run lease, uploads.

Spark reaches the containers through Hadoop's ABFS connector (``abfss://`` on Azure, ``abfs://``
over plain HTTP to Azurite). Hadoop 3.5 - the one inside pyspark 4.2 - no longer ships the old
``wasb`` driver; ABFS talks to flat-namespace accounts (and to Azurite, which has no DFS endpoint)
through the Blob endpoint with ``fs.azure.fns.account.service.type = BLOB``.

Credentials come from the environment only and never reach a log, an error message or Spark's
config (they are set on the Hadoop configuration, and Spark's redaction regex covers them too):

* ``AZURE_STORAGE_CONNECTION_STRING``, or ``AZURE_STORAGE_ACCOUNT`` + ``AZURE_STORAGE_KEY`` (auth "key");
* a managed identity (auth "msi"): azure-identity for the SDK, ABFS OAuth for Spark.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse.config import Config
from lakehouse.errors import LakehouseError, LockBusy, redact
from lakehouse.lock import LeaseLost, RunLease
from lakehouse.log import progress

if TYPE_CHECKING:
    from azure.storage.blob import BlobLeaseClient, BlobServiceClient
    from pyspark.sql import SparkSession

_URL = re.compile(r"^(abfss?)://(?P<container>[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])?)@(?P<host>[^/]+)(?P<path>/.*)?$")
CONTAINER_APPS_TOKEN_PROVIDER = "dplakehouse.azure.ManagedIdentityTokenProvider"


@dataclass(frozen=True)
class BlobLocation:
    container: str
    account: str
    path: str  # inside the container, no leading slash

    def child(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.path, *parts) if p.strip("/"))


def parse_url(url: str) -> BlobLocation:
    match = _URL.match(url)
    if not match:
        raise LakehouseError(f"{url} is not an ABFS URL (abfss://<container>@<account>.dfs.core.windows.net/<path>)")
    host = match["host"]
    return BlobLocation(match["container"], host.split(".")[0], (match["path"] or "").strip("/"))


def _connection_string_parts(value: str) -> dict[str, str]:
    parts = {}
    for item in value.split(";"):
        if "=" in item:
            key, _, val = item.partition("=")
            parts[key.strip().lower()] = val.strip()
    return parts


@dataclass(frozen=True)
class AzureSettings:
    account: str
    auth: str
    endpoint: str  # Azurite "host:port" (plain HTTP), or "" for Azure itself
    hierarchical_namespace: bool
    create_containers: bool
    lock_lease_seconds: int
    key: str | None = field(default=None, repr=False)
    client_id: str | None = None  # a user-assigned managed identity

    @classmethod
    def from_config(cls, config: Config) -> AzureSettings:
        az = config.azure
        if az is None:
            raise LakehouseError(f"{config.source} has no [azure] section")
        account, key = az.account, None
        if az.auth == "key":
            conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
            if conn:
                parts = _connection_string_parts(conn)
                account = account or parts.get("accountname", "")
                if parts.get("accountname") and parts["accountname"] != account:
                    raise LakehouseError(f"AZURE_STORAGE_CONNECTION_STRING is for account {parts['accountname']}, "
                                         f"the config ({config.source}) for {account}")
                key = parts.get("accountkey")
            else:
                account = account or os.environ.get("AZURE_STORAGE_ACCOUNT", "")
                key = os.environ.get("AZURE_STORAGE_KEY")
            if not key:
                raise LakehouseError("no Azure storage credentials: set AZURE_STORAGE_CONNECTION_STRING, or "
                                     "AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY (or use [azure] auth = \"msi\")")
        if not account:
            raise LakehouseError(f"{config.source}: azure.account is empty and no account is in the environment")
        return cls(account=account, auth=az.auth, endpoint=az.endpoint,
                   hierarchical_namespace=az.hierarchical_namespace, create_containers=az.create_containers,
                   lock_lease_seconds=az.lock_lease_seconds, key=key,
                   client_id=os.environ.get("AZURE_CLIENT_ID") or None)

    @property
    def account_url(self) -> str:
        return f"http://{self.endpoint}/{self.account}" if self.endpoint else f"https://{self.account}.blob.core.windows.net"

    @property
    def dfs_host(self) -> str:
        return f"{self.account}.dfs.core.windows.net"

    def hadoop_conf(self) -> dict[str, str]:
        """ABFS settings for this account (secret values included: set them on Hadoop's configuration
        only, never on SparkConf or in a log)."""
        host = self.dfs_host
        conf = {
            f"fs.azure.account.hns.enabled.{host}": str(self.hierarchical_namespace).lower(),
            # Apache HttpClient in ABFS insists on an SSL socket factory even for Azurite's plain HTTP.
            "fs.azure.networking.library": "JDK_HTTP_URL_CONNECTION",
            # hadoop-azure 3.5 sends client metrics to the account from a JVM shutdown hook, retrying
            # with back-off when the account is unreachable: a JVM whose storage went away (Azurite
            # stopped, a network cut) then hung in exit for over 10 minutes (seen after the tests).
            "fs.azure.metrics.collection.enabled": "false",
        }
        if not self.hierarchical_namespace:
            conf[f"fs.azure.fns.account.service.type.{host}"] = "BLOB"
        if self.endpoint:
            conf["fs.azure.abfs.endpoint"] = self.endpoint
            conf["fs.azure.always.use.https"] = "false"
        if self.auth == "key":
            conf[f"fs.azure.account.auth.type.{host}"] = "SharedKey"
            conf[f"fs.azure.account.key.{host}"] = self.key or ""
        elif os.environ.get("IDENTITY_ENDPOINT"):
            # Container Apps / App Service: a local identity endpoint, not the VM metadata service,
            # served by our own provider (lakehouse/jvm, built into .jars by `make setup`).
            conf[f"fs.azure.account.auth.type.{host}"] = "Custom"
            conf[f"fs.azure.account.oauth.provider.type.{host}"] = CONTAINER_APPS_TOKEN_PROVIDER
            if self.client_id:
                conf["lakehouse.identity.client.id"] = self.client_id
        else:
            # VMs, scale sets, AKS pod identity: Hadoop's provider for the instance metadata service.
            conf[f"fs.azure.account.auth.type.{host}"] = "OAuth"
            conf[f"fs.azure.account.oauth.provider.type.{host}"] = "org.apache.hadoop.fs.azurebfs.oauth2.MsiTokenProvider"
            conf[f"fs.azure.account.oauth2.msi.tenant.{host}"] = os.environ.get("AZURE_TENANT_ID", "")
            if self.client_id:
                conf[f"fs.azure.account.oauth2.client.id.{host}"] = self.client_id
        return conf

    def service_client(self) -> BlobServiceClient:
        from azure.storage.blob import BlobServiceClient

        if self.auth == "key":
            from azure.core.credentials import AzureNamedKeyCredential

            credential: Any = AzureNamedKeyCredential(self.account, self.key or "")
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential(managed_identity_client_id=self.client_id)
        return BlobServiceClient(self.account_url, credential=credential)


@contextlib.contextmanager
def _azure_errors(what: str) -> Iterator[None]:
    """Turns SDK exceptions into one clear line without secrets (the SDK's own text can be long)."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    try:
        yield
    except ClientAuthenticationError as exc:
        code = getattr(exc, "error_code", None) or "AuthenticationFailed"
        raise LakehouseError(f"Azure storage rejected the credentials while {what} ({code}): check "
                             "AZURE_STORAGE_CONNECTION_STRING / AZURE_STORAGE_KEY or the managed identity's "
                             "role assignments") from exc
    except ServiceRequestError as exc:
        raise LakehouseError(f"cannot reach Azure storage while {what}: {str(exc).splitlines()[0]}") from exc
    except HttpResponseError as exc:
        if exc.status_code == 403:
            code = getattr(exc, "error_code", None) or "Forbidden"
            raise LakehouseError(f"Azure storage refused access while {what} ({code}): check the credentials and "
                                 "the identity's role on that container") from exc
        raise


def prepare_containers(settings: AzureSettings, urls: list[str]) -> None:
    """Checks the credentials against every container we use (a clear error before any Spark work)
    and creates missing containers if the config allows it."""
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

    client = settings.service_client()
    for container in sorted({parse_url(u).container for u in urls}):
        with _azure_errors(f"checking container {container}"):
            try:
                client.get_container_client(container).get_container_properties()
            except ResourceNotFoundError:
                if not settings.create_containers:
                    raise LakehouseError(f"container {container} does not exist in account {settings.account} "
                                         "(create it, or set [azure] create_containers = true)") from None
                try:
                    client.create_container(container)
                    progress(f"created container {container}")
                except ResourceExistsError:
                    pass  # created concurrently


def configure_spark(spark: SparkSession, settings: AzureSettings) -> None:
    from lakehouse.jvm_bridge import set_hadoop_conf

    set_hadoop_conf(spark, settings.hadoop_conf())


# ------------------------------------------------------------------------------------------
# the run lock: a blob lease


class _BlobLease(RunLease):
    """A renewed blob lease. Renewal runs every lease_seconds / 3; the first renewal that fails marks
    the lease lost for good (it may have expired and been taken by another run), and check() renews
    once more itself, so a write is guarded by a renewal at most a moment old."""

    def __init__(self, lease: BlobLeaseClient, lock_url: str):
        self._lease = lease
        self._lock_url = lock_url
        self._lost: str | None = None
        self._mutex = threading.Lock()

    def renew(self) -> None:
        with self._mutex:
            if self._lost:
                return
            try:
                self._lease.renew()
            except Exception as exc:  # noqa: BLE001 - any failure: the lease can no longer be trusted
                self._lost = f"{type(exc).__name__}: {getattr(exc, 'error_code', None) or str(exc).splitlines()[0]}"
                progress(f"warning: lost the run lease on {self._lock_url} ({self._lost}); no more writes")

    def check(self, before: str) -> None:
        self.renew()
        if self._lost:
            raise LeaseLost(f"stopped before {before}: the run lease on {self._lock_url} could not be renewed "
                            f"({redact(self._lost)}), so another run may hold it now; nothing more was written - "
                            "the next run continues from here")

    def release(self) -> None:
        if not self._lost:
            with contextlib.suppress(Exception):
                self._lease.release()


@contextlib.contextmanager
def lease_lock(settings: AzureSettings, lock_url: str, holder: str) -> Iterator[RunLease]:
    from azure.core.exceptions import HttpResponseError, ResourceExistsError

    loc = parse_url(lock_url)
    blob = settings.service_client().get_blob_client(loc.container, loc.path)
    with _azure_errors(f"taking the run lock {lock_url}"):
        try:
            blob.upload_blob(b"", overwrite=False)
        except ResourceExistsError:
            pass
        try:
            lease = blob.acquire_lease(lease_duration=settings.lock_lease_seconds)
        except HttpResponseError as exc:
            if exc.status_code == 409:
                raise LockBusy(f"another lakehouse run holds the lease on {lock_url}; it is released when that "
                               f"run ends (or {settings.lock_lease_seconds} s after it crashed) - try again "
                               "later") from None
            raise
        blob.set_blob_metadata({"holder": holder.replace('"', "'")}, lease=lease)
    held = _BlobLease(lease, lock_url)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(settings.lock_lease_seconds / 3):
            held.renew()

    renewer = threading.Thread(target=renew, name="lakehouse-lease", daemon=True)
    renewer.start()
    try:
        yield held
    finally:
        stop.set()
        renewer.join(timeout=5)
        held.release()


# ------------------------------------------------------------------------------------------
# uploads to Bronze


def _md5(path: Path) -> bytes:
    digest = hashlib.md5()  # an integrity check, as Blob storage's Content-MD5; not a security use
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def upload_files(settings: AzureSettings, bronze_url: str, files: list[str], prefix: str = "") -> int:
    """Uploads files to Bronze, never overwriting; checks each blob's MD5. Returns 0, or raises
    naming the files that were not uploaded (the others are)."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import ContentSettings

    bronze = parse_url(bronze_url)
    prepare_containers(settings, [bronze_url])
    container = settings.service_client().get_container_client(bronze.container)
    failed: list[str] = []
    total = len(files)
    for i, name in enumerate(files, 1):
        path = Path(name)
        if not path.is_file():
            failed.append(f"{name}: no such file")
            continue
        blob_name = bronze.child(prefix, path.name)
        md5 = _md5(path)
        blob = container.get_blob_client(blob_name)
        try:
            with _azure_errors(f"uploading {path.name}"), path.open("rb") as fh:
                blob.upload_blob(fh, overwrite=False, content_settings=ContentSettings(content_md5=bytearray(md5)),
                                 max_concurrency=4)
                stored = blob.get_blob_properties().content_settings.content_md5
            if stored is None or bytes(stored) != md5:
                failed.append(f"{blob_name}: MD5 mismatch after upload")
                continue
        except ResourceExistsError:
            failed.append(f"{blob_name} already exists in {bronze.container} (Bronze is immutable; rename the file)")
            continue
        if total > 1:
            progress(f"upload {i}/{total}: {blob_name} ({path.stat().st_size / 1e6:.1f} MB, MD5 ok)")
    uploaded = total - len(failed)
    print(f"uploaded {uploaded} of {total} files to {bronze.container}/{bronze.child(prefix)}")
    if failed:
        for line in failed:
            progress(f"not uploaded: {line}")
        raise LakehouseError(f"{len(failed)} of {total} files not uploaded: {failed[0]}"
                             + (f" (and {len(failed) - 1} more, listed above)" if len(failed) > 1 else ""))
    return 0
