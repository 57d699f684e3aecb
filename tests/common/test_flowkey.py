"""Per-flow keys: wraps only gateways open, seals only the key opens (common/flowkey.py)."""

from __future__ import annotations

import random

import pytest

from lanon.common import flowkey, sodium, wire
from lanon.common.crypto import HostKey

RNG = random.Random(5)
CIPHERS = pytest.mark.parametrize("cipher", list(flowkey.InboundCipher), ids=lambda c: c.value)
GATEWAYS = [HostKey(bytes([i + 1]) * 32) for i in range(3)]
MEMBER = HostKey(bytes([9]) * 32)


def test_every_gateway_unwraps_the_same_key_and_nobody_else_does() -> None:
    key = flowkey.new_flow_key(RNG)
    tag = flowkey.flow_tag(key)
    wrap = flowkey.KeyWrapper([g.public for g in GATEWAYS]).wrap(key, RNG)
    assert len(wrap) == flowkey.wrap_len(3)
    assert [flowkey.unwrap(g, i, tag, wrap) for i, g in enumerate(GATEWAYS)] == [key] * 3
    assert flowkey.unwrap(GATEWAYS[0], 1, tag, wrap) is None  # another gateway's piece
    assert flowkey.unwrap(MEMBER, 0, tag, wrap) is None  # a member holds no gateway key
    assert flowkey.unwrap(GATEWAYS[0], 0, tag ^ 1, wrap) is None  # not this tag's key
    assert flowkey.unwrap(GATEWAYS[2], 3, tag, wrap) is None  # a gateway the wrap predates
    for bad in (b"", wrap[:-1], wrap + b"\0", bytes([0]) + wrap[1:]):
        assert flowkey.unwrap(GATEWAYS[0], 0, tag, bad) is None


def test_two_wraps_of_one_member_share_nothing_visible() -> None:
    wrapper = flowkey.KeyWrapper([g.public for g in GATEWAYS])
    a = wrapper.wrap(flowkey.new_flow_key(RNG), RNG)
    b = wrapper.wrap(flowkey.new_flow_key(RNG), RNG)
    assert a[1:33] != b[1:33]  # a fresh ephemeral key per flow: wraps do not link flows


def test_a_sealed_packet_opens_under_its_key_only_and_is_bound_to_its_tag() -> None:
    key, other = flowkey.new_flow_key(RNG), flowkey.new_flow_key(RNG)
    tag = flowkey.flow_tag(key)
    sealed = flowkey.seal_packet(key, tag, 5, b"packet")
    s = flowkey.Sealed(tag, sealed)
    assert (s.counter, s.wrap, s.open(key)) == (5, b"", b"packet")
    assert s.open(other) is None
    assert flowkey.Sealed(tag ^ 1, sealed).open(key) is None  # moved under another tag
    tampered = bytearray(sealed)
    tampered[3] ^= 1  # the counter (associated data)
    assert flowkey.Sealed(tag, bytes(tampered)).open(key) is None
    wrap = flowkey.KeyWrapper([g.public for g in GATEWAYS]).wrap(key, RNG)
    s = flowkey.Sealed(tag, flowkey.seal_packet(key, tag, 6, b"first", wrap))
    assert (s.wrap, s.open(key)) == (wrap, b"first")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x04" + bytes(40),
        b"\x01",
        b"\x01\x05" + bytes(30),
        bytes(flowkey.SEALED_OVERHEAD - 1),
    ],
    ids=["empty", "unknown flags", "wrap cut", "wrap longer than the packet", "short"],
)
def test_what_cannot_be_a_sealed_packet_is_refused_by_its_shape(data: bytes) -> None:
    with pytest.raises(ValueError):
        flowkey.Sealed(1, data)


@CIPHERS
def test_inbound_parts_open_under_their_gateway_and_sequence_number_only(
    cipher: flowkey.InboundCipher,
) -> None:
    key = flowkey.new_flow_key(RNG)
    sealed = flowkey.seal_part(key, 1, 77, b"head", b"part", cipher)
    assert flowkey.open_part(key, 1, 77, b"head", sealed, cipher) == b"part"
    assert flowkey.open_part(key, 0, 77, b"head", sealed, cipher) is None  # another gateway's
    assert flowkey.open_part(key, 1, 78, b"head", sealed, cipher) is None  # another number
    assert flowkey.open_part(key, 1, 77, b"HEAD", sealed, cipher) is None  # another header
    other = next(c for c in flowkey.InboundCipher if c is not cipher)
    assert flowkey.open_part(key, 1, 77, b"head", sealed, other) is None  # the other cipher
    opener = flowkey.InboundOpener(RNG, cipher)
    assert opener.open(key, 1, 77, b"head", sealed) == b"part"
    assert opener.open(None, 1, 77, b"head", sealed) is None


def test_aes256_gcm_is_the_standards_and_libsodiums_from_1_0_19() -> None:
    """A known answer (libsodium's own test, from the GCM specification's test vectors): the
    frames of a gateway and of a member built elsewhere interoperate. And it is usable on
    this machine, whose benchmark figures are made with it."""
    assert flowkey.InboundCipher.AES256_GCM.missing() is None
    key = bytes.fromhex("92ace3e348cd821092cd921aa3546374299ab46209691bc28b8752d17f123c20")
    nonce = bytes.fromhex("00112233445566778899aabb")
    sealed = sodium.aes_seal(bytes(range(10)), bytes.fromhex("00000000ffffffff"), nonce, key)
    assert sealed.hex() == "e27abdd2d2a53d2f136b" + "9a4a2579529301bcfb71c78d4060f52c"


