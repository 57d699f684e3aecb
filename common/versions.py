"""Coalition versions on the LAN (sans-IO): a newer signed coalition file, applied without a
restart, and hosts' requests to join.

A coalition with `[admin]` keys has versions. Its file carries a version number and the
signatures of `threshold` administrators over its fingerprint (common/coalition.py). What
stays across versions (the name, the LAN, the administrators) is its identity: frame headers
carry that, so hosts one version apart still hear each other, and the OPEN, HELLO and
HEARTBEAT say which version their sender runs.

Gateways repeat their version's text in COALITION frames (chunks of at most one frame each),
at once after applying it and every REPEAT seconds, and their heartbeats advertise its number
and digest. Every host reassembles what it hears (`VersionBook`) and `consider`s it: a newer
version, verified, is applied by the engine between two rounds; an older one (a replay), the
same number with other content (a conflict), unsigned or forged, or another coalition's, is
refused and counted.

A host that is not (yet) in the coalition asks with JOIN frames: its name and public key,
signed by that key (and, to replace the key its name has, by the old one too). Gateways keep
the requests they verified (`PendingJoins`) for the administrator (`lanon admin pending`).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lanon.common import wire
from lanon.common.coalition import FIXED, Coalition, loads, text_digest
from lanon.common.crypto import HostKey, Verifier, encode_key
from lanon.common.errors import ConfigError, RejectReason, RemoteProtocolError
from lanon.common.events import Event, SaveCoalition, VersionApplied, VersionRefused
from lanon.common.settings import is_name

REPEAT = 2.0  # seconds between a gateway's repeats of its version
PARSES_PER_SECOND = 2  # texts no verified gateway advertised, looked at a second
KEPT_PARTIALS = 4  # texts being reassembled at once (and as many advertised ones)
KEPT_REFUSED = 64  # digests of texts refused: not looked at twice
JOIN_INTERVAL = 1.0  # seconds between a joining host's requests
REKEY_INTERVAL = 5.0  # seconds between the requests of a host that made a new key
JOIN_FRESH = 30.0  # seconds a JOIN's clock may be off: older ones are replays
JOIN_CHECKS_PER_SECOND = 10  # new requests whose signatures are checked, a second
MAX_PENDING = 32
PENDING_TTL = 3600.0  # seconds a request waits for the administrator


class Outcome(enum.Enum):
    APPLIED = "applied"
    SAME = "same"  # the version we run: nothing to do, nothing counted
    OLDER = "older"  # a replay, or a host that missed versions
    CONFLICT = "conflict"  # our version number with other content: two administrators raced
    FORGED = "forged"  # not signed by enough administrators
    FOREIGN = "foreign"  # another coalition (other name, LAN or administrators)
    INVALID = "invalid"  # not a coalition file we can run
    BUSY = "busy"  # more texts than we look at in a second


REFUSED = tuple(o for o in Outcome if o not in (Outcome.APPLIED, Outcome.SAME))


def chunks(c: Coalition) -> list[bytes]:
    """The COALITION frames that carry `c`'s text."""
    raw = c.text.encode()
    size = c.coalition.lan_mtu - wire.COALITION_OVERHEAD
    pieces = [raw[i : i + size] for i in range(0, len(raw), size)] or [b""]
    if len(pieces) > wire.MAX_COALITION_CHUNKS:
        raise ConfigError(
            f"{c.path}: {len(raw)} bytes is too long to repeat on the LAN (at most "
            f"{wire.MAX_COALITION_CHUNKS * size}: drop comments)"
        )
    digest = text_digest(raw)
    return [
        wire.CoalitionChunk(c.version, digest, i, len(pieces), p).encode(c.id)
        for i, p in enumerate(pieces)
    ]


def repeatable(c: Coalition) -> str:
    """Why `c` cannot be repeated on the LAN ('' if it can)."""
    try:
        chunks(c)
    except ConfigError as exc:
        return str(exc)
    return ""


