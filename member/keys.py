"""The member's key ring (sans-IO): its ephemeral keys and its neighbours', epoch by epoch.

It holds keys for the leader's epoch and the next one, announces its own (KEYS, signed) at
once when it makes new ones and every KEYS_INTERVAL after, and learns its key-graph
neighbours' from their KEYS. Epochs never go back: a paused leader's old epoch is refused,
not followed. What it learns about other members (who was heard when) is for `lanon status`.
"""

from __future__ import annotations

from collections.abc import Mapping

from lanon.common import wire
from lanon.common.clock import KEYS_INTERVAL, wall_ms
from lanon.common.coalition import Coalition
from lanon.common.crypto import HostKey, usable_point
from lanon.common.engine import EngineBase, EnginePart, signed
from lanon.common.errors import RejectReason, RemoteProtocolError
from lanon.common.events import EpochChanged
from lanon.common.guard import MEMBER
from lanon.member.pads import PadKeys

KEYS_ECHO_GAP = 0.2  # at most this often, new keys from a neighbour make us announce ours
# A past epoch's keys are kept this long after the next epoch's first round: an accusation
# about one of its last rounds can still be traced (member/revealer.py), and no round of it
# can be answered any more (epochs never go back).
BLAME_GRACE = 1.0


class KeyRing(EnginePart):
    def __init__(self, engine: EngineBase, coalition: Coalition, index: int, key: HostKey) -> None:
        self.e = engine
        self.c = coalition
        self.index = index
        self.key = key
        self.pads = PadKeys(coalition, index)
        self.epoch = -1  # the epoch of the last round this member took part in
        self.leader_epoch: int | None = None  # the leader's, from an OPEN or a heartbeat
        self.next_announce = float("inf")  # once the epoch is known
        self.heard: dict[int, float] = {}  # member -> when its keys were last heard
        self.adopted_at = float("-inf")  # when the current epoch's first round was accepted

    def carry(self, old: KeyRing, old_c: Coalition, now: float) -> None:
        """A new version of the coalition: our ephemeral keys, and those of neighbours that
        stay neighbours (by public key), go on; the epoch too."""
        self.pads.carry(old.pads, old_c, self.c)
        index = {m.public: m.index for m in self.c.members}
        self.heard = {
            index[old_c.members[m].public]: t
            for m, t in old.heard.items()
            if old_c.members[m].public in index
        }
        self.epoch, self.leader_epoch = old.epoch, old.leader_epoch
        self.adopted_at = old.adopted_at

    def follow(self, epoch: int, now: float) -> None:
        """The leader is in `epoch`: hold keys for it and the next one; announce new ones."""
        if epoch < max(self.epoch, 0) or epoch > wire.MAX_EPOCH:
            return
        made = self.pads.ensure(epoch) | (epoch < wire.MAX_EPOCH and self.pads.ensure(epoch + 1))
        self.leader_epoch = epoch
        if made or self.next_announce == float("inf"):
            self.announce(now)

    def adopt(self, epoch: int, now: float) -> None:
        """A round of `epoch` was accepted (any epoch is safe: round numbers never repeat)."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.adopted_at = now
            self.e.event(EpochChanged(epoch))

    def forget_others(self, now: float) -> None:
        """Forward secrecy: keys of epochs other than this one and the next are gone (the
        last one's after BLAME_GRACE)."""
        grace = now - self.adopted_at < BLAME_GRACE
        self.pads.keep_only(self.epoch, self.epoch - 1 if grace else None)

    def announce(self, now: float) -> None:
        epoch = self.leader_epoch
        if epoch is None:
            return
        self.next_announce = now + KEYS_INTERVAL
        epochs = [e for e in (epoch, epoch + 1) if e <= wire.MAX_EPOCH]
        keys = wire.Keys(wall_ms(now, self.wall_offset), self.pads.announcement(epochs))
        self.e.send(wire.BROADCAST, signed(self.key, keys.encode(self.c.id, self.index)))

    def window(self) -> tuple[int, int]:
        """The epochs whose keys we keep: the current one and the next (none before we know)."""
        base = self.epoch if self.epoch >= 0 else self.leader_epoch
        return (base, base + 1) if base is not None else (1, 0)

    def receive(self, sender: int, src: bytes, frame: bytes, now: float) -> bool:
        """A member's KEYS; True if it taught us a neighbour's new key."""
        self.c.member_at(sender, self.index)
        unverified = wire.pull_keys(wire.split_auth(frame, wire.SIG_LEN)[0])
        low, high = self.window()
        pads = self.pads
        new = [
            (e, k) for e, k in unverified.keys if low <= e <= high and not pads.knows(sender, e, k)
        ]
        if not new or sender not in pads.neighbours:
            # Repeats, and keys of epochs we do not keep, cost no signature check. A recent
            # repeat of keys we know still says the member is there (for status only).
            tolerance_ms = self.c.rounds.clock_tolerance * 1000
            fresh = abs(unverified.wall_ms - wall_ms(now, self.wall_offset)) <= tolerance_ms
            if fresh and any(pads.knows(sender, e, k) for e, k in unverified.keys):
                self.heard[sender] = now
            return False
        public = self.c.members[sender].public
        keys = wire.pull_keys(self.e.verified((MEMBER, sender), src, public, frame, now))
        if not all(usable_point(k) for _e, k in keys.keys):
            raise RemoteProtocolError(RejectReason.MALFORMED, "KEYS with a key off the curve")
        kept = [(e, k) for e, k in keys.keys if low <= e <= high]
        if any(pads.conflicts(sender, e, k) for e, k in kept):
            raise RemoteProtocolError(RejectReason.MALFORMED, "KEYS with a second key under one id")
        self.heard[sender] = now
        for epoch, key in kept:
            pads.learn(sender, epoch, key)
        # A neighbour with new keys (it restarted, or joined) needs ours too: answer soon.
        if now - (self.next_announce - KEYS_INTERVAL) >= KEYS_ECHO_GAP:
            self.announce(now)
        return True

    def round_keys(self, o: wire.Open, key_of: Mapping[int, int]) -> tuple[list[bytes] | None, str]:
        """The epoch keys for a round's pads (`key_of`: `o.key_of()`), or (None, why) if one
        is missing."""
        return self.pads.keys(o.epoch, o.roster, key_of)

    def get_timer(self) -> float:
        return self.next_announce

    def handle_timer(self, now: float) -> None:
        if now >= self.next_announce:
            self.announce(now)
