"""Keys, key derivation, pads and authenticators, all through libsodium (PyNaCl) and BLAKE2b.

Every host has one Ed25519 key pair. It signs (gateways: OPEN, round outputs, ABORT,
HEARTBEAT, FLOWS; members: HELLO and KEYS), and its X25519 form gives the pairwise secrets of
two hosts:

    MAC key      (member, gateway)      BLAKE2b(keyed by X25519(member, gateway), both public keys)
    gateway pair (gateway, gateway)     BLAKE2b(keyed by X25519(gateway, gateway), both public keys)

A round's pads come from ephemeral keys instead, one per member and epoch (`Ephemeral`, on the
Ed25519 curve), which each member announces signed (KEYS) and forgets once the epoch is over:
pads of past epochs cannot be recomputed, not even from the static keys (forward secrecy).

    epoch key    (pair, epoch e)        BLAKE2b(keyed by eph_i(e) x eph_j(e), e)
    pad          (epoch key, round t)   ChaCha20 keystream, nonce t (64-bit), from block 1

Blame opens as little as it can: a pad's bit at one position (`pad_bit`: a keystream bit says
nothing of the key); if two neighbours disagree on it, their exchange for the epoch with a proof
that it is right (`Ephemeral.prove`, `verify_exchange`), which exposes that pair's pads for that
epoch alone (the epoch then rotates). A key per round would not spare the epoch: a neighbour
that lies about a pad bit would show a round key to match, and only the epoch's exchange, which
can be proven, settles which of the two is right.

The pad is produced by libsodium's original ChaCha20-Poly1305 construction, whose ciphertext is
the plaintext XOR the ChaCha20 keystream from block 1; the Poly1305 tag is discarded. That XORs a
whole vector with a pad in one native call (about 1 GB/s here); where lanon was installed, a
member's pads for a round, one per neighbour with their shape keys, are all made in one compiled
call (common/native.c), 7.0 µs for 7 neighbours and a 1,300-byte vector against 15.5 µs.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import stat
import struct
from collections.abc import Sequence
from pathlib import Path

from nacl.bindings import (
    crypto_core_ed25519_is_valid_point,
    crypto_core_ed25519_scalar_add,
    crypto_core_ed25519_scalar_mul,
    crypto_core_ed25519_scalar_reduce,
    crypto_core_ed25519_sub,
    crypto_scalarmult,
    crypto_scalarmult_ed25519_base_noclamp,
    crypto_scalarmult_ed25519_noclamp,
    crypto_sign_ed25519_pk_to_curve25519,
)
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

from lanon.common import compiled
from lanon.common.errors import ConfigError
from lanon.common.sodium import stream_xor

KEY_LEN = 32


class HostKey:
    """A host's Ed25519 key pair and its X25519 form."""

    __slots__ = ("_signing", "_x_private", "public", "x_public")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != KEY_LEN:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._signing = SigningKey(seed)
        self.public: bytes = bytes(self._signing.verify_key)
        self._x_private: bytes = bytes(self._signing.to_curve25519_private_key())
        self.x_public: bytes = crypto_sign_ed25519_pk_to_curve25519(self.public)

    @classmethod
    def generate(cls) -> HostKey:
        return cls(os.urandom(KEY_LEN))

    @property
    def seed(self) -> bytes:
        return bytes(self._signing)

    def sign(self, message: bytes) -> bytes:
        return bytes(self._signing.sign(message).signature)

    def exchange(self, peer_public: bytes) -> bytes:
        """Raw X25519 shared secret with the host whose Ed25519 public key is peer_public."""
        try:
            peer_x = crypto_sign_ed25519_pk_to_curve25519(peer_public)
            return bytes(crypto_scalarmult(self._x_private, peer_x))
        except (CryptoError, ValueError) as exc:
            raise ConfigError(f"public key {encode_key(peer_public)} is not usable: {exc}") from exc

    def exchange_x(self, peer_x: bytes) -> bytes | None:
        """Raw X25519 with an X25519 public key (a flow's ephemeral); None if unusable."""
        try:
            return bytes(crypto_scalarmult(self._x_private, peer_x))
        except (CryptoError, RuntimeError, ValueError, TypeError):
            return None


