"""Per-flow keys: a flow's packets are read by its member and the gateways, nobody else.

Round outputs are public on the LAN and INBOUND frames are broadcast, so what they carry is
sealed under a key of the flow's own:

- A member starting a flow draws a random 32-byte flow key K. The flow's tag is BLAKE2b-64 of
  K: a tag names one key, and nobody can bind another key to a tag seen in an output.
- It gives K to every gateway in the flow's first packets (and again now and then, for a
  gateway that restarted), wrapped to all gateways at once with a fresh X25519 key per flow:

      wrap  :=  n(1)  E(32)  { K xor BLAKE2b(X25519(e, G_g), E || G_g) }  for gateways g < n

  Only a gateway can unwrap it; a tag check (BLAKE2b-64 of the result) says it did so right.
- Outbound packets (in cells) are sealed as

      flags(1)  [wrap]  counter(8)  ChaCha20-Poly1305(K, 0^4 || counter, packet)

  (flags: WRAPPED, a wrap follows; SERVICE, the tag is a service's endpoint, never a flow)

  with everything before the ciphertext and the tag as associated data. The counter is the
  flow's own packet count: per flow, never per member, so it links nothing the tag does not.
- Inbound packets are sealed part by part in their INBOUND frames under the same K, nonce
  (0x80000000 | gateway) || sequence number, the frame's header as associated data, with the
  coalition's `InboundCipher`. A member checks one in a microsecond or less; for a frame of
  someone else's flow it does the same work on a key of nobody's (`InboundOpener`), so owning
  a flow costs nothing anyone can see.

A gateway still reads every packet it carries (addresses, ports, contents that the application
did not encrypt): it must, to emit them. It never learns which member a flow is.
"""

from __future__ import annotations

import enum
import hashlib
import random
import struct
import threading
from collections.abc import Sequence

from nacl.bindings import (
    crypto_scalarmult,
    crypto_scalarmult_base,
    crypto_sign_ed25519_pk_to_curve25519,
)

from lanon.common import compiled, wire
from lanon.common.crypto import KEY_LEN, HostKey
from lanon.common.sodium import (
    AES_GCM_MISSING,
    RAW_STREAM,
    aes_open,
    aes_seal,
    open_sealed,
    seal,
    spend_stream,
)
from lanon.common.sodium import TAG_LEN as AEAD_TAG

TAG_OF_KEY = b"lanon-flowtag-v1"
WRAP_PERSON = b"lanon-flowwrap-1"
WRAPPED = 0x01  # flags: a wrap follows
SERVICE = 0x02  # flags: a service's (common/endpoints.py): its tag names an endpoint, never a flow
COUNTER = struct.Struct("!Q")
SEALED_OVERHEAD = 1 + COUNTER.size + AEAD_TAG  # of a packet without a wrap
INBOUND_DIRECTION = 0x80000000


