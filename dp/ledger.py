"""The privacy ledger (gold.privacy_ledger) and the life-time budget it enforces."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse import catalog
from lakehouse.config import Config
from lakehouse.storage import Locations

# Sums of shares like 1/3 + 1/3 + 1/3 are not exactly 1.0 in floating point; a release that fits the
# cap up to this much rounding is not refused.
EPSILON_SLACK = 1e-9


@dataclass(frozen=True)
class LedgerState:
    epsilon_spent: float = 0.0
    delta_spent: float = 0.0
    releases: int = 0
    last_release_id: int = 0
    last_incremental_version: int = -1  # silver_version_to of the latest incremental release


def read_ledger(spark: SparkSession, loc: Locations) -> LedgerState:
    if not catalog.is_delta_table(spark, loc.privacy_ledger):
        return LedgerState()
    ledger = spark.read.format("delta").load(loc.privacy_ledger)
    row = ledger.agg(
        F.sum("epsilon").alias("eps"), F.sum("delta").alias("delta"),
        F.countDistinct("release_id").alias("releases"), F.max("release_id").alias("last"),
        F.max(F.when(F.col("kind") == "incremental", F.col("silver_version_to"))).alias("version"),
    ).first()
    return LedgerState(
        epsilon_spent=float(row["eps"] or 0.0), delta_spent=float(row["delta"] or 0.0),
        releases=int(row["releases"] or 0), last_release_id=int(row["last"] or 0),
        last_incremental_version=-1 if row["version"] is None else int(row["version"]),
    )


@dataclass(frozen=True)
class BudgetStatus:
    spent: float
    cap: float
    delta_spent: float
    releases: int
    per_release: float

    @property
    def remaining(self) -> float:
        return max(0.0, self.cap - self.spent)

    @property
    def releases_left(self) -> int:
        return int((self.remaining + EPSILON_SLACK) // self.per_release)

    def summary(self) -> str:
        return (f"epsilon spent: {self.spent:.6g}\nepsilon cap: {self.cap:.6g}\nepsilon remaining: {self.remaining:.6g}\n"
                f"delta spent: {self.delta_spent:.6g}\nreleases: {self.releases}\n"
                f"releases left at {self.per_release:.6g} per release: {self.releases_left}")


def budget_status(spark: SparkSession, config: Config, loc: Locations) -> BudgetStatus:
    from dp.release import pending_epsilon  # a staged release not yet published is spent already

    state = read_ledger(spark, loc)
    spent = state.epsilon_spent + pending_epsilon(spark, loc)
    return BudgetStatus(spent=spent, cap=config.privacy.epsilon_cap, delta_spent=state.delta_spent,
                        releases=state.releases, per_release=config.privacy.epsilon_per_release)


def fits_cap(spent: float, cost: float, cap: float) -> bool:
    return spent + cost <= cap + EPSILON_SLACK
