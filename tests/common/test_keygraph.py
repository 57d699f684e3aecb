import itertools
import random

import pytest

from lanon.common import keygraph


def brute_force_k(n: int, edges: frozenset[keygraph.Edge]) -> int:
    """Smallest number of edges across any split of the nodes in two (n <= 9)."""
    best = len(edges)
    for size in range(1, n // 2 + 1):
        for side in itertools.combinations(range(n), size):
            s = set(side)
            best = min(best, sum((a in s) != (b in s) for a, b in edges))
    return best


def test_full_mesh() -> None:
    c = keygraph.connectivity(range(6), keygraph.full_mesh(6))
    assert c.k == 5


def test_ring_is_2_connected() -> None:
    ring = keygraph.normalize((i, (i + 1) % 6) for i in range(6))
    assert keygraph.connectivity(range(6), ring).k == 2


def test_pendant_member_is_named() -> None:
    edges = keygraph.normalize([(0, 1), (1, 2), (2, 0), (2, 3)])
    c = keygraph.connectivity(range(4), edges)
    assert c.k == 1
    assert c.weak == {3}
    assert c.cut == ((2, 3),)


def test_disconnected() -> None:
    c = keygraph.connectivity(range(4), keygraph.normalize([(0, 1), (2, 3)]))
    assert c.k == 0


def test_induced_roster() -> None:
    ring = keygraph.normalize((i, (i + 1) % 5) for i in range(5))
    assert keygraph.connectivity({0, 1, 2, 3}, ring).k == 1  # a ring missing a node is a path


@pytest.mark.parametrize("n,d", [(5, 2), (6, 3), (8, 4), (9, 4), (10, 5)])
def test_harary_graphs_are_degree_connected(n: int, d: int) -> None:
    edges = keygraph.harary(n, d)
    assert all(len(keygraph.neighbours(edges, v)) == d for v in range(n))
    assert keygraph.connectivity(range(n), edges).k == d


def test_harary_rejects_impossible() -> None:
    with pytest.raises(ValueError):
        keygraph.harary(5, 3)
    with pytest.raises(ValueError):
        keygraph.harary(4, 4)


def test_random_graphs_match_brute_force() -> None:
    rng = random.Random(5)
    for _ in range(200):
        n = rng.randrange(2, 9)
        pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
        edges = frozenset(p for p in pairs if rng.random() < 0.5)
        assert keygraph.connectivity(range(n), edges).k == brute_force_k(n, edges)
