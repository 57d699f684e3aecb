"""A member's place in one round's reduction tree (schedule = "tree").

It starts with the member's own padded vector; each child's vector is folded in (XOR) once all
its parts are in; then the sum goes to the parent with the set of members it contains. A child
that is silent by `forward_at` is left out, and the leader learns who from that set.
"""

from __future__ import annotations

from lanon.common import wire
from lanon.common.errors import RejectReason, RemoteProtocolError
from lanon.common.tree import Place
from lanon.common.vectorsum import VectorSum


class Relay:
    def __init__(
        self, rnd: int, place: Place, me: int, own: list[bytes], forward_at: float
    ) -> None:
        self.round = rnd
        self.place = place
        self.sum = VectorSum([len(p) for p in own])
        for i, p in enumerate(own):
            self.sum.add(i, p)
        self.contributors = {me}
        self.pending: dict[int, dict[int, bytes]] = {c: {} for c in place.children}
        self.subtrees: dict[int, frozenset[int]] = {}
        self.forward_at = forward_at
        self.sent = False

    @property
    def complete(self) -> bool:
        return not self.pending

    def add(self, child: int, part: wire.TreePart) -> None:
        """A part of a child's subtree sum; folded in once the child's every part is here."""
        parts = self.pending.get(child)
        if parts is None:
            why = (
                RejectReason.REPLAY if child in self.place.children else RejectReason.NOT_IN_ROSTER
            )
            raise RemoteProtocolError(why, f"tree part from member #{child}")
        if part.count != len(self.sum.lens) or len(part.payload) != self.sum.lens[part.index]:
            raise RemoteProtocolError(RejectReason.MALFORMED, "tree part of the wrong shape")
        known = self.subtrees.setdefault(child, part.contributors)
        if part.contributors != known or child not in known or self.contributors & known:
            raise RemoteProtocolError(
                RejectReason.MALFORMED, "tree part with an inconsistent member set"
            )
        if part.index in parts:
            raise RemoteProtocolError(RejectReason.REPLAY, "tree part already received")
        parts[part.index] = part.payload
        if len(parts) == len(self.sum.lens):
            for i, payload in parts.items():
                self.sum.add(i, payload)
            self.contributors |= known
            del self.pending[child]

    def parts(self) -> list[bytes]:
        return self.sum.parts()