def _derive(secret: bytes, data: bytes, person: bytes, size: int = KEY_LEN) -> bytes:
    return hashlib.blake2b(data, key=secret, person=person, digest_size=size).digest()


def _pair_derive(me: HostKey, peer_public: bytes, person: bytes) -> bytes:
    """A key of two hosts (the same on both sides), one per purpose (`person`)."""
    a, b = sorted((me.public, peer_public))
    return _derive(me.exchange(peer_public), a + b, person)


def gateway_pair_key(me: HostKey, peer_public: bytes) -> bytes:
    """Key that seals what one gateway tells another alone (flow keys in FLOWS)."""
    return _pair_derive(me, peer_public, b"lanon-gwpair-v1")


def mac_key(me: HostKey, peer_public: bytes) -> bytes:
    """Key that authenticates a member's frames to one gateway (the same on both sides)."""
    return _pair_derive(me, peer_public, b"lanon-mac-v1")


def answer_key(me: HostKey, peer_public: bytes) -> bytes:
    """Key that seals a member's answers to one gateway in trusted mode (common/trusted.py)."""
    return _pair_derive(me, peer_public, b"lanon-trusted-v1")


def epoch_key(epoch: int, ephemeral_shared: bytes) -> bytes:
    """A pair's pad key for one epoch, from the pair's ephemeral exchange alone: a disputed pad
    can then be checked by anyone the exchange is shown to, with its proof (`Ephemeral.prove`),
    and nothing of any other epoch or pair comes with it."""
    return _derive(ephemeral_shared, epoch.to_bytes(8, "big"), b"lanon-epoch-v3")


def _ephemeral_seed() -> bytes:
    """64 random bytes for an ephemeral scalar (the fuzzer replaces this with a seeded one)."""
    return os.urandom(64)


class Ephemeral:
    """An ephemeral key pair for one epoch, on the Ed25519 curve: scalar x, public X = x·B.

    The exchange with a peer's X' is the point x·X'. Its holder can prove it right without
    giving x away (`prove`: a Chaum-Pedersen proof that X and the exchange share the discrete
    logarithm), which is how a pad disputed in blame is settled (common/blame.py)."""

    __slots__ = ("_private", "id", "public")

    def __init__(self) -> None:
        self._private = crypto_core_ed25519_scalar_reduce(_ephemeral_seed())
        self.public = crypto_scalarmult_ed25519_base_noclamp(self._private)
        self.id = key_id(self.public)

    def exchange(self, peer_public: bytes) -> bytes | None:
        """The shared point with a peer's ephemeral key; None if that key is unusable (not a
        point of the main subgroup, or of small order)."""
        if not usable_point(peer_public):
            return None
        try:
            return bytes(crypto_scalarmult_ed25519_noclamp(self._private, peer_public))
        except (CryptoError, RuntimeError, ValueError, TypeError):
            return None

    def prove(self, peer_public: bytes) -> tuple[bytes, bytes] | None:
        """The exchange with `peer_public` and a proof that it is ours (see `verify_exchange`)."""
        shared = self.exchange(peer_public)
        if shared is None:
            return None
        r = crypto_core_ed25519_scalar_reduce(_ephemeral_seed())
        a1 = crypto_scalarmult_ed25519_base_noclamp(r)
        a2 = crypto_scalarmult_ed25519_noclamp(r, peer_public)
        c = _challenge(self.public, peer_public, shared, a1, a2)
        z = crypto_core_ed25519_scalar_add(r, crypto_core_ed25519_scalar_mul(c, self._private))
        return shared, c + z


