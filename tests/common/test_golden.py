"""Golden byte vectors: the wire format, pinned.

Every frame type has one fixed value and the exact bytes it encodes to, written out field by
field from the layouts in lanon/common/wire.py. Encoding the value must give those bytes and
decoding the bytes must give the value back, so a change to a field's order, width or enum
value, or to the version, fails here (and then needs a new wire.VERSION). The vectors are of
the bodies `encode()` returns; what follows a body on the wire (the MAC table and signature of
OPEN and OUTPUT_HEAD, a MAC16, a signature) is pinned once each below, with fixed keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lanon.common import cell, flowkey, reservation, tokens, wire
from lanon.common.crypto import HostKey, MacTable, Verifier
from lanon.common.engine import check_mac, check_sealed, maced, sealed, signed
from lanon.common.errors import RejectReason, RemoteProtocolError
from lanon.common.offers import Offer, Price, pull_offer

CID, SENDER = 0xDEADBEEF, 3
T = wire.MsgType


def h(*fields: str) -> bytes:
    """Bytes from hex fields (spaces ignored)."""
    return bytes.fromhex("".join(fields))


def header(mtype: wire.MsgType) -> str:
    return f"0c {mtype:02x} deadbeef 0003"  # version 12, type, coalition, sender


OPEN = wire.Open(
    round=0x0102030405060708,
    epoch=9,
    leader_ms=1_800_000_000_123,
    nslots=4,
    nentries=64,
    roster=frozenset({0, 2, 9}),
    nmembers=10,
    key_ids=(0x11111111, 0x22222222, 0x33333333),
    version=12,
)
OPEN_BYTES = h(
    header(T.OPEN),
    "0102030405060708",  # round
    "00000009",  # epoch
    "000001a3185c507b",  # leader_ms
    "0004",  # nslots
    "0040",  # nentries
    "000a",  # nmembers
    "0000000c",  # version of the coalition file (its roster indices)
    "a040",  # roster bitmap, 10 bits: 0, 2, 9
    "11111111 22222222 33333333",  # key id of each roster member, in index order
)

OPEN_TREE = wire.Open(
    round=5,
    epoch=1,
    leader_ms=1_800_000_000_000,
    nslots=0,
    nentries=16,
    roster=frozenset({1, 2}),
    nmembers=3,
    key_ids=(0xAABBCCDD, 0x01020304),
    ethernet=(bytes.fromhex("020000000002"), bytes.fromhex("020000000003")),
)
OPEN_TREE_BYTES = h(
    header(T.OPEN),
    "0000000000000005",  # round
    "00000001",  # epoch
    "000001a3185c5000",  # leader_ms
    "0000",  # nslots
    "0010",  # nentries
    "0003",  # nmembers
    "00000000",  # coalition version: 0, an unversioned file
    "60",  # roster bitmap, 3 bits: 1, 2
    "aabbccdd 01020304",  # key ids
    "020000000002 020000000003",  # tree rounds: each roster member's Ethernet address
)

CONTRIB = wire.Part(round=5, index=1, count=3, payload=b"abc")
CONTRIB_BYTES = h(
    header(T.CONTRIB),
    "0000000000000005",  # round
    "0001",  # index
    "0003",  # count
    "616263",  # payload
)

OUTPUT_HEAD = wire.OutputHead(
    round=0xFFFFFFFFFFFFFFFE,  # the highest round that decodes (its successor must encode)
    leader_ms=1_800_000_000_123,
    nentries=64,
    nslots=2,
    digests=(bytes(range(16)), bytes(range(16, 32))),
)
OUTPUT_HEAD_BYTES = h(
    header(T.OUTPUT_HEAD),
    "fffffffffffffffe",  # round
    "000001a3185c507b",  # leader_ms
    "0040",  # nentries
    "0002",  # nslots
    "0002",  # number of parts
    "000102030405060708090a0b0c0d0e0f",  # digest of part 0
    "101112131415161718191a1b1c1d1e1f",  # digest of part 1
)

OUTPUT_PART = wire.Part(round=7, index=0, count=1, payload=bytes(5))
OUTPUT_PART_BYTES = h(
    header(T.OUTPUT_PART),
    "0000000000000007",  # round
    "0000",  # index
    "0001",  # count
    "0000000000",  # payload
)

ABORT = wire.Abort(round=7, reason=wire.AbortReason.REFUSED, missing=frozenset({1, 3}), nmembers=4)
ABORT_BYTES = h(
    header(T.ABORT),
    "0000000000000007",  # round
    "04",  # reason: REFUSED
    "0004",  # nmembers
    "50",  # missing bitmap, 4 bits: 1, 3
)

INBOUND = wire.Inbound(seq=123, tag=2**63 + 5, index=0, count=2, payload=b"packet")
INBOUND_BYTES = h(
    header(T.INBOUND),
    "000000000000007b",  # seq
    "8000000000000005",  # flow tag
    "00",  # index
    "02",  # count
    "7061636b6574",  # payload
)

HELLO = wire.Hello(wall_ms=42, fingerprint=b"f" * 16, version=3)
HELLO_BYTES = h(
    header(T.HELLO),
    "000000000000002a",  # wall_ms
    "66666666666666666666666666666666",  # coalition file fingerprint
    "00000003",  # its version
)

HEARTBEAT = wire.Heartbeat(
    seq=9,
    round=8,
    epoch=3,
    leader=True,
    held=frozenset({0, 5}),
    naddresses=8,
    leaving=True,
    started_ms=1_800_000_000_000,
    excluded=frozenset({1}),
    nmembers=10,
    excluded_version=1_800_000_000_000_000,
    version=5,
    text_digest=b"t" * 16,
)
HEARTBEAT_BYTES = h(
    header(T.HEARTBEAT),
    "0000000000000009",  # seq
    "0000000000000008",  # round
    "00000003",  # epoch
    "03",  # flags: 1 leader, 2 leaving
    "000001a3185c5000",  # started_ms
    "0008",  # naddresses
    "00000005",  # the coalition file's version
    "74747474747474747474747474747474",  # its text's digest
    "84",  # held bitmap, 8 bits: 0, 5
    "0006651728988000",  # excluded_version: when the list of excluded members changed (µs)
    "000a",  # nmembers
    "4000",  # excluded bitmap, 10 bits: 1
)

KEYS = wire.Keys(wall_ms=77, keys=((4, b"k" * 32), (5, b"l" * 32)))
KEYS_BYTES = h(
    header(T.KEYS),
    "000000000000004d",  # wall_ms
    "02",  # number of keys
    "00000004",  # epoch
    "6b" * 32,  # its public key
    "00000005",
    "6c" * 32,
)

REFUSE = wire.Refuse(round=12, reason=wire.RefuseCode.STALE_ROUND, next_round=20, epoch=2)
REFUSE_BYTES = h(
    header(T.REFUSE),
    "000000000000000c",  # round
    "05",  # reason: STALE_ROUND
    "0000000000000014",  # next_round
    "00000002",  # epoch
)

TREE_PART = wire.TreePart(
    round=9, index=2, count=3, contributors=frozenset({0, 1, 8}), nmembers=9, payload=b"\xff\x00"
)
TREE_PART_BYTES = h(
    header(T.TREE_PART),
    "0000000000000009",  # round
    "0002",  # index
    "0003",  # count
    "0009",  # nmembers
    "c080",  # contributors bitmap, 9 bits: 0, 1, 8
    "ff00",  # payload
)

FLOWS = wire.Flows(seq=1 << 40, count=2, size=3, sealed=bytes(range(6)) + b"\xaa" * 16)
FLOWS_BYTES = h(
    header(T.FLOWS),
    "0000010000000000",  # seq
    "0002",  # number of records
    "0003",  # record size
    "000102 030405",  # records, sealed
    "aa" * 16,  # their AEAD tag
)


ATTEST = wire.Attest(round=7, nparts=3, root=b"r" * 16, opened=b"o" * 16)
ATTEST_BYTES = h(
    header(T.ATTEST),
    "0000000000000007",  # round
    "0003",  # number of parts
    "72" * 16,  # root: the digest of the parts' digests
    "6f" * 16,  # the digest of the OPEN body answered
)

BLAME = wire.Blame(round=7, bit=4099, phase=wire.BlamePhase.PROVE, edge=(1, 2), reveal=b"rv")
BLAME_BYTES = h(
    header(T.BLAME),
    "0000000000000007",  # round
    "00001003",  # bit
    "02",  # phase: PROVE
    "0001 0002",  # the disputed edge
    "0002",  # the other end's REVEAL: its length
    "7276",  # and the frame
    "0000",  # FLOOD only: the number of bits, then each (4 bytes)
)

BLAME_FLOOD = wire.Blame(round=7, bit=9, phase=wire.BlamePhase.FLOOD, bits=(9, 130))
BLAME_FLOOD_BYTES = h(
    header(T.BLAME),
    "0000000000000007",  # round
    "00000009",  # bit: the first of the bits
    "03",  # phase: FLOOD
    "0000 0000",  # no edge
    "0000",  # no REVEAL
    "0002",  # the number of bits: a bit of each reservation entry traced
    "00000009",
    "00000082",
)

REVEAL = wire.RevealMsg(
    round=7,
    bit=4099,
    nmembers=10,
    opened=b"o" * 16,
    own=b"m" * 32,
    pads={1: 0, 2: 1, 9: 1},
    keys={1: b"a" * 32, 2: b"b" * 32, 9: b"c" * 32},
)
REVEAL_BYTES = h(
    header(T.REVEAL),
    "0000000000000007",  # round
    "00001003",  # bit
    "000a",  # nmembers
    "6f" * 16,  # the digest of the OPEN body answered
    "6d" * 32,  # our ephemeral key for the epoch
    "6040",  # neighbours revealed, 10 bits: 1, 2, 9
    "2040",  # of them, pad bit 1: 2, 9
    "61" * 32,  # the key of each neighbour, as we used it, in order
    "62" * 32,
    "63" * 32,
)

PROOF = wire.ProofMsg(
    round=7,
    bit=4099,
    peer=2,
    public=b"a" * 32,
    peer_public=b"b" * 32,
    shared=b"s" * 32,
    proof=b"p" * 64,
)
PROOF_BYTES = h(
    header(T.PROOF),
    "0000000000000007",  # round
    "00001003",  # bit
    "0002",  # peer
    "61" * 32,  # our ephemeral key
    "62" * 32,  # the peer's
    "73" * 32,  # the exchange
    "70" * 64,  # its proof
)

VERDICT = wire.VerdictPiece(round=7, bit=4099, index=1, count=2, data=b"ev")
VERDICT_BYTES = h(
    header(T.VERDICT),
    "0000000000000007",  # round
    "00001003",  # bit
    "0001",  # index
    "0002",  # count
    "6576",  # evidence (common/verdict.py)
)

COALITION = wire.CoalitionChunk(version=2, digest=b"d" * 16, index=1, count=3, data=b"[c]")
COALITION_BYTES = h(
    header(T.COALITION),
    "00000002",  # version
    "64646464646464646464646464646464",  # digest of the whole text
    "01",  # index
    "03",  # count
    "5b635d",  # a chunk of the file's text
)

JOIN = wire.Join(wall_ms=42, name="m4", public=b"p" * 32, old_public=b"o" * 32)
JOIN_BYTES = h(
    header(T.JOIN),
    "000000000000002a",  # wall_ms
    "70" * 32,  # public key
    "6f" * 32,  # old public key (zeros for a new host)
    "02",  # name length
    "6d34",  # name
)


def encode(value: Any, mtype: wire.MsgType) -> bytes:
    if isinstance(value, wire.Part):
        return value.encode(mtype, CID, SENDER)
    out: bytes = value.encode(CID, SENDER)
    return out


Pull = Callable[[bytes], Any]

OFFER = Offer(
    issued_ms=1_800_000_000_123,
    price=Price(0.5, 3.0),
    next_at_ms=1_800_000_100_000,
    next_price=Price(0.25, 2.0),
    free_mb=10,
    mb_per_token=100,
    token_key=b"\x01\x02\x03",
    cred_period=7,
    cred_key=b"\x04\x05",
)
OFFER_BYTES = h(
    header(T.OFFER),
    "000001a3185c507b",  # issued_ms
    "3fe0000000000000",  # per_gb 0.5 (IEEE 754 double)
    "4008000000000000",  # per_month 3.0
    "000001a3185dd6a0",  # next_at_ms
    "3fd0000000000000",  # next per_gb 0.25
    "4000000000000000",  # next per_month 2.0
    "0000000a",  # free_mb
    "00000064",  # mb_per_token
    "0003 010203",  # token key: length, bytes
    "0000000000000007",  # credential period
    "0002 0405",  # credential key: length, bytes
)

BUY = tokens.Buy(tokens.TokenKind.PAYMENT, 2, 0x0102030405060708, 0, (b"\xaa" * 4, b"\xbb" * 4))
BUY_BYTES = h(
    header(T.BUY),
    "01",  # kind: payment
    "0002",  # the gateway asked
    "0102030405060708",  # request
    "0000000000000000",  # period (credentials only)
    "02 0004",  # count, size of each blinded message
    "aaaaaaaa bbbbbbbb",
)
ISSUE = tokens.Issue(tokens.TokenKind.CREDENTIAL, 5, 9, tokens.Refusal.NONE, (b"\xcc" * 3,))
ISSUE_BYTES = h(
    header(T.ISSUE),
    "02",  # kind: credential
    "0005",  # the member that asked
    "0000000000000009",  # its request
    "00",  # refusal: none
    "01 0003",  # count, size of each blind signature
    "cccccc",
)
RATING = tokens.Relay(tokens.RatingKind.ANONYMOUS, b"\x01\x02")
RATING_BYTES = h(header(T.RATING), "01", "0002", "0102")  # kind, length, the rating's bytes

GOLDEN: list[tuple[str, wire.MsgType, Any, bytes, Pull]] = [
    ("open", T.OPEN, OPEN, OPEN_BYTES, wire.pull_open),
    ("open_tree", T.OPEN, OPEN_TREE, OPEN_TREE_BYTES, wire.pull_open),
    ("contrib", T.CONTRIB, CONTRIB, CONTRIB_BYTES, wire.pull_part),
    ("output_head", T.OUTPUT_HEAD, OUTPUT_HEAD, OUTPUT_HEAD_BYTES, wire.pull_output_head),
    ("output_part", T.OUTPUT_PART, OUTPUT_PART, OUTPUT_PART_BYTES, wire.pull_part),
    ("abort", T.ABORT, ABORT, ABORT_BYTES, wire.pull_abort),
    ("inbound", T.INBOUND, INBOUND, INBOUND_BYTES, wire.pull_inbound),
    ("hello", T.HELLO, HELLO, HELLO_BYTES, wire.pull_hello),
    ("heartbeat", T.HEARTBEAT, HEARTBEAT, HEARTBEAT_BYTES, wire.pull_heartbeat),
    ("keys", T.KEYS, KEYS, KEYS_BYTES, wire.pull_keys),
    ("refuse", T.REFUSE, REFUSE, REFUSE_BYTES, wire.pull_refuse),
    ("tree_part", T.TREE_PART, TREE_PART, TREE_PART_BYTES, wire.pull_tree_part),
    ("flows", T.FLOWS, FLOWS, FLOWS_BYTES, wire.pull_flows),
    ("attest", T.ATTEST, ATTEST, ATTEST_BYTES, wire.pull_attest),
    ("blame", T.BLAME, BLAME, BLAME_BYTES, wire.pull_blame),
    ("blame_flood", T.BLAME, BLAME_FLOOD, BLAME_FLOOD_BYTES, wire.pull_blame),
    ("reveal", T.REVEAL, REVEAL, REVEAL_BYTES, wire.pull_reveal),
    ("proof", T.PROOF, PROOF, PROOF_BYTES, wire.pull_proof),
    ("verdict", T.VERDICT, VERDICT, VERDICT_BYTES, wire.pull_verdict),
    ("coalition", T.COALITION, COALITION, COALITION_BYTES, wire.pull_coalition),
    ("join", T.JOIN, JOIN, JOIN_BYTES, wire.pull_join),
    ("offer", T.OFFER, OFFER, OFFER_BYTES, pull_offer),
    ("buy", T.BUY, BUY, BUY_BYTES, tokens.pull_buy),
    ("issue", T.ISSUE, ISSUE, ISSUE_BYTES, tokens.pull_issue),
    ("rating", T.RATING, RATING, RATING_BYTES, tokens.pull_relay),
]


@pytest.mark.parametrize(
    ("mtype", "value", "golden", "pull"),
    [g[1:] for g in GOLDEN],
    ids=[g[0] for g in GOLDEN],
)
def test_frame_encodes_to_its_golden_bytes_and_back(
    mtype: wire.MsgType, value: Any, golden: bytes, pull: Pull
) -> None:
    assert encode(value, mtype) == golden
    assert wire.pull_header(golden) == wire.Header(wire.VERSION, mtype, CID, SENDER)
    assert pull(golden) == value


def test_every_frame_type_has_a_golden_vector() -> None:
    assert {g[1] for g in GOLDEN} == set(wire.MsgType)


def test_the_numbers_on_the_wire() -> None:
    """Version, type codes and reason codes are wire values: they never follow declaration
    order, and changing one is a new protocol version."""
    assert wire.VERSION == 12
    assert wire.ETHERTYPE == 0x88B5
    assert {t.name: t.value for t in wire.MsgType} == {
        "OPEN": 1,
        "CONTRIB": 2,
        "OUTPUT_HEAD": 3,
        "OUTPUT_PART": 4,
        "ABORT": 5,
        "INBOUND": 6,
        "HELLO": 7,
        "HEARTBEAT": 8,
        "KEYS": 9,
        "REFUSE": 10,
        "TREE_PART": 11,
        "FLOWS": 12,
        "ATTEST": 13,
        "BLAME": 14,
        "REVEAL": 15,
        "PROOF": 16,
        "VERDICT": 17,
        "COALITION": 18,
        "JOIN": 19,
        "OFFER": 20,
        "BUY": 21,
        "ISSUE": 22,
        "RATING": 23,
    }
    assert {r.name: r.value for r in wire.BlamePhase} == {"REVEAL": 1, "PROVE": 2, "FLOOD": 3}
    assert {r.name: r.value for r in wire.AbortReason} == {
        "DEADLINE": 1,
        "LEADER_CHANGE": 2,
        "REFUSED": 4,
    }
    assert {r.name: r.value for r in wire.RefuseCode} == {
        "ROSTER_TOO_SMALL": 1,
        "WEAK_KEY_GRAPH": 2,
        "CLOCK": 3,
        "MISSING_KEY": 4,
        "STALE_ROUND": 5,
    }


# --- what follows a body: fixed keys (Ed25519 signatures are deterministic) ------------------

LEADER = HostKey(bytes(32))
MEMBER_KEYS = [bytes([1]) * 32, bytes([2]) * 32]  # the MAC key each member shares with it

# The MAC table of OPEN_BYTES under MEMBER_KEYS: BLAKE2b-128 of the body, keyed, in index order.
OPEN_MACS = (h("329503652f77ab2a4bbc5290e179e4fe"), h("d3a0e8ee4b7526da9bde56cedb0a8c44"))
OPEN_TABLE = b"".join(OPEN_MACS)
# LEADER's Ed25519 signature over OPEN_BYTES and its MAC table.
OPEN_SIGNATURE = h(
    "29812a8f136f8a5163e7704b2142bd29dd93437f95698b77c334e642419f73ac",
    "5458f1f78489fa02c05bf6d58ff3f7976118c35eb4d9c8802ed8675d5410a70c",
)


def test_a_sealed_frame_is_body_mac_table_signature() -> None:
    frame = sealed(LEADER, OPEN_BYTES, MacTable(MEMBER_KEYS))
    assert frame == OPEN_BYTES + OPEN_TABLE + OPEN_SIGNATURE
    assert wire.split_sealed(frame, len(MEMBER_KEYS)) == (OPEN_BYTES, OPEN_TABLE, OPEN_SIGNATURE)
    for index, key in enumerate(MEMBER_KEYS):  # each member checks its own entry
        assert wire.table_entry(OPEN_TABLE, index) == OPEN_MACS[index]
        assert check_sealed(key, frame, index, len(MEMBER_KEYS)) == OPEN_BYTES
    with pytest.raises(RemoteProtocolError) as info:  # another member's entry is not ours
        check_sealed(MEMBER_KEYS[0], frame, 1, len(MEMBER_KEYS))
    assert info.value.reason is RejectReason.BAD_AUTH
    assert Verifier().verify(LEADER.public, OPEN_BYTES + OPEN_TABLE, OPEN_SIGNATURE)


# A member's CONTRIB: the body and its MAC16 under the key it shares with the leader.
CONTRIB_MAC = h("d2fffb03d94dc1821ebd3ff802c43fb3")
# LEADER's Ed25519 signature over ABORT_BYTES (signed frames end with 64 bytes of it).
ABORT_SIGNATURE = h(
    "9fa4b78e5fa228a7c8bd694619964d3c229711f7fac2cb48fd4b64cbe6d5b400",
    "e8a86bf8611d146b58a4b90593500c5f578d3578bf2097c250a7588b2ec6c609",
)


def test_a_maced_frame_and_a_signed_frame() -> None:
    frame = maced(MEMBER_KEYS[0], CONTRIB_BYTES)
    assert frame == CONTRIB_BYTES + CONTRIB_MAC
    assert check_mac(MEMBER_KEYS[0], frame) == CONTRIB_BYTES
    frame = signed(LEADER, ABORT_BYTES)
    assert frame == ABORT_BYTES + ABORT_SIGNATURE
    assert wire.split_auth(frame, wire.SIG_LEN) == (ABORT_BYTES, ABORT_SIGNATURE)


# --- inside a round's vector ----------------------------------------------------------------


def test_reservation_claim() -> None:
    """nonce(12): BLAKE2b-96 of the claimant's 16-byte secret (personal "lanon-claim"), then
    BLAKE2b-32 of the nonce (personal "lanon-resv")."""
    secret = bytes(range(16))
    claim = h("9efb5fc9bd9a5452613ba72a", "52beda04")
    assert reservation.make_claim(secret) == claim
    empty = "00000000000000000000000000000000"
    area = reservation.write_claims(3, {1: claim})
    assert area == h(empty, claim.hex(), empty)
    assert reservation.tally(bytes(area), 3, 4) == reservation.Tally((1,), 0, ())


CELL = cell.Cell(tag=0x0102030405060708, packet_id=0xA0B0C0D0, index=1, count=3, data=b"data")
CELL_BYTES = h(
    "aea41a88c73e9f39",  # check: BLAKE2b-64 of everything after it
    "a0b0c0d0",  # packet id
    # whitened: XOR ChaCha20 (original construction, from block 1), key BLAKE2b-256 of
    # b"lanon cell whitening", nonce packet id || 0^4, over: flow tag 0102030405060708,
    # index 01, count 03, length 0004, data 64617461 ("data")
    "689083773c2f305369cb7667f4d06213",
    "00" * 12,  # zero padding to the 40-byte cell, not whitened
)


def test_cell() -> None:
    c = CELL
    assert cell.encode_cell(40, c.tag, c.packet_id, c.index, c.count, c.data) == CELL_BYTES
    assert cell.decode_slot(CELL_BYTES) == (cell.SlotState.CELL, CELL)


# Per-flow keys (common/flowkey.py): a key, the tag it names, a sealed packet and an INBOUND seal.
FLOW_KEY = bytes(range(32))


def test_a_flow_key_names_its_tag_and_seals_alike() -> None:
    assert flowkey.flow_tag(FLOW_KEY) == 0xDB509D6D78992458
    assert flowkey.seal_packet(FLOW_KEY, 0xDB509D6D78992458, 7, b"packet") == h(
        "00",  # flags: no wrap
        "0000000000000007",  # counter: the nonce is 0^4 || counter
        "582776282bf7",  # "packet", ChaCha20-Poly1305 under the flow key
        "94084f189b3e70352aa5742a21fa163d",  # its tag (aad: flow tag, flags, counter)
    )
    # An INBOUND part: nonce (0x80000000 | gateway 2) || seq 123, aad the frame's head.
    assert flowkey.seal_part(FLOW_KEY, 2, 123, b"head", b"part", flowkey.CHACHA) == h(
        "04ae6440", "acbf1d5d93b745c8ca5e228a6131875f"
    )
    # The same with AES-256-GCM ([coalition] inbound_cipher = "aes256-gcm")
    aes = flowkey.InboundCipher.AES256_GCM
    assert flowkey.seal_part(FLOW_KEY, 2, 123, b"head", b"part", aes) == h(
        "ca937ec1", "059b456f46e810e89ff9bd968e306016"
    )


def test_services_messages_and_flags_are_pinned() -> None:
    """What a service's cells and its endpoint's INBOUND carry (common/endpoints.py), the
    SERVICE flag of sealed packets, and a FLOWS record (gateway/flows.py)."""
    from lanon.common import endpoints, flowkey
    from lanon.gateway.flows import RECORD

    anon = bytes((198, 18, 0, 193))
    register = endpoints.Register(6, anon, 443, 1000, b"")
    assert register.encode() == bytes.fromhex("01 06 c61200c1 01bb 00000000000003e8")
    assert endpoints.Granted(17, anon, 53).encode() == bytes.fromhex("02 11 c61200c1 0035")
    assert endpoints.Refused(endpoints.Refusal.STALE).encode() == bytes.fromhex("03 06")
    assert (flowkey.WRAPPED, flowkey.SERVICE) == (0x01, 0x02)
    assert RECORD.format == "!QBB4sH4sHBBQ32sQQ" and RECORD.size == 80


def test_tokens_and_ratings_inside_cells_are_pinned() -> None:
    """A payment in a flow's sealed packet, and an anonymous rating in cells of its tag."""
    token = tokens.Token(b"\x01\x02", b"\x03")
    assert tokens.spend_message(token) == h("10", "0002 0102", "0001 03")
    assert (tokens.RATING_TAG, tokens.SPEND) == (1, 0x10)
    rating = tokens.Rating(7, (("a", 90), ("bc", 5)), "a", token, b"s" * 64)
    assert rating.encode() == h(
        "0000000000000007",  # period
        "01 61",  # choice: length, "a"
        "02",  # providers rated
        "01 61 5a",  # "a": 90
        "02 6263 05",  # "bc": 5
        "0002 0102 0001 03",  # the credential: prepared message, signature
        "73" * 64,  # the rating key's signature
    )
    assert tokens.pull_rating(rating.encode()) == rating
    assert rating.signed() == b"lanon-rating\x00" + rating.encode()[:-64]
    assert tokens.credential_message(7, b"k" * 32) == (
        b"lanon-rating-credential\x00" + h("0000000000000007") + b"k" * 32
    )


def test_an_attest_rides_at_the_end_of_a_last_contrib_part() -> None:
    """Version 10: where the round's shape has room (`Coalition.attest_rides`), a member's last
    CONTRIB part is its body, then its signed ATTEST (body and signature, ATTEST_LEN bytes),
    then the MAC over both."""
    signed_attest = signed(LEADER, ATTEST_BYTES)  # (any key: the layout is what is pinned)
    assert len(signed_attest) == wire.ATTEST_LEN == len(ATTEST_BYTES) + wire.SIG_LEN == 114
    frame = maced(MEMBER_KEYS[0], CONTRIB_BYTES + signed_attest)
    part = wire.pull_part(check_mac(MEMBER_KEYS[0], frame))
    assert part.payload[-wire.ATTEST_LEN :] == signed_attest
    assert wire.pull_attest(part.payload[-wire.ATTEST_LEN : -wire.SIG_LEN]) == ATTEST