class InboundCipher(enum.Enum):
    """The AEAD of INBOUND frames ([coalition] inbound_cipher). Every member opens every
    frame of every download, so what one costs is paid once per member: on x86, AES-256-GCM
    (AES-NI) costs a member about a third of ChaCha20-Poly1305's CPU a frame."""

    CHACHA20_POLY1305 = "chacha20-poly1305"  # any processor
    AES256_GCM = "aes256-gcm"  # processors with AES-NI, PCLMUL and AVX (sodium.AES_GCM_MISSING)

    @property
    def compiled(self) -> int:
        """Its number in the compiled code (native.h, inbound_drain.h)."""
        return 1 if self is InboundCipher.AES256_GCM else 0

    @property
    def label(self) -> str:
        return "AES-256-GCM" if self is InboundCipher.AES256_GCM else "ChaCha20-Poly1305"

    def missing(self) -> str | None:
        """Why this host cannot use it, or None."""
        return AES_GCM_MISSING if self is InboundCipher.AES256_GCM else None

    def seal(self, message: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes:
        sealer = aes_seal if self is InboundCipher.AES256_GCM else seal
        return sealer(message, aad, nonce, key)

    def open(self, sealed: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes | None:
        opener = aes_open if self is InboundCipher.AES256_GCM else open_sealed
        return opener(sealed, aad, nonce, key)


CHACHA = InboundCipher.CHACHA20_POLY1305  # (and FLOWS records' between gateways, always)


def flow_tag(key: bytes) -> int:
    """The tag that names the flow of key `key` (never 0)."""
    digest = hashlib.blake2b(key, digest_size=8, person=TAG_OF_KEY).digest()
    return int.from_bytes(digest, "big") or 1


def new_flow_key(rng: random.Random) -> bytes:
    """A fresh flow key (`rng` is the engine's: the system's CSPRNG in the daemons)."""
    return rng.randbytes(KEY_LEN)


def wrap_len(ngateways: int) -> int:
    return 1 + KEY_LEN + KEY_LEN * ngateways


def _wrap_pad(shared: bytes, ephemeral: bytes, gateway_x: bytes) -> bytes:
    return hashlib.blake2b(
        ephemeral + gateway_x, key=shared, digest_size=KEY_LEN, person=WRAP_PERSON
    ).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


class KeyWrapper:
    """A member's side: wraps flow keys to the coalition's gateways (X25519 forms precomputed)."""

    def __init__(self, gateway_publics: Sequence[bytes]) -> None:
        self.gateways = [crypto_sign_ed25519_pk_to_curve25519(p) for p in gateway_publics]

    def wrap(self, key: bytes, rng: random.Random) -> bytes:
        secret = rng.randbytes(KEY_LEN)  # a fresh X25519 key: wraps of two flows link nothing
        ephemeral = crypto_scalarmult_base(secret)
        pieces = [
            _xor(key, _wrap_pad(crypto_scalarmult(secret, g), ephemeral, g)) for g in self.gateways
        ]
        return bytes((len(self.gateways),)) + ephemeral + b"".join(pieces)


def unwrap(host: HostKey, index: int, tag: int, wrap: bytes) -> bytes | None:
    """Gateway `index`'s copy of the flow key in `wrap`, if it is there and is tag's key."""
    key = unwrap_key(host, index, wrap)
    return key if key is not None and flow_tag(key) == tag else None


def unwrap_key(host: HostKey, index: int, wrap: bytes) -> bytes | None:
    """Gateway `index`'s copy of the key in `wrap`, unchecked (what it seals says if it is
    right: an accusation's AEAD tag)."""
    if len(wrap) < 1 + KEY_LEN or wrap[0] <= index or len(wrap) != wrap_len(wrap[0]):
        return None
    ephemeral = wrap[1 : 1 + KEY_LEN]
    shared = host.exchange_x(ephemeral)
    if shared is None:
        return None
    start = 1 + KEY_LEN + KEY_LEN * index
    return _xor(wrap[start : start + KEY_LEN], _wrap_pad(shared, ephemeral, host.x_public))


# --- outbound packets -----------------------------------------------------------------------


def _outbound_nonce(counter: int) -> bytes:
    return b"\0\0\0\0" + COUNTER.pack(counter)


def seal_packet(
    key: bytes, tag: int, counter: int, packet: bytes, wrap: bytes = b"", service: bool = False
) -> bytes:
    flags = (WRAPPED if wrap else 0) | (SERVICE if service else 0)
    head = bytes((flags,)) + wrap + COUNTER.pack(counter)
    aad = tag.to_bytes(8, "big") + head
    return head + seal(packet, aad, _outbound_nonce(counter), key)


class Sealed:
    """A sealed outbound packet taken apart (nothing checked yet)."""

    __slots__ = ("aad", "body", "counter", "service", "wrap")

    def __init__(self, tag: int, data: bytes) -> None:
        """Raises ValueError if `data` cannot be a sealed packet."""
        if not data or data[0] & ~(WRAPPED | SERVICE):
            raise ValueError("unknown flags")
        self.service = bool(data[0] & SERVICE)
        at = 1
        self.wrap = b""
        if data[0] & WRAPPED:
            if len(data) < 2:
                raise ValueError("short wrap")
            at += wrap_len(data[1])
            self.wrap = data[1:at]
        if len(data) < at + COUNTER.size + AEAD_TAG:
            raise ValueError("shorter than its seal")
        (self.counter,) = COUNTER.unpack_from(data, at)
        at += COUNTER.size
        self.aad = tag.to_bytes(8, "big") + data[:at]
        self.body = data[at:]

    def open(self, key: bytes) -> bytes | None:
        """The packet, if it was sealed under `key`."""
        return open_sealed(self.body, self.aad, _outbound_nonce(self.counter), key)


# --- inbound packets ------------------------------------------------------------------------


_INBOUND_NONCE = struct.Struct("!IQ")  # direction and gateway, then its inbound number


def _inbound_nonce(gateway: int, seq: int) -> bytes:
    return _INBOUND_NONCE.pack(INBOUND_DIRECTION | gateway, seq)


def seal_part(
    key: bytes,
    gateway: int,
    seq: int,
    header: bytes,
    payload: bytes,
    cipher: InboundCipher,
) -> bytes:
    """An INBOUND frame's sealed payload, with the coalition's cipher; `header` is everything
    before it in the frame. (Also a FLOWS frame's, always with ChaCha20-Poly1305: `CHACHA`.)"""
    return cipher.seal(payload, header, _inbound_nonce(gateway, seq), key)


def seal_parts(
    key: bytes,
    gateway: int,
    first_seq: int,
    head: bytes,
    packet: bytes,
    capacity: int,
    cipher: InboundCipher,
) -> list[bytes]:
    """`packet` as the INBOUND frames of a gateway's broadcast: cut into parts of `capacity`
    bytes (the last shorter; an empty packet one empty part), part i numbered first_seq + i,
    each `head` (wire.inbound_head) with its number, index and count set, then its part
    sealed (`seal_part`). In compiled code where it was built (common/native.c): a 64 KiB
    packet's 45 frames in one call, where each cost about 3 µs of Python around libsodium."""
    if len(key) != KEY_LEN or len(head) != wire.INBOUND_HEAD or capacity < 1:
        raise ValueError("wrong key, header or part size")
    count = wire.part_count(len(packet), capacity)
    if count > 255:
        raise ValueError(f"{len(packet)} bytes is more than 255 parts of {capacity}")
    if not 0 <= first_seq <= wire.MAX_SEQ - (count - 1):
        raise ValueError(f"inbound numbers from {first_seq} for {count} parts")
    why = cipher.missing()
    if why is not None:  # (libsodium would abort)
        raise RuntimeError(why)
    if _native is None:  # each part's header made and its part sealed here
        numbers = head[: wire.INBOUND_SEQ_AT]
        rest = head[wire.INBOUND_SEQ_AT + 8 : wire.INBOUND_INDEX_AT]
        frames = []
        for i, seq in enumerate(range(first_seq, first_seq + count)):
            h = numbers + seq.to_bytes(8, "big") + rest + bytes((i, count))
            part = packet[i * capacity : (i + 1) * capacity]
            frames.append(h + seal_part(key, gateway, seq, h, part, cipher))
        return frames
    size = count * wire.INBOUND_OVERHEAD + len(packet)
    out = _seal_out.buffer if size <= SEAL_BUFFER else _native.ffi.new("unsigned char[]", size)
    done = _native.lib.lanon_seal_inbound(
        out,
        size,
        head,
        _native.ffi.from_buffer(packet),
        len(packet),
        capacity,
        INBOUND_DIRECTION | gateway,
        first_seq,
        key,
        cipher.compiled,
    )
    if done != count:
        raise RuntimeError(f"the compiled sealing made {done} frames of {count}")
    frames = _native.ffi.buffer(out, size)
    step = capacity + wire.INBOUND_OVERHEAD
    return [frames[at : at + step] for at in range(0, size, step)]


SEAL_BUFFER = 1 << 17  # a 64 KiB packet's frames fit


_native, NOT_COMPILED = compiled.load("common._native", "lanon_native_init3")  # why, if not


class _SealOut(threading.local):
    def __init__(self) -> None:
        self.buffer = _native.ffi.new("unsigned char[]", SEAL_BUFFER) if _native else None


_seal_out = _SealOut()


def open_part(
    key: bytes,
    gateway: int,
    seq: int,
    header: bytes,
    sealed: bytes,
    cipher: InboundCipher,
) -> bytes | None:
    return cipher.open(sealed, header, _inbound_nonce(gateway, seq), key)


class InboundOpener:
    """Opens INBOUND payloads with the same work whatever the outcome.

    Every member gets every INBOUND frame. With AES-256-GCM, libsodium (1.0.19 on) runs one
    pass of AES-CTR and GHASH over a frame whether its tag holds or not, and one call does it:
    the same work for the owner and everyone else.

    With ChaCha20-Poly1305, the owner of its flow opens it: Poly1305 over the
    header and ciphertext, then ChaCha20 over the ciphertext. Any other member (or the owner,
    of a forged frame) stops at the Poly1305 check, and `open` then runs ChaCha20 over the
    ciphertext under a key of nobody's, as a decryption would; after a success, that second
    call runs over nothing. Either way a frame costs one Poly1305 pass over header and
    ciphertext and one ChaCha20 pass over the ciphertext, in two calls: the CPU time it takes
    does not say whose flow it is.

    Without libsodium's raw stream functions (`sodium.RAW_STREAM`) the second call is an
    encryption under nobody's key instead, of the ciphertext after a failure and of nothing
    (the header and ciphertext as associated data) after a success: two Poly1305 passes and
    one ChaCha20 pass either way, the same evening out at a little more cost.
    """

    def __init__(self, rng: random.Random, cipher: InboundCipher) -> None:
        self._nobody = rng.randbytes(KEY_LEN)
        self.cipher = cipher

    def open(
        self, key: bytes | None, gateway: int, seq: int, header: bytes, sealed: bytes
    ) -> bytes | None:
        nonce = _inbound_nonce(gateway, seq)
        payload = self.cipher.open(sealed, header, nonce, key or self._nobody)
        if self.cipher is InboundCipher.AES256_GCM:  # (its one call did the work either way)
            return payload
        if RAW_STREAM:  # (a payload shorter than a tag: nothing to decrypt, nothing to spend)
            spend_stream(
                sealed, 0 if payload is not None else len(sealed) - AEAD_TAG, nonce, self._nobody
            )
        elif payload is None:
            seal(sealed[:-AEAD_TAG], header, nonce, self._nobody)
        else:
            seal(b"", header + sealed[:-AEAD_TAG], nonce, self._nobody)
        return payload
