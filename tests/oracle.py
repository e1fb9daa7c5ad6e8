"""Independent references to check the pipeline against: Bronze files read in plain Python (the
counts), and the analytic Gaussian's sigma (the noise; analytic_gaussian_sigma, at the end).

The reading knows nothing of Spark or of streaming.transform: it applies the documented acceptance rules
(JSON object, fullVisitorId and visitId present, integers where integers belong, in range)
line by line, the slow and obvious way.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from scipy import optimize, stats
from support import TEST_PSEUDONYM_KEY


def _int(value, lo: int, hi: int, required: bool) -> bool:
    if value is None or (isinstance(value, str) and not value.strip()):
        return not required
    if isinstance(value, bool):
        return False
    try:
        number = int(str(value).strip())
    except ValueError:
        return False
    return lo <= number < hi


def is_valid(line: str) -> bool:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return False
    if not isinstance(rec, dict):
        return False
    visitor = str(rec.get("fullVisitorId") or "").strip()
    totals = rec.get("totals") or {}
    return (bool(visitor) and " " not in visitor
            and _int(rec.get("visitId"), 0, 2**63 - 1, True)
            and _int(rec.get("visitStartTime"), 946_684_800, 4_102_444_800, True)
            and _int(totals.get("pageviews"), 0, 100_001, False)
            and _int(totals.get("timeOnSite"), 0, 86_401, False))


def pseudonym(message: str, key: str = TEST_PSEUDONYM_KEY) -> str:
    """HMAC-SHA256 hex, as Silver's session_id and user_id are made (RFC 2104, Python's hmac)."""
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def session_key(line: str) -> str:
    """The session_id Silver must hold for a valid line: a pseudonym of visitor id and visit id."""
    rec = json.loads(line)
    return pseudonym(f"{str(rec['fullVisitorId']).strip()}/{int(str(rec['visitId']).strip())}")


def visitor_ids(files: list[Path]) -> set[str]:
    """Every raw fullVisitorId in the files' valid lines: none of them may appear in Silver."""
    return {str(json.loads(line)["fullVisitorId"]).strip() for path in files for line in read_lines(path)
            if is_valid(line)}


def read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as fh:
        return [line.rstrip("\n") for line in fh if line.strip()]


@dataclass
class Expected:
    sessions: set[str] = field(default_factory=set)
    bad_lines: int = 0
    valid_lines: int = 0
    continents: Counter = field(default_factory=Counter)

    @property
    def duplicates(self) -> int:
        return self.valid_lines - len(self.sessions)


def expected_from(files: list[Path], already: set[str] | None = None) -> Expected:
    """What ingesting ``files`` (in order) should do to a Silver that holds ``already``."""
    exp = Expected()
    seen = set(already or ())
    for path in files:
        for line in read_lines(path):
            if not is_valid(line):
                exp.bad_lines += 1
                continue
            exp.valid_lines += 1
            key = session_key(line)
            if key not in seen:
                seen.add(key)
                exp.sessions.add(key)
                exp.continents[(json.loads(line).get("geoNetwork") or {}).get("continent") or "(not set)"] += 1
    return exp


def analytic_gaussian_sigma(epsilon: float, delta: float, l2: float) -> float:
    """Balle & Wang (2018), Theorem 8: the smallest sigma with
    Phi(l2/(2 sigma) - eps sigma/l2) - e^eps Phi(-l2/(2 sigma) - eps sigma/l2) <= delta."""
    def excess(sigma):
        a, b = l2 / (2 * sigma), epsilon * sigma / l2
        return stats.norm.cdf(a - b) - math.exp(epsilon) * stats.norm.cdf(-a - b) - delta
    return optimize.brentq(excess, 1e-6 * l2, 1e4 * l2, xtol=1e-12)
