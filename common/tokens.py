"""Anonymous payment and rating credentials (seed 001): RFC 9474 blind signatures on the LAN.

A member *buys* openly: a BUY frame, signed with its host key, carries blinded messages to
one gateway of the provider, which answers with an ISSUE frame of blind signatures (and keeps
who bought how many: the provider knows who paid). The member unblinds them into tokens
(common/blindrsa.py): a prepared message and its signature, which the provider can check but
cannot link to the BUY it answered.

* A **payment token** (kind PAYMENT, under the operator's long-term token key) is spent inside
  a flow's sealed packet (`Spend`, a control message): the provider's gateways read it from the
  round output, refuse it if spent before (their ledger), and let the flow move
  `mb_per_token` more MB. Which member paid is what DC-net hides.
* A **rating credential** (kind CREDENTIAL, under the issuer's key for one rating period)
  lets a member publish one `Rating` a period, in a cell of tag RATING_TAG: anybody can check
  the credential, nobody can tell whose it is, and a second rating with it is ignored.

    BUY    = header | kind B | gateway H | request Q | period Q | count B | size H | blinded*
    ISSUE  = header | kind B | member H | request Q | refusal B | count B | size H | signature*
    RATING = header | kind B | len H | rating | gateway's signature    (a gateway's relay)
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass

from lanon.common import wire

RATING_TAG = 1  # the cell tag of anonymous ratings: no flow's (flow tags are random 64-bit)
SPEND = 0x10  # a control message in a flow's sealed packet (common/endpoints.is_control)
MAX_PER_FRAME = 4  # blinded messages in one BUY (2048-bit keys: 1 kB)
MAX_SIG = 512  # bytes of a signature (a 4096-bit key)
MAX_PREPARED = 128
MAX_RATED = 16  # providers in one rating
MAX_NAME = 64
CREDENTIAL_CONTEXT = b"lanon-rating-credential\x00"
RATING_SIGNED = b"lanon-rating\x00"  # what a rating's key signs: this, then the rating
MAX_REQUEST = 1 << 63  # request ids are below (the ledger keeps them as SQLite integers)
RATING_KEY = 32  # an Ed25519 public key: what a credential vouches for

SIG_LEN = 64  # Ed25519
_BUY = struct.Struct("!BHQQBH")
_ISSUE = struct.Struct("!BHQBBH")
_RELAY = struct.Struct("!BH")
_LEN = struct.Struct("!H")
_PERIOD = struct.Struct("!Q")


class TokenKind(enum.IntEnum):
    PAYMENT = 1
    CREDENTIAL = 2


class Refusal(enum.IntEnum):
    NONE = 0
    NOT_SOLD = 1  # this gateway's operator sells no such tokens
    TOO_MANY = 2  # the member's monthly allowance of tokens is used up
    ONE_PER_PERIOD = 3  # a credential for this period was issued to this member already
    WRONG_PERIOD = 4  # not the current rating period
    BAD_REQUEST = 5  # a blinded message of the wrong size


class RatingKind(enum.IntEnum):
    ANONYMOUS = 1  # a member's, with a credential
    AGENCY = 2  # a rating agency's, signed with its key


@dataclass(frozen=True, slots=True)
class Buy:
    kind: TokenKind
    gateway: int  # the gateway asked (others ignore it)
    request: int  # the member's request id: asked again, the same answer
    period: int  # CREDENTIAL: the rating period it is for; PAYMENT: 0
    blinded: tuple[bytes, ...]

    def encode(self, coalition: int, sender: int) -> bytes:
        size = len(self.blinded[0]) if self.blinded else 0
        return (
            wire.push_header(wire.MsgType.BUY, coalition, sender)
            + _BUY.pack(self.kind, self.gateway, self.request, self.period, len(self.blinded), size)
            + b"".join(self.blinded)
        )


def _items(body: bytes, at: int, count: int, size: int, what: str) -> tuple[bytes, ...]:
    if not 0 < count <= MAX_PER_FRAME or not 0 < size <= MAX_SIG:
        raise wire.malformed(f"{what} of {count} items of {size} bytes")
    if len(body) != at + count * size:
        raise wire.malformed(f"{what} of the wrong length")
    return tuple(body[at + i * size : at + (i + 1) * size] for i in range(count))


def _kind(value: int) -> TokenKind:
    try:
        return TokenKind(value)
    except ValueError:
        raise wire.malformed(f"unknown token kind {value}") from None


def pull_buy(body: bytes) -> Buy:
    at = wire.HEADER.size
    if len(body) < at + _BUY.size:
        raise wire.malformed("short BUY")
    kind, gateway, request, period, count, size = _BUY.unpack_from(body, at)
    if request >= MAX_REQUEST:
        raise wire.malformed(f"BUY with request id {request}")
    items = _items(body, at + _BUY.size, count, size, "BUY")
    return Buy(_kind(kind), gateway, request, period, items)


@dataclass(frozen=True, slots=True)
class Issue:
    kind: TokenKind
    member: int  # the member that asked
    request: int
    refusal: Refusal
    signatures: tuple[bytes, ...]  # blind signatures, in the order of the BUY's messages

    def encode(self, coalition: int, sender: int) -> bytes:
        size = len(self.signatures[0]) if self.signatures else 0
        head = _ISSUE.pack(
            self.kind, self.member, self.request, self.refusal, len(self.signatures), size
        )
        return (
            wire.push_header(wire.MsgType.ISSUE, coalition, sender)
            + head
            + b"".join(self.signatures)
        )


def pull_issue(body: bytes) -> Issue:
    at = wire.HEADER.size
    if len(body) < at + _ISSUE.size:
        raise wire.malformed("short ISSUE")
    kind, member, request, refusal, count, size = _ISSUE.unpack_from(body, at)
    try:
        why = Refusal(refusal)
    except ValueError:
        raise wire.malformed(f"ISSUE with refusal {refusal}") from None
    if why is not Refusal.NONE:
        if count or size or len(body) != at + _ISSUE.size:
            raise wire.malformed("a refusing ISSUE with signatures")
        return Issue(_kind(kind), member, request, why, ())
    return Issue(
        _kind(kind), member, request, why, _items(body, at + _ISSUE.size, count, size, "ISSUE")
    )


# --- inside cells ---------------------------------------------------------------------------


def _blob(data: bytes, at: int, limit: int, what: str) -> tuple[bytes, int]:
    if len(data) < at + _LEN.size:
        raise ValueError(f"{what} cut short")
    (n,) = _LEN.unpack_from(data, at)
    at += _LEN.size
    if n > limit or len(data) < at + n:
        raise ValueError(f"{what} of {n} bytes")
    return data[at : at + n], at + n


def _name(data: bytes, at: int) -> tuple[str, int]:
    if len(data) <= at:
        raise ValueError("a name cut short")
    n = data[at]
    raw = data[at + 1 : at + 1 + n]
    if n > MAX_NAME or len(raw) != n:
        raise ValueError(f"a name of {n} bytes")
    try:
        return raw.decode(), at + 1 + n
    except UnicodeDecodeError:
        raise ValueError("a name that is not UTF-8") from None


def _pack_name(name: str) -> bytes:
    raw = name.encode()
    if len(raw) > MAX_NAME:
        raise ValueError(f"name {name!r} longer than {MAX_NAME} bytes")
    return bytes([len(raw)]) + raw


@dataclass(frozen=True, slots=True)
class Token:
    """An unblinded token: the prepared message and the signature that makes it good."""

    prepared: bytes
    signature: bytes

    @property
    def id(self) -> bytes:
        """What a ledger keeps: the same token always has it, no two tokens share it."""
        return hashlib.blake2b(self.prepared, digest_size=16, person=b"lanon-token").digest()

    def encode(self) -> bytes:
        return (
            _LEN.pack(len(self.prepared))
            + self.prepared
            + _LEN.pack(len(self.signature))
            + self.signature
        )


def pull_token(data: bytes, at: int = 0) -> tuple[Token, int]:
    prepared, at = _blob(data, at, MAX_PREPARED, "a token's message")
    sig, at = _blob(data, at, MAX_SIG, "a token's signature")
    return Token(prepared, sig), at


def spend_message(token: Token) -> bytes:
    """A payment, sealed in the flow it pays for like any of its packets."""
    return bytes([SPEND]) + token.encode()


def pull_spend(data: bytes) -> Token:
    if not data or data[0] != SPEND:
        raise ValueError("not a payment")
    token, end = pull_token(data, 1)
    if end != len(data):
        raise ValueError("a payment with trailing bytes")
    return token


def credential_message(period: int, rating_key: bytes) -> bytes:
    """What a rating credential signs: the period it is good for, and the public key (fresh,
    the member's, for this period alone) that will sign the rating: a copy of the credential
    with other scores does not verify."""
    return CREDENTIAL_CONTEXT + _PERIOD.pack(period) + rating_key


@dataclass(frozen=True, slots=True)
class Rating:
    """One member's ratings of the providers for one period (0 to 100 each), the provider it
    chose, the credential that makes it count once, and the signature of the key the
    credential names. An agency's rating has neither; its signature is in the RATING frame."""

    period: int
    scores: tuple[tuple[str, int], ...]
    choice: str = ""
    credential: Token | None = None
    signature: bytes = b""  # by the credential's rating key, over `signed()`

    def body(self) -> bytes:
        if len(self.scores) > MAX_RATED:
            raise ValueError(f"more than {MAX_RATED} providers rated")
        out = bytearray(_PERIOD.pack(self.period))
        out += _pack_name(self.choice)
        out.append(len(self.scores))
        for name, score in self.scores:
            out += _pack_name(name) + bytes([score])
        return bytes(out)

    def signed(self) -> bytes:
        """What the rating key signs: the rating's body and its credential."""
        cred = self.credential.encode() if self.credential else b""
        return RATING_SIGNED + self.body() + cred

    def encode(self) -> bytes:
        if self.credential is None:
            return self.body()
        return self.body() + self.credential.encode() + self.signature

    @property
    def rating_key(self) -> bytes | None:
        """The key the credential names, if its message is a credential's for `period`."""
        if self.credential is None:
            return None
        msg = self.credential.prepared[32:]  # after RFC 9474's random prefix
        head = CREDENTIAL_CONTEXT + _PERIOD.pack(self.period)
        if len(msg) != len(head) + RATING_KEY or msg[: len(head)] != head:
            return None
        return msg[len(head) :]


def pull_rating(data: bytes, credential: bool = True) -> Rating:
    """A rating's bytes; ValueError if malformed (scores over 100, names, lengths)."""
    if len(data) < _PERIOD.size + 2:
        raise ValueError("short rating")
    (period,) = _PERIOD.unpack_from(data)
    choice, at = _name(data, _PERIOD.size)
    if len(data) <= at:
        raise ValueError("a rating cut short")
    n = data[at]
    at += 1
    if n > MAX_RATED:
        raise ValueError(f"a rating of {n} providers")
    scores = []
    for _ in range(n):
        name, at = _name(data, at)
        if len(data) <= at or data[at] > 100:
            raise ValueError("a score over 100, or missing")
        scores.append((name, data[at]))
        at += 1
    if len({s[0] for s in scores}) != len(scores):
        raise ValueError("a provider rated twice")
    token, sig = None, b""
    if credential:
        token, at = pull_token(data, at)
        sig, at = data[at : at + SIG_LEN], at + SIG_LEN
        if len(sig) != SIG_LEN:
            raise ValueError("a rating without its signature")
    if at != len(data):
        raise ValueError("a rating with trailing bytes")
    return Rating(period, tuple(scores), choice, token, sig)


@dataclass(frozen=True, slots=True)
class Relay:
    """A RATING frame's body (a gateway signs it): a rating heard in the outputs, or an
    agency's (the rating, then the agency's key and signature)."""

    kind: RatingKind
    rating: bytes

    def encode(self, coalition: int, sender: int) -> bytes:
        return (
            wire.push_header(wire.MsgType.RATING, coalition, sender)
            + _RELAY.pack(self.kind, len(self.rating))
            + self.rating
        )


def pull_relay(body: bytes) -> Relay:
    at = wire.HEADER.size
    if len(body) < at + _RELAY.size:
        raise wire.malformed("short RATING")
    kind, n = _RELAY.unpack_from(body, at)
    if len(body) != at + _RELAY.size + n:
        raise wire.malformed("RATING of the wrong length")
    try:
        return Relay(RatingKind(kind), body[at + _RELAY.size :])
    except ValueError:
        raise wire.malformed(f"RATING of kind {kind}") from None


AGENCY_SIGNED = b"lanon-agency-rating\x00"


def agency_statement(rating: Rating, key: bytes, signature: bytes) -> bytes:
    """An agency's rating as relayed: the rating, its public key, its signature of both."""
    return rating.body() + key + signature


def agency_signed(rating: bytes, key: bytes) -> bytes:
    """What an agency signs."""
    return AGENCY_SIGNED + rating + key


def pull_agency(data: bytes) -> tuple[Rating, bytes, bytes, bytes]:
    """(rating, its bytes, agency key, signature) of a relayed agency rating; ValueError."""
    if len(data) < 96 + _PERIOD.size:
        raise ValueError("short agency rating")
    raw, key, sig = data[:-96], data[-96:-64], data[-64:]
    return pull_rating(raw, credential=False), raw, key, sig
