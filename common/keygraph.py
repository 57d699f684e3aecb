"""The key-sharing graph (seed 000 §5.3.2): which members share a pad stream.

At least k members must collude to learn a sender in a k-edge-connected key graph, so the
software reports k and refuses a graph (or a round's roster) that is not at least 2-connected.
k is the weight of a global minimum cut (Stoer-Wagner); the smaller side of that cut is the
"weak" part an error message names.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

Edge = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Connectivity:
    k: int  # edge connectivity; 0 if disconnected, n-1 for a complete graph
    weak: frozenset[int]  # the smaller side of a minimum cut (empty when fewer than 2 nodes)
    cut: tuple[Edge, ...]  # the edges of that cut


def normalize(edges: Iterable[Edge]) -> frozenset[Edge]:
    out = set()
    for a, b in edges:
        if a == b:
            raise ValueError(f"a member cannot share a key with itself ({a})")
        out.add((min(a, b), max(a, b)))
    return frozenset(out)


def full_mesh(n: int) -> frozenset[Edge]:
    return frozenset((i, j) for i in range(n) for j in range(i + 1, n))


def harary(n: int, degree: int) -> frozenset[Edge]:
    """A degree-regular circulant graph on n nodes that is degree-connected (Harary H_{d,n})."""
    if not 2 <= degree < n:
        raise ValueError(f"degree {degree} needs 2 <= degree < members ({n})")
    if degree % 2 and n % 2:
        raise ValueError(f"an odd degree ({degree}) needs an even number of members (have {n})")
    edges = {(i, (i + s) % n) for i in range(n) for s in range(1, degree // 2 + 1)}
    if degree % 2:
        edges |= {(i, i + n // 2) for i in range(n // 2)}
    return normalize(edges)


def induced(edges: frozenset[Edge], nodes: frozenset[int]) -> frozenset[Edge]:
    return frozenset(e for e in edges if e[0] in nodes and e[1] in nodes)


def neighbours(edges: Iterable[Edge], node: int) -> list[int]:
    return sorted(b if a == node else a for a, b in edges if node in (a, b))


def connectivity(nodes: Iterable[int], edges: Iterable[Edge]) -> Connectivity:
    """Edge connectivity of the graph on `nodes` (edges outside `nodes` are ignored)."""
    node_set = frozenset(nodes)
    n = len(node_set)
    es = [e for e in normalize(edges) if e[0] in node_set and e[1] in node_set]
    if n < 2:
        return Connectivity(0, frozenset(), ())
    if len(es) == n * (n - 1) // 2:  # complete: skip the O(V E log V) search
        v = min(node_set)
        return Connectivity(n - 1, frozenset({v}), tuple(e for e in es if v in e))
    weight: dict[int, dict[int, int]] = {v: {} for v in node_set}
    for a, b in es:
        weight[a][b] = weight[a].get(b, 0) + 1
        weight[b][a] = weight[b].get(a, 0) + 1
    groups = {v: {v} for v in node_set}  # merged super-nodes
    best = None
    best_side: set[int] = set()
    while len(weight) > 1:
        cut, s, t = _min_cut_phase(weight)
        if best is None or cut < best:
            best, best_side = cut, set(groups[t])
        # merge t into s
        for u, w in weight.pop(t).items():
            weight[u].pop(t, None)
            if u != s:
                weight[s][u] = weight[s].get(u, 0) + w
                weight[u][s] = weight[u].get(s, 0) + w
        groups[s] |= groups.pop(t)
    assert best is not None
    side = best_side if len(best_side) * 2 <= n else set(node_set - best_side)
    cut_edges = tuple(e for e in es if (e[0] in side) != (e[1] in side))
    return Connectivity(best, frozenset(side), cut_edges)


def _min_cut_phase(weight: dict[int, dict[int, int]]) -> tuple[int, int, int]:
    """One maximum-adjacency ordering; returns (cut of the phase, second-last, last)."""
    start = next(iter(weight))
    attached = {v: 0 for v in weight}
    heap = [(0, start)]
    added: set[int] = set()
    prev = last = start
    cut = 0
    while heap:
        negw, v = heapq.heappop(heap)
        if v in added or -negw != attached[v]:
            continue
        added.add(v)
        prev, last, cut = last, v, -negw
        for u, w in weight[v].items():
            if u not in added:
                attached[u] += w
                heapq.heappush(heap, (-attached[u], u))
        if len(added) == len(weight):
            break
    if len(added) < len(weight):  # disconnected: the unreached part is cut off with weight 0
        unreached = next(v for v in weight if v not in added)
        return 0, last, unreached
    return cut, prev, last
