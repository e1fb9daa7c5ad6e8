"""The privacy budget: its authoritative record, its published copy, and what is left.

``silver.release_audit`` (restricted, Silver side) is the record of what every release spent; the
caps are checked against it alone. ``gold.privacy_ledger`` is its published copy, in the container
shared with analysts, so it is never trusted: a release first compares the two, republishes rows
the copy is missing (saying so), and refuses on rows the record does not hold. Reading fails
closed: only "neither the record nor its copy nor a staged release exists" counts as nothing
spent; a missing record beside an existing copy is a lost record, and any storage error is an error.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from deltalake.exceptions import DeltaError
from pyspark.sql import SparkSession

from dp.plan import AuditRow, AuditState, ReleaseKind
from lakehouse import catalog, schemas
from lakehouse import periods as P
from lakehouse.config import Config, Period
from lakehouse.errors import LakehouseError, spark_message
from lakehouse.log import progress
from lakehouse.readers import Commit, LocalReader, SparkReader, TableReader, local
from lakehouse.storage import Locations


class LedgerTampered(LakehouseError):
    """gold.privacy_ledger holds rows the restricted record does not."""


def read_state(tables: TableReader, loc: Locations, gold_tables: list[str],
               staged_rows: list[AuditRow] | None = None) -> AuditState:
    """The restricted record (plus releases staged but not yet published, which are spent already).
    `gold_tables`: the Gold metric tables' paths, evidence that releases were made."""
    staged_rows = staged_rows or []
    if not tables.exists(loc.release_audit):
        evidence = next((path for path in [loc.privacy_ledger, *gold_tables] if tables.exists(path)), None)
        if evidence:
            raise LakehouseError(
                f"silver.release_audit ({loc.release_audit}) is missing but Gold holds releases ({evidence}): the "
                "restricted record of the privacy spend is lost, and Gold's copy is not trusted. Restore the record "
                "(from a backup or a snapshot of the silver storage); nothing was released")
        # nothing published yet; a first release staged before a crash is spent already
        return AuditState(tuple(staged_rows))
    try:
        history = tables.history(loc.release_audit)
        rows = [AuditRow.from_mapping(r) for r in tables.rows(loc.release_audit)]
    except Exception as exc:  # any failure to read the record stops the run (never "0 spent")
        raise catalog.StorageError(f"cannot read silver.release_audit ({loc.release_audit}), the record of the "
                                   f"privacy spend: {spark_message(exc)}; nothing was released") from exc
    _check_append_only(history, loc.release_audit, "silver.release_audit")
    recorded = {r.release_id for r in rows}
    state = AuditState(tuple(rows + [r for r in staged_rows if r.release_id not in recorded]))
    for path in [loc.privacy_ledger, *gold_tables]:  # Gold never holds a release the record does not
        newest = tables.max_value(path, "release_id") if tables.exists(path) else None
        if newest is not None and newest > state.last_release_id:
            raise LakehouseError(
                f"{path} holds release {newest} but silver.release_audit records releases up to "
                f"{state.last_release_id}: the restricted record lost releases (emptied, or restored to an older "
                "version). Restore it from a backup; nothing was released")
    return state


def _check_append_only(history: list[Commit], path: str, name: str) -> None:
    """The record (and its copy) only ever grow: a DELETE, UPDATE, MERGE, overwrite or RESTORE in
    their history is a refund attempt, and is refused. (Both are created with delta.appendOnly, so
    Delta itself refuses those writes; this catches a table rewritten by other means.)"""
    for version, operation, mode, _ in history:
        if operation != "CREATE TABLE" and (operation, mode) != ("WRITE", "Append"):
            raise LakehouseError(
                f"{name} ({path}) was changed other than by appending (version {version}: {operation}"
                f"{' ' + mode if mode else ''}): spent budget could have been taken back. Restore it to its last "
                "appended version from a backup; nothing was released")


def ledger_row(row: AuditRow) -> tuple:
    """The published copy of one audit row (no exact counts)."""
    return schemas.row(schemas.PRIVACY_LEDGER, {name: getattr(row, name) for name in schemas.LEDGER_COLUMNS})


def _published(state: AuditState) -> list[tuple]:
    return [ledger_row(r) for r in state.rows if r.kind != ReleaseKind.LATE]


def ledger_gap(tables: TableReader, loc: Locations, state: AuditState) -> list[tuple]:
    """The record's rows gold.privacy_ledger is missing. Raises LedgerTampered on extra, changed or
    doubled rows."""
    expected = Counter(_published(state))
    actual: Counter = Counter()
    if tables.exists(loc.privacy_ledger):
        columns = tables.columns(loc.privacy_ledger)
        if tuple(columns) != schemas.LEDGER_COLUMNS:
            raise LedgerTampered(f"gold.privacy_ledger has columns {columns}, not {list(schemas.LEDGER_COLUMNS)}:"
                                 " it was not written by this version of dp-lakehouse; move it aside (the next run "
                                 "republishes it from silver.release_audit)")
        actual = Counter(schemas.row(schemas.PRIVACY_LEDGER, r) for r in tables.rows(loc.privacy_ledger))
    extra = actual - expected
    if extra:
        example = dict(zip(schemas.LEDGER_COLUMNS, next(iter(extra)), strict=True))
        raise LedgerTampered(
            f"gold.privacy_ledger holds {sum(extra.values())} row(s) that silver.release_audit does not (e.g. release "
            f"{example['release_id']}, metric {example['metric']}, epsilon {example['epsilon']:.6g}): it was changed "
            "outside dp-lakehouse. Restore it (RESTORE TABLE ... TO VERSION AS OF, or move it aside to have it "
            "republished); nothing was released")
    return list((expected - actual).elements())


