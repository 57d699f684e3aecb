"""A member's pad keys: one pair secret per key-graph neighbour, one key per epoch."""

from __future__ import annotations

from lanon.common import keygraph
from lanon.common.coalition import Coalition
from lanon.common.crypto import HostKey, epoch_key, pair_secret


class PadKeys:
    def __init__(self, coalition: Coalition, index: int, key: HostKey) -> None:
        self.neighbours = keygraph.neighbours(coalition.edges, index)
        self._pairs = {j: pair_secret(key, coalition.members[j].public) for j in self.neighbours}
        self._epochs: dict[int, dict[int, bytes]] = {}

    def keys(self, epoch: int, roster: frozenset[int]) -> list[bytes]:
        """Epoch keys shared with the neighbours that take part in this round."""
        keys = self._epochs.get(epoch)
        if keys is None:
            keys = {j: epoch_key(s, epoch) for j, s in self._pairs.items()}
            # keep the current and the previous epoch only: old keys are not kept around
            for old in sorted(self._epochs)[:-1]:
                del self._epochs[old]
            self._epochs[epoch] = keys
        return [keys[j] for j in self.neighbours if j in roster]
