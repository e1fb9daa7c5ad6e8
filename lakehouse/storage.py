"""Where every table, checkpoint and file lives, derived once from ``[storage]``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lakehouse.config import Config


def is_url(path: str) -> bool:
    return "://" in path


def join(base: str, *parts: str) -> str:
    out = base.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out


def _absolute(path: str) -> str:
    return path if is_url(path) else str(Path(path).expanduser().resolve())


@dataclass(frozen=True)
class Locations:
    root: str
    bronze: str
    silver: str
    gold: str
    checkpoints: str

    @classmethod
    def from_config(cls, config: Config) -> Locations:
        s = config.storage
        root = _absolute(s.root) if s.root else ""
        derived = lambda explicit, name: _absolute(explicit) if explicit else join(root, name)  # noqa: E731
        silver = derived(s.silver, "silver")
        return cls(
            root=root,
            bronze=derived(s.bronze, "bronze"),
            silver=silver,
            gold=derived(s.gold, "gold"),
            # Local: <root>/_checkpoints. Azure: inside the silver container (same trust level).
            checkpoints=_absolute(s.checkpoints) if s.checkpoints else (
                join(root, "_checkpoints") if s.root and not s.silver else join(silver, "_checkpoints")),
        )

    # Silver (row-level, pseudonymised: restricted)
    @property
    def silver_sessions(self) -> str:
        return join(self.silver, "sessions")

    @property
    def silver_quarantine(self) -> str:
        return join(self.silver, "quarantine")

    @property
    def release_audit(self) -> str:
        """The authoritative record of what every release spent (restricted; Gold has a copy)."""
        return join(self.silver, "release_audit")

    @property
    def release_bounds(self) -> str:
        """Continual release: per user and period, the contributions kept so far (restricted)."""
        return join(self.silver, "release_bounds")

    @property
    def release_tree(self) -> str:
        """Continual release: every tree node's exact and noisy value (restricted)."""
        return join(self.silver, "release_tree")

    @property
    def release_staging(self) -> str:
        """Computed-but-not-yet-published releases; DP outputs, kept beside Silver, never shared."""
        return join(self.silver, "_release_staging")

    @property
    def ingest_checkpoint(self) -> str:
        return join(self.checkpoints, "ingest")

    @property
    def restricted(self) -> str:
        """Non-private artefacts (raw-vs-DP plots): never inside Gold."""
        return join(self.root, "_restricted") if self.root and not is_url(self.root) else join(self.silver, "_restricted")

    # Gold (aggregates only: shareable)
    def gold_table(self, name: str) -> str:
        return join(self.gold, name)

    @property
    def privacy_ledger(self) -> str:
        return self.gold_table("privacy_ledger")

    @property
    def lock(self) -> str:
        return join(self.silver, "_lakehouse.lock")

    def table_path(self, qualified: str) -> str:
        """``silver.<name>`` / ``gold.<name>`` -> storage path (a name is an identifier, never a path)."""
        layer, _, name = qualified.partition(".")
        if not name.isidentifier():
            raise KeyError(qualified)
        if layer == "silver":
            return join(self.silver, name)
        if layer == "gold":
            return self.gold_table(name)
        raise KeyError(qualified)