def test_the_inbound_sealing_is_compiled() -> None:
    """`pip install` builds it (common/native.c): a gateway seals every INBOUND frame."""
    assert flowkey._native is not None


@CIPHERS
@pytest.mark.parametrize("compiled", [True, False])
def test_a_packets_inbound_frames_are_its_parts_each_sealed_as_one(
    compiled: bool, cipher: flowkey.InboundCipher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`seal_parts` gives the frames a gateway made part by part: each header numbered,
    indexed and counted, each part sealed under its own number, whatever the packet's size
    (empty, one byte short of, at and past a whole part, 64 KiB) and part size."""
    if not compiled:
        monkeypatch.setattr(flowkey, "_native", None)
    key = flowkey.new_flow_key(RNG)
    for capacity in (1, 100, 1458):
        for size in (0, 1, capacity - 1, capacity, capacity + 1, 3 * capacity, 65535):
            if -(-size // capacity) > 255:
                continue
            packet = RNG.randbytes(size)
            head = wire.inbound_head(7, 2, 0xABC)
            frames = flowkey.seal_parts(key, 2, 1000, head, packet, capacity, cipher)
            chunks = wire.split_vector(packet, capacity)
            assert len(frames) == len(chunks) == wire.part_count(size, capacity)
            for i, (frame, chunk) in enumerate(zip(frames, chunks, strict=True)):
                h = wire.Inbound(1000 + i, 0xABC, i, len(chunks), b"").encode(7, 2)
                assert frame == h + flowkey.seal_part(key, 2, 1000 + i, h, chunk, cipher)
                inbound = wire.pull_inbound(frame)
                assert (inbound.seq, inbound.tag, inbound.index) == (1000 + i, 0xABC, i)
                opened = flowkey.open_part(key, 2, 1000 + i, h, inbound.payload, cipher)
                assert opened == chunk


@CIPHERS
@pytest.mark.parametrize("compiled", [True, False])
def test_a_packet_past_255_parts_or_its_numbers_or_a_wrong_key_is_not_sealed(
    compiled: bool, cipher: flowkey.InboundCipher, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not compiled:
        monkeypatch.setattr(flowkey, "_native", None)
    head = wire.inbound_head(7, 2, 1)
    with pytest.raises(ValueError):
        flowkey.seal_parts(bytes(32), 2, 1, head, bytes(256), 1, cipher)
    with pytest.raises(ValueError):
        flowkey.seal_parts(bytes(31), 2, 1, head, b"x", 100, cipher)
    with pytest.raises(ValueError):
        flowkey.seal_parts(bytes(32), 2, 1, head[:-1], b"x", 100, cipher)
    # a number past 2**64 - 1 would wrap round to a nonce used before
    assert (
        len(flowkey.seal_parts(bytes(32), 2, wire.MAX_SEQ - 1, head, bytes(200), 100, cipher)) == 2
    )
    with pytest.raises(ValueError):
        flowkey.seal_parts(bytes(32), 2, wire.MAX_SEQ - 1, head, bytes(201), 100, cipher)


@CIPHERS
@pytest.mark.parametrize("raw", [True, False], ids=["raw stream", "AEAD only"])
@pytest.mark.parametrize("sealed", [b"", b"short", bytes(flowkey.AEAD_TAG)])
def test_an_inbound_payload_too_short_for_its_seal_opens_to_nothing(
    sealed: bytes, raw: bool, cipher: flowkey.InboundCipher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A LAN host may send an INBOUND frame with a payload shorter than a tag: refused like
    any forgery, by its owner and by everyone else, never an error."""
    monkeypatch.setattr(flowkey, "RAW_STREAM", raw)
    opener = flowkey.InboundOpener(RNG, cipher)
    key = flowkey.new_flow_key(RNG)
    assert opener.open(key, 1, 9, b"head", sealed) is None
    assert opener.open(None, 1, 9, b"head", sealed) is None


def test_a_host_without_aes_gcm_never_calls_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """libsodium aborts the process where the processor lacks it: a clear error instead,
    from the sealing, the opening and the compiled reader (the daemons refuse to start
    before: tests/cli)."""
    why = "this processor has no AES-NI"
    monkeypatch.setattr(sodium, "AES_GCM_MISSING", why)
    monkeypatch.setattr(flowkey, "AES_GCM_MISSING", why)
    aes = flowkey.InboundCipher.AES256_GCM
    assert aes.missing() == why and flowkey.CHACHA.missing() is None
    head = wire.inbound_head(7, 2, 1)
    for call in (
        lambda: flowkey.seal_parts(bytes(32), 2, 1, head, b"x", 100, aes),
        lambda: flowkey.seal_part(bytes(32), 2, 1, head, b"x", aes),
        lambda: flowkey.open_part(bytes(32), 2, 1, head, bytes(20), aes),
    ):
        with pytest.raises(RuntimeError, match=why):
            call()