# What delta-rs cannot answer (a file without statistics: ValueError), whose reads Spark then makes:
# it reads them, or fails closed. Integrity errors (LakehouseError) are never among them.
LOCAL_READ_ERRORS = (catalog.StorageError, DeltaError, ValueError, OSError)


@dataclass(frozen=True)
class Record:
    """What a release reads before it plans: the restricted record, what the ledger lacks of it,
    and silver.sessions' commits."""

    state: AuditState
    ledger_gap: list[tuple]
    silver_history: list[Commit]


def read_record_with(tables: TableReader, loc: Locations, gold_tables: list[str]) -> Record:
    state = read_state(tables, loc, gold_tables)
    return Record(state, ledger_gap(tables, loc, state), tables.history(loc.silver_sessions))


def read_record(spark: SparkSession, loc: Locations, gold_tables: list[str]) -> Record:
    """read_record_with delta-rs for a local lakehouse - no Spark job, where Spark's reads of these
    small tables and the max(release_id) of each Gold table cost ~7 s in a fresh JVM (measured) -
    else, or for what delta-rs cannot answer, with Spark; a check that fails, fails on either."""
    if local(loc.silver, loc.gold):
        try:
            return read_record_with(LocalReader(), loc, gold_tables)
        except LOCAL_READ_ERRORS:
            pass
    return read_record_with(SparkReader(spark), loc, gold_tables)


def repair_ledger(spark: SparkSession, loc: Locations, state: AuditState, missing: list[tuple]) -> None:
    """Republishes what gold.privacy_ledger is missing of the record (after a loss; `missing` from
    ledger_gap, which refuses a ledger with rows the record does not hold)."""
    if missing:
        catalog.ensure_table(spark, loc.privacy_ledger, schemas.PRIVACY_LEDGER, catalog.APPEND_ONLY)
        catalog.append(spark, loc.privacy_ledger, schemas.PRIVACY_LEDGER, missing)
        progress(f"gold.privacy_ledger was missing {len(missing)} row(s) of silver.release_audit: republished them")


# ------------------------------------------------------------------------------------------
# what is left


@dataclass(frozen=True)
class PeriodSpend:
    period_start: dt.date | None
    epsilon: float
    delta: float
    releases: int


@dataclass(frozen=True)
class BudgetStatus:
    period: Period
    epsilon_cap: float
    delta_cap: float
    epsilon_per_release: float
    delta_per_release: float
    spends: list[PeriodSpend]  # recent periods first
    ledger_missing: int = 0

    @property
    def lifetime(self) -> PeriodSpend:
        return next((s for s in self.spends if s.period_start is None), PeriodSpend(None, 0.0, 0.0, 0))

    def protected(self) -> str:
        """One sentence: what is protected, and how strongly."""
        if self.period == Period.NONE:
            return (f"Protected: each user's sessions over the lakehouse's whole life, epsilon {self.epsilon_cap:g} and "
                    f"delta {self.delta_cap:g} in all (each release spends epsilon {self.epsilon_per_release:g}, delta "
                    f"{self.delta_per_release:g}).")
        unit = P.describe(self.period)
        return (f"Protected: each user's sessions in any one {unit}, by what that {self.period.value}'s releases "
                f"spent (below): epsilon {self.epsilon_per_release:g} and delta {self.delta_per_release:g} for its "
                f"release, never more than epsilon {self.epsilon_cap:g} and delta {self.delta_cap:g} in all "
                f"(reprocessing included); a user active in k {self.period.value}s is protected k times less over "
                f"those {self.period.value}s.")

    def summary(self, recent: int = 14) -> str:
        lines = [self.protected()]
        if self.period == Period.NONE:
            s = self.lifetime
            remaining = max(0.0, self.epsilon_cap - s.epsilon)
            lines += [f"epsilon spent: {s.epsilon:.6g}", f"epsilon cap: {self.epsilon_cap:.6g}",
                      f"epsilon remaining: {remaining:.6g}", f"delta spent: {s.delta:.6g}",
                      f"delta cap: {self.delta_cap:.6g}", f"releases: {s.releases}",
                      f"releases left at {self.epsilon_per_release:.6g} per release: "
                      f"{int((remaining + 1e-9) // self.epsilon_per_release)}"]
        else:
            periods = [s for s in self.spends if s.period_start is not None]
            lines.append(f"periods with releases: {len(periods)}" + (f" (the {min(recent, len(periods))} latest below)"
                                                                 if periods else ""))
            if periods:
                lines.append(f"{'period':<12} {'epsilon':>9} {'cap':>6} {'delta':>9} {'cap':>8} {'releases':>8}")
                for s in periods[:recent]:
                    lines.append(f"{s.period_start!s:<12} {s.epsilon:>9.4g} {self.epsilon_cap:>6g} "
                                 f"{s.delta:>9.3g} {self.delta_cap:>8.3g} {s.releases:>8}")
        if self.ledger_missing:
            lines.append(f"note: gold.privacy_ledger is missing {self.ledger_missing} row(s) of the record; "
                         "the next release republishes them")
        return "\n".join(lines)


def status(state: AuditState, config: Config, ledger_missing: int = 0) -> BudgetStatus:
    releases: dict[dt.date | None, set[int]] = {}
    for r in state.rows:
        if r.kind != ReleaseKind.LATE:
            releases.setdefault(r.period_start, set()).add(r.release_id)
    spends = [PeriodSpend(p, *state.spent.get(p, (0.0, 0.0)), len(ids)) for p, ids in releases.items()]
    spends.sort(key=lambda s: s.period_start or dt.date.max, reverse=True)
    p = config.privacy
    return BudgetStatus(p.period, p.epsilon_cap, p.delta_cap, p.epsilon_per_release, p.delta_per_release, spends,
                        ledger_missing)
