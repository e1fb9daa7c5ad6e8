"""Sample events in the shape of the public Google Analytics sample export, as JSON Lines.

Realistic where it matters for a DP pipeline: users have several sessions with a heavy tail (a few
users have hundreds), some users travel (two continents), rare countries have only a handful of
users, and the export's quirks are there (numbers as strings, no ``timeOnSite`` for bounces,
``"(not set)"`` and ``"not available in demo dataset"`` placeholders, nested ``trafficSource`` and
``hits[]``). Output is deterministic for a seed. User profiles depend only on the user number, not
on the seed, so a second batch generated with another seed brings back returning users.
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import json
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lakehouse.errors import LakehouseError

# (country, subContinent, continent, weight, cities)
COUNTRIES = [
    ("United States", "Northern America", "Americas", 40.0, ["New York", "Mountain View", "San Francisco", "Chicago"]),
    ("India", "Southern Asia", "Asia", 6.0, ["Bengaluru", "Hyderabad", "Mumbai"]),
    ("United Kingdom", "Northern Europe", "Europe", 4.0, ["London", "Manchester"]),
    ("Canada", "Northern America", "Americas", 3.0, ["Toronto", "Vancouver"]),
    ("Germany", "Western Europe", "Europe", 2.5, ["Berlin", "Munich"]),
    ("Japan", "Eastern Asia", "Asia", 2.5, ["Tokyo", "Osaka"]),
    ("France", "Western Europe", "Europe", 2.0, ["Paris"]),
    ("Brazil", "South America", "Americas", 2.0, ["Sao Paulo"]),
    ("Australia", "Australasia", "Oceania", 1.8, ["Sydney", "Melbourne"]),
    ("Spain", "Southern Europe", "Europe", 1.5, ["Madrid", "Barcelona"]),
    ("Mexico", "Central America", "Americas", 1.2, ["Mexico City"]),
    ("Netherlands", "Western Europe", "Europe", 1.2, ["Amsterdam"]),
    ("Italy", "Southern Europe", "Europe", 1.2, ["Milan", "Rome"]),
    ("Taiwan", "Eastern Asia", "Asia", 1.0, ["Taipei"]),
    ("Poland", "Eastern Europe", "Europe", 0.9, ["Warsaw"]),
    ("Turkey", "Western Asia", "Asia", 0.9, ["Istanbul"]),
    ("Vietnam", "Southeast Asia", "Asia", 0.8, ["Hanoi"]),
    ("Thailand", "Southeast Asia", "Asia", 0.8, ["Bangkok"]),
    ("Indonesia", "Southeast Asia", "Asia", 0.7, ["Jakarta"]),
    ("Singapore", "Southeast Asia", "Asia", 0.6, ["Singapore"]),
    ("Israel", "Western Asia", "Asia", 0.5, ["Tel Aviv-Yafo"]),
    ("Ireland", "Northern Europe", "Europe", 0.5, ["Dublin"]),
    ("Sweden", "Northern Europe", "Europe", 0.5, ["Stockholm"]),
    ("South Africa", "Southern Africa", "Africa", 0.4, ["Cape Town", "Johannesburg"]),
    ("Nigeria", "Western Africa", "Africa", 0.3, ["Lagos"]),
    ("Egypt", "Northern Africa", "Africa", 0.3, ["Cairo"]),
    ("Kenya", "Eastern Africa", "Africa", 0.15, ["Nairobi"]),
    ("New Zealand", "Australasia", "Oceania", 0.3, ["Auckland"]),
    ("Argentina", "South America", "Americas", 0.4, ["Buenos Aires"]),
    ("Chile", "South America", "Americas", 0.3, ["Santiago"]),
    ("(not set)", "(not set)", "(not set)", 0.2, ["(not set)"]),
    # Rare countries: a handful of users at most, so DP partition selection should drop them.
    ("Tuvalu", "Polynesia", "Oceania", 0.0005, ["Funafuti"]),
    ("Liechtenstein", "Western Europe", "Europe", 0.0005, ["Vaduz"]),
    ("Greenland", "Northern America", "Americas", 0.0005, ["Nuuk"]),
]
DEVICES = [("desktop", 0.62, False), ("mobile", 0.31, True), ("tablet", 0.06, True), ("(not set)", 0.01, False)]
BROWSERS = {"desktop": ["Chrome", "Firefox", "Safari", "Edge"], "mobile": ["Chrome", "Safari", "Samsung Internet"],
            "tablet": ["Safari", "Chrome"], "(not set)": ["(not set)"]}
SYSTEMS = {"desktop": ["Windows", "Macintosh", "Linux", "Chrome OS"], "mobile": ["Android", "iOS"],
           "tablet": ["iOS", "Android"], "(not set)": ["(not set)"]}
SOURCES = [("google", "organic"), ("(direct)", "(none)"), ("youtube.com", "referral"), ("google", "cpc"),
           ("mall.googleplex.com", "referral"), ("Partners", "affiliate")]
PAGES = ["/home", "/google+redesign/apparel", "/google+redesign/bags", "/basket.html", "/signin.html",
         "/google+redesign/drinkware", "/store.html"]
PROFILE_SEED = 20160801  # user profiles are a function of the user number only


@dataclass
class GenerateResult:
    files: list[str] = field(default_factory=list)
    sessions: int = 0  # distinct sessions written (valid ones)
    users: int = 0
    lines: int = 0
    duplicate_lines: int = 0
    bad_lines: int = 0

    def summary(self) -> str:
        return (f"wrote {self.lines} lines to {len(self.files)} files: {self.sessions} sessions of {self.users} users, "
                f"{self.duplicate_lines} duplicate lines, {self.bad_lines} bad lines")


def _profile_rng(attribute: int) -> np.random.Generator:
    return np.random.default_rng([PROFILE_SEED, attribute])


def _visitor_id(users: np.ndarray) -> list[str]:
    # A bijection on [0, 10**19): distinct users get distinct 19-digit ids that look like GA's.
    return [f"{(int(u) * 2654435761 + 1234567891) % 10**19:019d}" for u in users]


def _user_profiles(n_users: int) -> dict[str, np.ndarray]:
    """Home country, main device and travel destination for users 0..n_users-1 (prefix-stable)."""
    weights = np.array([c[3] for c in COUNTRIES])
    country = np.searchsorted(np.cumsum(weights / weights.sum()), _profile_rng(1).random(n_users), side="right")
    device_w = np.array([d[1] for d in DEVICES])
    device = np.searchsorted(np.cumsum(device_w / device_w.sum()), _profile_rng(2).random(n_users), side="right")
    travels = _profile_rng(3).random(n_users) < 0.02
    abroad = _profile_rng(4).integers(0, len(COUNTRIES) - 4, n_users)  # never a rare country
    activity = _profile_rng(5).pareto(1.3, n_users) + 1.0  # heavy tail: a few very active users
    return {"country": np.minimum(country, len(COUNTRIES) - 1), "device": np.minimum(device, len(DEVICES) - 1),
            "travels": travels, "abroad": abroad, "activity": activity}


def generate(out_dir: str | Path, sessions: int, files: int = 1, seed: int = 0,
             start: dt.date = dt.date(2016, 8, 1), days: int = 365, duplicate_rate: float = 0.0,
             bad_rate: float = 0.0, users: int | None = None, gzip_output: bool = False) -> GenerateResult:
    """Writes ``sessions`` sessions to ``files`` JSON Lines files in time order (like daily exports)."""
    if sessions < 1 or files < 1 or files > sessions:
        raise LakehouseError(f"need 1 <= --files ({files}) <= --sessions ({sessions})")
    if not (0 <= duplicate_rate < 1 and 0 <= bad_rate < 1):
        raise LakehouseError("--duplicate-rate and --bad-rate must be in [0, 1)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ".jsonl.gz" if gzip_output else ".jsonl"
    names = [out / f"ga_sessions_{start:%Y%m%d}_s{seed}_{k:04d}of{files:04d}{suffix}" for k in range(files)]
    existing = [str(n) for n in names if n.exists()]
    if existing:
        raise LakehouseError(f"{existing[0]} already exists and Bronze is immutable: use another --seed or --start")

    rng = np.random.default_rng(seed)
    n_users = users or max(1, int(sessions / 2.2))
    prof = _user_profiles(n_users)
    p = prof["activity"] / prof["activity"].sum()
    user = rng.choice(n_users, size=sessions, p=p)
    t0 = int(dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC).timestamp())
    t = t0 + rng.integers(0, days * 86_400, sessions)
    # visitId = visitStartTime, as in GA; nudge the rare same-user same-second pairs apart.
    while True:
        key = user.astype(np.int64) * (1 << 34) + t
        _, first = np.unique(key, return_index=True)
        if len(first) == sessions:
            break
        dup = np.ones(sessions, bool)
        dup[first] = False
        t[dup] += 1
    order = np.argsort(t, kind="stable")
    user, t = user[order], t[order]

    travelling = prof["travels"][user] & (rng.random(sessions) < 0.3)
    country = np.where(travelling, prof["abroad"][user], prof["country"][user])
    device = np.where(rng.random(sessions) < 0.15, rng.integers(0, 3, sessions), prof["device"][user])
    bounce = rng.random(sessions) < 0.45
    pageviews = np.where(bounce, 1, 1 + rng.geometric(0.25, sessions))
    time_on_site = np.where(bounce, 0, np.minimum(rng.gamma(1.6, 190.0, sessions).astype(int) + 5, 20_000))
    hits = pageviews + rng.integers(0, 3, sessions)
    as_string = rng.random(sessions) < 0.8
    city_hidden = rng.random(sessions) < 0.5
    picks = rng.integers(0, 1 << 30, (sessions, 4))
    visitor_ids = _visitor_id(np.unique(user))
    visitor_of = dict(zip(np.unique(user).tolist(), visitor_ids, strict=True))

    result = GenerateResult(sessions=sessions, users=len(visitor_ids), duplicate_lines=0, bad_lines=0)
    # Re-deliveries land at a later position (often a later file), as a resent export would; broken
    # lines anywhere. Line j of the output is session order[j] (order[j] >= sessions: an extra line).
    n_dup = int(round(sessions * duplicate_rate))
    n_bad = int(round(sessions * bad_rate))
    dup_src = rng.choice(sessions, size=n_dup, replace=False)
    extra_pos = np.concatenate([rng.integers(dup_src, sessions) + 0.5 if n_dup else np.zeros(0),
                                rng.integers(0, sessions, n_bad) + 0.5])
    position = np.concatenate([np.arange(sessions, dtype=float), extra_pos])
    line_order = np.argsort(position, kind="stable")
    result.duplicate_lines, result.bad_lines = n_dup, n_bad
    result.lines = len(line_order)

    # Rendering is the hot loop: plain lists instead of numpy scalars, string templates instead of
    # json.dumps (every value is a number or one of the fixed strings above: nothing to escape), and
    # one process per core, each writing whole files.
    global _PLAN
    _PLAN = _Plan(
        visitor=[visitor_of[u] for u in user.tolist()], start=t.tolist(),
        date=[d.replace("-", "") for d in np.datetime_as_string(t.astype("datetime64[s]"), unit="D").tolist()],
        cols=list(zip(*[a.tolist() for a in (country, device, bounce, pageviews, time_on_site, hits, as_string,
                                              city_hidden, picks[:, 0], picks[:, 1], picks[:, 2], picks[:, 3])],
                      strict=True)),
        extra=[int(i) for i in dup_src] + [_bad_line(k, rng) for k in range(n_bad)],
        line_order=line_order.tolist(), sessions=sessions, gzip_output=gzip_output)
    bounds = np.linspace(0, len(line_order), files + 1).astype(int).tolist()
    jobs = [(str(name), bounds[k], bounds[k + 1]) for k, name in enumerate(names)]
    workers = min(os.cpu_count() or 1, files)
    try:
        if workers > 1 and sessions >= 50_000:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                pool.starmap(_write_file, jobs)
        else:
            for job in jobs:
                _write_file(*job)
    finally:
        _PLAN = None
    result.files = [str(n) for n in names]
    return result


@dataclass
class _Plan:
    visitor: list[str]
    start: list[int]
    date: list[str]
    cols: list[tuple]
    extra: list  # session index of a re-delivery, or a broken line
    line_order: list[int]
    sessions: int
    gzip_output: bool


_PLAN: _Plan | None = None  # inherited by forked writer processes


def _write_file(name: str, first: int, last: int) -> None:
    plan = _PLAN
    assert plan is not None, "_write_file runs inside generate(), which sets _PLAN"
    out = []
    for j in plan.line_order[first:last]:
        if j >= plan.sessions:
            j = plan.extra[j - plan.sessions]
            if isinstance(j, str):
                out.append(j)
                continue
        out.append(_render(plan.visitor[j], plan.start[j], plan.date[j], *plan.cols[j]))
    _write_atomically(Path(name), out, plan.gzip_output)


@functools.cache
def _hits(first_page: int, n: int) -> str:
    return ",".join(f'{{"hitNumber":"{h + 1}","time":"{h * 17000}","type":"PAGE","page":{{"pagePath":'
                    f'"{PAGES[(first_page + h) % len(PAGES)]}"}}}}' for h in range(n))


def _render(visitor: str, start_ts: int, date: str, country: int, device: int, bounce: bool, pageviews: int,
            time_on_site: int, n_hits: int, as_string: bool, city_hidden: bool, p0: int, p1: int, p2: int,
            p3: int) -> str:
    c_name, sub, cont, _, cities = COUNTRIES[country]
    d_name, _, is_mobile = DEVICES[device]
    br, os_, src = BROWSERS[d_name], SYSTEMS[d_name], SOURCES[p2 % len(SOURCES)]
    q = '"' if as_string else ""
    totals = f'"visits":{q}1{q},"hits":{q}{n_hits}{q},"pageviews":{q}{pageviews}{q}'
    totals += f',"bounces":{q}1{q}' if bounce else f',"timeOnSite":{q}{time_on_site}{q}'
    if p3 % 3 == 0:
        totals += f',"newVisits":{q}1{q}'
    city = "not available in demo dataset" if city_hidden else cities[p0 % len(cities)]
    keyword = "(not provided)" if src[1] == "organic" else "(not set)"
    hits = _hits(p1 % len(PAGES), min(n_hits, 3))
    return (
        f'{{"visitorId":null,"visitNumber":"{1 + p3 % 7}","visitId":{q}{start_ts}{q},'
        f'"visitStartTime":{q}{start_ts}{q},"date":"{date}","totals":{{{totals}}},'
        f'"trafficSource":{{"referralPath":"(not set)","campaign":"(not set)","source":"{src[0]}",'
        f'"medium":"{src[1]}","keyword":"{keyword}","adwordsClickInfo":{{"criteriaParameters":'
        f'"not available in demo dataset"}}}},'
        f'"device":{{"browser":"{br[p0 % len(br)]}","browserVersion":"not available in demo dataset",'
        f'"operatingSystem":"{os_[p1 % len(os_)]}","isMobile":{"true" if is_mobile else "false"},'
        f'"deviceCategory":"{d_name}"}},'
        f'"geoNetwork":{{"continent":"{cont}","subContinent":"{sub}","country":"{c_name}",'
        f'"region":"not available in demo dataset","city":"{city}","networkDomain":"(not set)"}},'
        f'"fullVisitorId":"{visitor}","channelGrouping":"{"Organic Search" if src[1] == "organic" else "Referral"}",'
        f'"socialEngagementType":"Not Socially Engaged","hits":[{hits}]}}'
    )


def _bad_line(k: int, rng: np.random.Generator) -> str:
    """One of four kinds of broken record a real export or transport produces."""
    kind = k % 4
    vid = f"{int(rng.integers(10**17, 10**18)):019d}"
    base: dict[str, Any] = {"fullVisitorId": vid, "visitId": "1470000000", "visitStartTime": "1470000000",
            "totals": {"pageviews": "2"}, "geoNetwork": {"continent": "Europe"}, "device": {"deviceCategory": "desktop"}}
    if kind == 0:
        return json.dumps(base)[: 40]  # truncated line: not JSON
    if kind == 1:
        del base["visitId"]
        return json.dumps(base)
    if kind == 2:
        base["totals"]["pageviews"] = "-3"
        return json.dumps(base)
    base["visitStartTime"] = "yesterday"
    return json.dumps(base)


def _write_atomically(path: Path, lines: list[str], gzip_output: bool) -> None:
    # Write to a hidden temp name, then rename: the stream never sees a half-written file.
    tmp = path.with_name(f".{path.name}.tmp")
    data = ("\n".join(lines) + ("\n" if lines else "")).encode()
    if gzip_output:
        data = gzip.compress(data, compresslevel=5)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