def usable_point(point: bytes) -> bool:
    """Whether 32 bytes are a point of the curve's main subgroup, not of small order: the only
    ephemeral keys and exchanges a member accepts."""
    try:
        return len(point) == 32 and bool(crypto_core_ed25519_is_valid_point(bytes(point)))
    except (CryptoError, TypeError, ValueError):
        return False


def _challenge(public: bytes, peer: bytes, shared: bytes, a1: bytes, a2: bytes) -> bytes:
    digest = hashlib.blake2b(public + peer + shared + a1 + a2, person=b"lanon-dleq-v1").digest()
    return crypto_core_ed25519_scalar_reduce(digest)


def verify_exchange(public: bytes, peer: bytes, shared: bytes, proof: bytes) -> bool:
    """Whether `shared` is the exchange of the key whose public part is `public` with `peer`:
    z·B = A1 + c·X and z·X' = A2 + c·S for the A1, A2 the challenge c was drawn from."""
    if len(proof) != 64 or not all(usable_point(p) for p in (public, peer, shared)):
        return False
    c, z = bytes(proof[:32]), bytes(proof[32:])
    try:
        if z != crypto_core_ed25519_scalar_reduce(z + bytes(32)):
            return False  # z + L would pass too: one proof, one encoding
        a1 = crypto_core_ed25519_sub(
            crypto_scalarmult_ed25519_base_noclamp(z), crypto_scalarmult_ed25519_noclamp(c, public)
        )
        a2 = crypto_core_ed25519_sub(
            crypto_scalarmult_ed25519_noclamp(z, peer), crypto_scalarmult_ed25519_noclamp(c, shared)
        )
    except (CryptoError, RuntimeError, ValueError, TypeError):
        return False
    return hmac.compare_digest(c, _challenge(public, peer, shared, a1, a2))


@functools.lru_cache(maxsize=4096)  # the leader names every roster member's key every round
def key_id(public: bytes) -> int:
    """Short name of an ephemeral public key, as OPEN frames carry it."""
    return int.from_bytes(hashlib.blake2b(public, digest_size=4).digest(), "big")


def round_nonce(rnd: int) -> bytes:
    return rnd.to_bytes(8, "little")


_SHAPE = struct.Struct("!HH")


def shape_key(key: bytes, nslots: int, nentries: int) -> bytes:
    """The pad key of a round of this shape: a leader that gave one member another shape than
    the others (its slots shifted against theirs, where the pads would still cancel on what
    they share) gets pads that cancel nowhere, and learns nothing from where a cell lands."""
    data = _SHAPE.pack(nslots, nentries)
    return hashlib.blake2b(data, key=key, digest_size=32, person=b"lanon-pad-shape").digest()


# (None in a checkout never installed: the pads are then made here, a few calls a key)
_native, _ = compiled.load("common._native", "lanon_native_init3")


def apply_pads(vector: bytes, keys: Sequence[bytes], rnd: int, nslots: int, nentries: int) -> bytes:
    """XOR `vector` with the round-`rnd` pad of every epoch key, for a round of `nslots`
    slots and `nentries` entries (ChaCha20, nonce = round, key = shape_key). Every member
    does this every round, for each of its key-graph neighbours: in one compiled call where
    there is one."""
    if _native is not None and keys:
        joined = b"".join(keys)
        if len(joined) != len(keys) * KEY_LEN:
            raise ValueError("a pad key of the wrong length")
        out = bytearray(vector)
        lib, ffi = _native.lib, _native.ffi
        if lib.lanon_apply_pads(
            ffi.from_buffer(out), len(out), joined, len(keys), rnd, nslots, nentries
        ):
            raise RuntimeError("libsodium's functions not found for the pads")  # (init said)
        return bytes(out)
    nonce = round_nonce(rnd)
    for key in keys:
        vector = stream_xor(vector, nonce, shape_key(key, nslots, nentries))
    return vector


