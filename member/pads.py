"""A member's pad keys: per key-graph neighbour and epoch, from both members' ephemeral
keys for the epoch (announced signed by their static keys). Own ephemeral private keys and everything derived
from them are forgotten once their epoch is over (forward secrecy)."""

from __future__ import annotations

from collections.abc import Mapping

from lanon.common import keygraph
from lanon.common.coalition import Coalition
from lanon.common.crypto import Ephemeral, epoch_key, key_id


class PadKeys:
    def __init__(self, coalition: Coalition, index: int) -> None:
        self.index = index
        self.neighbours = keygraph.neighbours(coalition.edges, index)
        self.own: dict[int, Ephemeral] = {}
        self.peers: dict[tuple[int, int], dict[int, bytes]] = {}  # (member, epoch) -> id -> key
        self._cache: dict[tuple[int, int, int], bytes] = {}  # (member, epoch, id) -> epoch key
        self._kept: tuple[int, int | None] | None = None  # keep_only's last epochs
        self._added = False  # a key since (ours, a peer's, a derived one)

    def carry(self, old: PadKeys, old_c: Coalition, new_c: Coalition) -> None:
        """Our ephemeral keys, and those of members still our neighbours in `new_c`."""
        self.own = old.own
        index = {m.public: m.index for m in new_c.members}
        for (member, epoch), keys in old.peers.items():
            j = index.get(old_c.members[member].public)
            if j is not None and j in self.neighbours:
                self.peers[(j, epoch)] = keys

    def ensure(self, epoch: int) -> bool:
        """Make our ephemeral key for `epoch` if we have none; True if one was made."""
        if epoch in self.own:
            return False
        self.own[epoch] = Ephemeral()
        self._added = True
        return True

    def announcement(self, epochs: list[int]) -> tuple[tuple[int, bytes], ...]:
        return tuple((e, self.own[e].public) for e in epochs if e in self.own)

    def knows(self, member: int, epoch: int, public: bytes) -> bool:
        return self.peers.get((member, epoch), {}).get(key_id(public)) == public

    def conflicts(self, member: int, epoch: int, public: bytes) -> bool:
        """Whether a neighbour's key has the id of another key it signed for the epoch (rounds
        name keys by id: with two, it could use one and prove the other in blame)."""
        held = self.peers.get((member, epoch), {}).get(key_id(public))
        return held is not None and held != public

    def learn(self, member: int, epoch: int, public: bytes) -> None:
        if member in self.neighbours and not self.conflicts(member, epoch, public):
            self.peers.setdefault((member, epoch), {})[key_id(public)] = public
            self._added = True

    def keys(
        self, epoch: int, roster: frozenset[int], key_of: Mapping[int, int]
    ) -> tuple[list[bytes] | None, str]:
        """Epoch keys with the roster's neighbours for the keys the round names, or (None, why)."""
        keys, why = self.pair_keys(epoch, roster, key_of)
        return (None, why) if keys is None else (list(keys.values()), "")

    def pair_keys(
        self, epoch: int, roster: frozenset[int], key_of: Mapping[int, int]
    ) -> tuple[dict[int, bytes] | None, str]:
        """Neighbour -> epoch key, for the roster's neighbours and the keys the round names."""
        own = self.own.get(epoch)
        if own is None or key_of.get(self.index) != own.id:
            return None, f"the round names another ephemeral key of ours for epoch {epoch}"
        out = {}
        for j in self.neighbours:
            if j not in roster:
                continue
            kid = key_of[j]
            cached = self._cache.get((j, epoch, kid))
            if cached is None:
                public = self.peers.get((j, epoch), {}).get(kid)
                shared = own.exchange(public) if public is not None else None
                if shared is None:
                    return (
                        None,
                        f"no usable ephemeral key {kid:08x} of member #{j} for epoch {epoch}",
                    )
                cached = self._cache[(j, epoch, kid)] = epoch_key(epoch, shared)
                self._added = True
            out[j] = cached
        return out, ""

    def publics(
        self, epoch: int, roster: frozenset[int], key_of: Mapping[int, int]
    ) -> tuple[bytes, dict[int, bytes]]:
        """Our ephemeral public key for `epoch`, and each roster neighbour's that the round
        names (what a REVEAL says we used)."""
        own = self.own.get(epoch)
        peers = {
            j: public
            for j in self.neighbours
            if j in roster and (public := self.peers.get((j, epoch), {}).get(key_of[j]))
        }
        return (own.public if own is not None else b""), peers

    def prove(
        self, epoch: int, peer: int, key_of: Mapping[int, int]
    ) -> tuple[bytes, bytes, bytes, bytes] | None:
        """(our public key, the peer's, our exchange, its proof) for a disputed pad with
        `peer` in a round of `epoch`; None if those keys are gone."""
        own = self.own.get(epoch)
        public = self.peers.get((peer, epoch), {}).get(key_of.get(peer, -1))
        if own is None or public is None or key_of.get(self.index) != own.id:
            return None
        proven = own.prove(public)
        return None if proven is None else (own.public, public, *proven)

    def keep_only(self, epoch: int, also: int | None = None) -> None:
        """Drop every key but those of `epoch`, the next (and `also`): past (or abandoned)
        epochs' pads can never be recomputed."""
        if (epoch, also) == self._kept and not self._added:
            return  # every round asks: nothing came since the last time
        self._kept, self._added = (epoch, also), False
        keep = {epoch, epoch + 1, also}
        for e in [e for e in self.own if e not in keep]:
            del self.own[e]
        for peer in [k for k in self.peers if k[1] not in keep]:
            del self.peers[peer]
        for cached in [k for k in self._cache if k[1] not in keep]:
            del self._cache[cached]

    def forget(self, member: int, epoch: int) -> None:
        """Drop what we know of `member`'s ephemeral keys for `epoch`, and the epoch keys derived
        from them: the next round of that epoch needs its keys again."""
        self.peers.pop((member, epoch), None)
        for cached in [k for k in self._cache if k[:2] == (member, epoch)]:
            del self._cache[cached]
