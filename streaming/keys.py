"""The pseudonym key: where it comes from, its fingerprint, and the check that Silver was built with it
(no Spark here: the idle check of `lakehouse run` uses it too)."""

from __future__ import annotations

import hashlib
import hmac
import os

from lakehouse.errors import LakehouseError
from lakehouse.log import warn
from lakehouse.storage import Locations, is_url

PSEUDONYM_KEY_ENV = "LAKEHOUSE_PSEUDONYM_KEY"
LOCAL_DEFAULT_KEY = b"dp-lakehouse-local-default-pseudonym-key"
FINGERPRINT_PROPERTY = "lakehouse.pseudonymKeyFingerprint"
# How session_id is made; a table without it was built when session_id held the raw visitor id.
SESSION_ID_PROPERTY = "lakehouse.sessionIdScheme"
SESSION_ID_SCHEME = "hmac-sha256(fullVisitorId/visitId)"


def pseudonym_key(loc: Locations) -> bytes:
    """The HMAC key for user_id, from the environment; a fixed default only for local storage."""
    value = os.environ.get(PSEUDONYM_KEY_ENV)
    if value:
        return value.encode()
    if is_url(loc.silver):
        raise LakehouseError(f"{PSEUDONYM_KEY_ENV} is not set: remote storage needs a secret pseudonym key "
                             "(e.g. from a Key Vault secret in the job's environment)")
    warn(f"{PSEUDONYM_KEY_ENV} is not set; using the built-in local key. user_id pseudonyms are only as "
         "secret as this key: set it for anything but a demo.")
    return LOCAL_DEFAULT_KEY


def key_fingerprint(key: bytes) -> str:
    """Identifies the key without revealing it, so Silver can refuse rows hashed with another key."""
    return hmac.new(key, b"dp-lakehouse key fingerprint", hashlib.sha256).hexdigest()[:16]


def check_silver_properties(properties: dict[str, str], loc: Locations, fingerprint: str) -> None:
    """The pseudonyms in silver.sessions (with these table properties) were made by this key and this
    session_id scheme."""
    if properties.get(SESSION_ID_PROPERTY) != SESSION_ID_SCHEME:
        raise LakehouseError(
            f"silver.sessions at {loc.silver_sessions} was built by an older dp-lakehouse whose session_id holds "
            "the raw fullVisitorId: re-ingest it into a new lakehouse on the same (immutable) Bronze, e.g. "
            f"`lakehouse --root NEW_ROOT --bronze {loc.bronze} run`, then remove the old root's Silver. Its "
            "releases already spent budget: keep its ledger, and set the new lakehouse's [privacy] first_period "
            "after the periods it released, so they are not released again on a fresh budget")
    stored = properties.get(FINGERPRINT_PROPERTY)
    if stored and stored != fingerprint:
        raise LakehouseError(
            f"{PSEUDONYM_KEY_ENV} is not the key silver.sessions was built with (fingerprint {fingerprint}, "
            f"table has {stored}). A new key would split each user into two privacy units; restore the key.")


def silver_properties(fingerprint: str) -> dict[str, str]:
    return {FINGERPRINT_PROPERTY: fingerprint, SESSION_ID_PROPERTY: SESSION_ID_SCHEME}