@dataclass
class _Partial:
    version: int
    count: int
    got: dict[int, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Considered:
    outcome: Outcome
    coalition: Coalition | None = None  # the new version, when it is to be applied
    detail: str = ""


class VersionBook:
    """The version this host runs, and what it heard of others.

    Anyone on the LAN can send COALITION frames, so what is looked at is bounded: a text a
    verified heartbeat advertised (its version and digest, from the gateway that sent it) is
    reassembled from that gateway's frames only and looked at once; other texts (a new gateway's
    version, before anyone knows that gateway) share PARSES_PER_SECOND. A text refused once is
    refused again unread. Parsing checks the signatures before anything that costs."""

    def __init__(self, coalition: Coalition) -> None:
        self.current = coalition
        self._partials: OrderedDict[bytes, _Partial] = OrderedDict()
        self._advertised: OrderedDict[bytes, tuple[int, bytes]] = (
            OrderedDict()
        )  # digest -> (version, src)
        self._refused: OrderedDict[bytes, Outcome] = OrderedDict()
        self._budget = (0, 0)  # (second, parses in it)
        self.newest_heard = coalition.version  # the highest version a verified frame claimed

    def took(self, new: Coalition) -> tuple[VersionApplied, SaveCoalition]:
        """The engine runs `new` now: what it says (an event) and does (save the file)."""
        old, self.current = self.current, new
        self.newest_heard = max(self.newest_heard, new.version)
        return (
            VersionApplied(old.version, new.version, *changes(old, new)),
            SaveCoalition(new.text),
        )

    def advertised(self, version: int, digest: bytes, src: bytes) -> None:
        """A verified heartbeat from `src` says it runs `version`, whose text has `digest`."""
        self.newest_heard = max(self.newest_heard, version)
        if version <= self.current.version or digest in self._refused:
            return
        self._advertised[digest] = (version, src)
        self._advertised.move_to_end(digest)
        while len(self._advertised) > KEPT_PARTIALS:
            self._advertised.popitem(last=False)

    def receive(self, frame: bytes, now: float, src: bytes = b"") -> Considered | None:
        """A COALITION frame: the outcome once its text is whole (None before)."""
        chunk = wire.pull_coalition(frame)
        if not self.current.versioned or chunk.version <= self.current.version:
            return None  # repeats of ours (or older) need no reassembly
        if chunk.digest in self._refused:
            return Considered(self._refused[chunk.digest], detail="refused before")
        advert = self._advertised.get(chunk.digest)
        if advert is not None and (advert[1] != src or advert[0] != chunk.version):
            raise RemoteProtocolError(
                RejectReason.FOREIGN, "COALITION chunk not from the gateway that advertised it"
            )
        partial = self._partials.get(chunk.digest)
        if partial is None or (partial.version, partial.count) != (chunk.version, chunk.count):
            partial = self._partials[chunk.digest] = _Partial(chunk.version, chunk.count)
            self._evict()
        partial.got[chunk.index] = chunk.data
        if len(partial.got) < partial.count:
            return None
        del self._partials[chunk.digest]
        raw = b"".join(partial.got[i] for i in range(partial.count))
        if text_digest(raw) != chunk.digest:
            raise RemoteProtocolError(RejectReason.MALFORMED, "COALITION text off its digest")
        if advert is None:
            second, used = self._budget
            if int(now) != second:
                second, used = int(now), 0
            if used >= PARSES_PER_SECOND:
                return Considered(Outcome.BUSY)
            self._budget = (second, used + 1)
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return self._refuse(chunk.digest, Considered(Outcome.INVALID, detail="not UTF-8"))
        return self._refuse(chunk.digest, self.consider(text))

    def _evict(self) -> None:
        """At most KEPT_PARTIALS unadvertised texts in reassembly (the oldest go), and the
        advertised ones besides."""
        loose = [d for d in self._partials if d not in self._advertised]
        for digest in loose[: max(0, len(loose) - KEPT_PARTIALS)]:
            del self._partials[digest]
        for digest in [d for d in self._partials if d in self._advertised][:-KEPT_PARTIALS]:
            del self._partials[digest]

    def _refuse(self, digest: bytes, c: Considered) -> Considered:
        if c.outcome in REFUSED:
            self._refused[digest] = c.outcome
            self._advertised.pop(digest, None)
            while len(self._refused) > KEPT_REFUSED:
                self._refused.popitem(last=False)
        return c

    def consider(self, text: str, path: Path | None = None) -> Considered:
        """A coalition file's text (heard on the LAN, or given by an administrator): to be
        applied if it is a newer version of our coalition, signed as [admin] says, and one
        gateways can repeat. The caller applies it, then makes it `current`."""
        cur = self.current
        try:
            new = loads(text, path or cur.path)
        except ConfigError as exc:
            detail = str(exc).removeprefix(f"{path or cur.path}: ")
            signed = "signature" in detail
            return Considered(Outcome.FORGED if signed else Outcome.INVALID, detail=detail)
        if new.identity != cur.identity:
            detail = f"coalition {new.coalition.name}"
            for what in FIXED:
                was, now = getattr(cur.coalition, what), getattr(new.coalition, what)
                if was != now:
                    detail += (
                        f": {what} {now.value}, ours {was.value} (a new coalition, not a version)"
                    )
            return Considered(Outcome.FOREIGN, detail=detail)
        if new.version < cur.version:
            return Considered(Outcome.OLDER, detail=f"version {new.version}")
        if new.version == cur.version:
            if new.fingerprint == cur.fingerprint:
                return Considered(Outcome.SAME)
            return Considered(
                Outcome.CONFLICT,
                detail=f"a second version {new.version} with other content (two administrators "
                "signed different files under one number: the next version settles it)",
            )
        too_long = repeatable(new)
        if too_long:
            return Considered(Outcome.INVALID, detail=too_long)
        self.newest_heard = max(self.newest_heard, new.version)
        return Considered(Outcome.APPLIED, new)


def settle(
    considered: Considered | None,
    apply: Callable[[Coalition], None],
    event: Callable[[Event], None],
) -> None:
    """What an engine does with a considered text: apply a new version, say why not."""
    if considered is None or considered.outcome is Outcome.SAME:
        return
    if considered.coalition is None:
        event(VersionRefused(considered.outcome.value, 0, considered.detail))
        return
    apply(considered.coalition)


# --- joining ------------------------------------------------------------------------------


def join_frame(c: Coalition, name: str, key: HostKey, wall_ms: int, old: HostKey | None) -> bytes:
    """A signed JOIN: `key` asks to be member `name` (replacing `old`, a rotation)."""
    j = wire.Join(wall_ms, name, key.public, old.public if old else b"\0" * 32)
    body = j.encode(c.id)
    return body + key.sign(body) + (old.sign(body) if old else b"")


@dataclass
class JoinRequest:
    name: str
    public: bytes
    old_public: bytes | None  # a key rotation: the key it replaces
    first: float
    last: float
    wall_ms: int

    @property
    def key_text(self) -> str:
        return encode_key(self.public)

    def as_dict(self, now: float) -> dict[str, object]:
        return {
            "name": self.name,
            "public_key": self.key_text,
            "replaces": encode_key(self.old_public) if self.old_public else None,
            "waiting": round(now - self.first, 1),
            "last_heard": round(now - self.last, 1),
        }


class PendingJoins:
    """Verified JOIN requests, newest kept, for the administrator. A request is checked once
    (its signature(s)); repeats only say it is still there."""

    def __init__(self, verifier: Verifier | None = None) -> None:
        # least recently heard first: a request its host repeats stays, a flood's go first
        self.requests: OrderedDict[tuple[str, bytes], JoinRequest] = OrderedDict()
        self.verifier = verifier or Verifier()
        self._checks = (0, 0)  # (second, new requests checked in it)

    def receive(self, c: Coalition, frame: bytes, now: float, wall_now_ms: int) -> bool:
        """True if the request is new."""
        if not c.versioned:
            raise RemoteProtocolError(
                RejectReason.FOREIGN, "a JOIN, but this coalition has no administrators"
            )
        body, sigs = wire.split_join(frame)
        j = wire.pull_join(body)
        if is_name(j.name):
            raise RemoteProtocolError(RejectReason.MALFORMED, "JOIN with a name no host can have")
        if abs(j.wall_ms - wall_now_ms) > JOIN_FRESH * 1000:
            raise RemoteProtocolError(RejectReason.REPLAY, f"JOIN from {j.name!r} is not fresh")
        listed = hosts(c)
        if listed.get(j.name) == j.public:
            self.requests.pop((j.name, j.public), None)  # done: the version lists it
            return False
        key = (j.name, j.public)
        known = self.requests.get(key)
        if known is not None and j.wall_ms > known.wall_ms:
            known.last, known.wall_ms = now, j.wall_ms
            self.requests.move_to_end(key)
            return False
        if j.rotation and listed.get(j.name) != j.old_public:
            raise RemoteProtocolError(
                RejectReason.BAD_AUTH, f"JOIN replacing a key {j.name!r} does not have"
            )
        second, used = self._checks
        if int(now) != second:
            second, used = int(now), 0
        if used >= JOIN_CHECKS_PER_SECOND:  # a flood of new requests: the rest wait
            raise RemoteProtocolError(RejectReason.STALE, "too many new JOINs this second")
        self._checks = (second, used + 1)
        signers = [j.public] + ([j.old_public] if j.rotation else [])
        for public, sig in zip(signers, sigs, strict=True):
            if not self.verifier.verify(public, body, sig):
                raise RemoteProtocolError(RejectReason.BAD_AUTH, f"JOIN from {j.name!r}")
        self.requests[key] = JoinRequest(
            j.name, j.public, j.old_public if j.rotation else None, now, now, j.wall_ms
        )
        while len(self.requests) > MAX_PENDING:
            self.requests.popitem(last=False)
        return True

    def prune(self, c: Coalition, now: float) -> None:
        """Requests the version granted, and those nobody answered for PENDING_TTL."""
        listed = set(hosts(c).items())
        for key, r in list(self.requests.items()):
            if key in listed or now - r.last > PENDING_TTL:
                del self.requests[key]

    def as_list(self, now: float) -> list[dict[str, object]]:
        return [r.as_dict(now) for r in self.requests.values()]


def hosts(c: Coalition) -> dict[str, bytes]:
    """Every host's name and public key."""
    return {m.name: m.public for m in c.members} | {g.name: g.public for g in c.gateways}


def changes(
    old: Coalition, new: Coalition
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(hosts added, hosts removed, hosts with a new key) from `old` to `new`."""
    before = hosts(old)
    after = hosts(new)
    return (
        tuple(sorted(set(after) - set(before))),
        tuple(sorted(set(before) - set(after))),
        tuple(sorted(n for n in set(before) & set(after) if before[n] != after[n])),
    )
