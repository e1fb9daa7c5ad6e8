"""The binary (dyadic) tree of continual release. Pure arithmetic, no noise, no Spark.

A period receives up to H runs; run t (1-based) adds leaf t. Level l has nodes (l, j) holding the sum
of leaves j*2^l + 1 .. (j+1)*2^l; a node is noised and stored once, when its last leaf arrives. Only
levels 0 .. L = floor(log2 H) ever complete a node within H leaves (the note's ceil(log2 H) is the
same for a power of two, and one level more otherwise: never released, so never paid for). The
running total after run t is the sum of the nodes of t's binary
decomposition (popcount(t) of them). Each level's nodes partition the leaves, so one privacy unit
changes each level by at most its per-period sensitivity, and the whole tree by (L + 1) times that
(L1; sqrt(L + 1) times in L2). See shared/notes/continual-release.md.
"""

from __future__ import annotations

Node = tuple[int, int]  # (level, index)


def levels(horizon: int) -> int:
    """L + 1: the levels that can complete a node within `horizon` leaves (H = 8: 4, H = 32: 6)."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    return horizon.bit_length()


def completed_at(t: int) -> list[Node]:
    """The nodes whose interval ends at leaf t: (0, t-1), and (l, t/2^l - 1) for every 2^l dividing t."""
    if t < 1:
        raise ValueError(f"leaves are numbered from 1, got {t}")
    nodes, level = [], 0
    while t % (1 << level) == 0:
        nodes.append((level, t // (1 << level) - 1))
        level += 1
    return nodes


def children(node: Node) -> tuple[Node, Node]:
    level, index = node
    if level == 0:
        raise ValueError("a leaf has no children")
    return (level - 1, 2 * index), (level - 1, 2 * index + 1)


def decomposition(t: int) -> list[Node]:
    """The nodes whose intervals tile leaves 1..t, largest first: one per set bit of t."""
    if t < 1:
        raise ValueError(f"leaves are numbered from 1, got {t}")
    nodes, covered = [], 0
    for level in range(t.bit_length() - 1, -1, -1):
        if t & (1 << level):
            nodes.append((level, covered >> level))
            covered += 1 << level
    return nodes