def pad_bit(key: bytes, rnd: int, bit: int, nslots: int, nentries: int) -> int:
    """Bit `bit` (0: the first byte's highest) of the round-`rnd` pad of epoch key `key`: what
    a member reveals of a pad in blame (one keystream bit says nothing of the key)."""
    pad = stream_xor(bytes(bit // 8 + 1), round_nonce(rnd), shape_key(key, nslots, nentries))
    return bit_of(pad, bit)


def bit_of(data: bytes, bit: int) -> int:
    """Bit `bit` of `data`, the first byte's highest bit first."""
    return (data[bit // 8] >> (7 - bit % 8)) & 1


def mac(key: bytes, data: bytes) -> bytes:
    return hashlib.blake2b(data, key=key, digest_size=16).digest()


class MacTable:
    """The MACs of one body under every member's key, in index order (OPEN and OUTPUT_HEAD).
    Each key is set up once: copying a keyed BLAKE2b state costs less than keying it again, and
    the leader makes two tables a round."""

    def __init__(self, keys: list[bytes]) -> None:
        self.keys = keys
        self._keyed = [hashlib.blake2b(key=k, digest_size=16) for k in keys]

    def __reduce__(self) -> tuple[type[MacTable], tuple[list[bytes]]]:
        return MacTable, (self.keys,)  # hash states do not copy: key them again (fuzz snapshots)

    def of(self, body: bytes) -> bytes:
        out = []
        for keyed in self._keyed:
            h = keyed.copy()
            h.update(body)
            out.append(h.digest())
        return b"".join(out)


def digest16(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def verify_signature(public: bytes, message: bytes, signature: bytes) -> bool:
    """A one-off Ed25519 check (files, not frames: those go through a Verifier)."""
    try:
        VerifyKey(public).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


class Verifier:
    """Ed25519 verification with the VerifyKey objects kept per public key."""

    def __init__(self) -> None:
        self._keys: dict[bytes, VerifyKey] = {}

    def verify(self, public: bytes, message: bytes, signature: bytes) -> bool:
        key = self._keys.get(public)
        if key is None:
            key = self._keys[public] = VerifyKey(public)
        try:
            key.verify(message, signature)
        except (BadSignatureError, ValueError):
            return False
        return True


def verify_once(public: bytes, message: bytes, signature: bytes) -> bool:
    """Ed25519 verification with a key seen once (nothing kept: a key per message, such as a
    rating's, must not fill a cache)."""
    try:
        VerifyKey(public).verify(message, signature)
    except (BadSignatureError, ValueError):
        return False
    return True


# --- key files ------------------------------------------------------------------------------


def encode_key(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def decode_public_key(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_LEN:
        raise ConfigError(f"{where}: {text!r} is not a public key (base64 of 32 bytes)")
    return raw


def write_private_key(path: Path, key: HostKey, comment: str) -> None:
    """Create `path` readable by its owner only; never overwrite an existing key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"# lanon private key: {comment}\n{encode_key(key.seed)}\n")


def write_public_key(path: Path, key: HostKey, comment: str) -> None:
    path.write_text(f"# lanon public key: {comment}\n{encode_key(key.public)}\n")


def read_secret_lines(path: Path, what: str) -> list[str]:
    """The lines of a secret file, but comments; ConfigError if it cannot be read or if
    others may read it."""
    try:
        st = path.stat()
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path}: {what} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"expected 0600: run 'chmod 600 {path}'"
        )
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def read_private_key(path: Path) -> HostKey:
    lines = read_secret_lines(path, "private key")
    try:
        seed = base64.b64decode(lines[0], validate=True) if len(lines) == 1 else b""
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != KEY_LEN:
        raise ConfigError(f"{path}: not a lanon private key (expected one base64 line of 32 bytes)")
    return HostKey(seed)


def read_public_key(path: Path) -> bytes:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read public key: {exc.strerror}") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return decode_public_key(lines[0] if lines else "", str(path))
