"""The XOR sum of padded vectors, part by part: a tree relay's subtree sum (member) and the
leader's sum of a round's contributions (gateway). Shapes are the caller's to check."""

from __future__ import annotations


class VectorSum:
    """A vector of parts of fixed lengths, all zero at first; parts are XORed in one by one."""

    def __init__(self, part_lens: list[int]) -> None:
        self.lens = list(part_lens)
        self._acc = [0] * len(self.lens)

    def add(self, index: int, payload: bytes) -> None:
        """XOR `payload` into part `index` (of length `lens[index]`)."""
        assert len(payload) == self.lens[index]
        self._acc[index] ^= int.from_bytes(payload, "big")

    def set(self, index: int, payload: bytes) -> None:
        """Part `index` is `payload` (a sum made elsewhere, e.g. a tree root's)."""
        assert len(payload) == self.lens[index]
        self._acc[index] = int.from_bytes(payload, "big")

    def parts(self) -> list[bytes]:
        return [a.to_bytes(n, "big") for a, n in zip(self._acc, self.lens, strict=True)]
