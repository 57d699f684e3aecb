"""RSA blind signatures, exactly as RFC 9474 ("RSA Blind Signatures") specifies them.

A client has a message signed without the signer seeing it; the signature it ends up with is an
ordinary RSASSA-PSS signature (SHA-384, MGF1-SHA-384) that anyone verifies with the public key,
and that the signer cannot link to the signing request it answered. lanon uses it for anonymous
payment tokens and anonymous one-per-period rating credentials.

Token API (what lanon uses; the suite is RSABSSA-SHA384-PSS-Randomized):

    client                                  server (signer)             anyone (verifier)
    prepared = prepare(msg)
    blinded, state = blind(pk, prepared)  ->
                                            blind_sig = blind_sign(sk, blinded)
    sig = finalize(pk, prepared, blind_sig, state)  <-
    keeps (prepared, sig), presents both  ------------------------->  verify(pk, prepared, sig)

`prepare` prepends 32 random bytes (the RFC's message randomizer) to the message; the verifier
needs that prepared message, not the bare one, so the client keeps it and presents it with the
signature. `verify` returns False for anything that is not a valid signature (bad signature,
wrong length, wrong key); it never raises on untrusted bytes. `finalize` and `blind_sign` raise
`BlindRSAError` (a ValueError) with the RFC's error names.

RFC layer: the four variants of RFC 9474 Section 5 are `Suite` constants
(`RSABSSA_SHA384_PSS_RANDOMIZED`, `RSABSSA_SHA384_PSSZERO_RANDOMIZED`,
`RSABSSA_SHA384_PSS_DETERMINISTIC`, `RSABSSA_SHA384_PSSZERO_DETERMINISTIC`), each with the RFC's
Prepare, Blind (which returns the blinded message and the inverse), BlindSign, Finalize and
Verify as methods, written out step by step over the RFC 8017 primitives below (I2OSP, OS2IP,
RSASP1, RSAVP1, MGF1, EMSA-PSS-ENCODE / -VERIFY, RSASSA-PSS-VERIFY). Every random draw goes
through an `rng(n) -> n bytes` argument (default `secrets.token_bytes`), so the RFC's test
vectors can be replayed byte for byte.

Keys: `generate(bits=2048)` makes a `PrivateKey` (e = 65537, CRT parameters kept); the private
operation uses the CRT and base blinding. Serialized forms, all integers unsigned big-endian in
their shortest form (no leading zero byte), each preceded by its length as a 4-byte big-endian
integer:

    public key   len(n) || n || len(e) || e
    private key  len(n) || n || len(e) || e || len(d) || d || len(p) || p || len(q) || q

`key_id(pk)` is the first 8 bytes of SHA-256 over the public key's serialized form.

Pure Python big integers: CPython's `pow` does not run in constant time. The signer blinds the
base of every private operation (a fresh random r per call), which defeats timing attacks that
choose the input; it does not hide the key from a process that can watch this one's caches.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_SUITE",
    "KEY_ID_LEN",
    "RSABSSA_SHA384_PSSZERO_DETERMINISTIC",
    "RSABSSA_SHA384_PSSZERO_RANDOMIZED",
    "RSABSSA_SHA384_PSS_DETERMINISTIC",
    "RSABSSA_SHA384_PSS_RANDOMIZED",
    "SUITES",
    "BlindRSAError",
    "BlindState",
    "PrivateKey",
    "PublicKey",
    "Rng",
    "Suite",
    "blind",
    "blind_sign",
    "finalize",
    "generate",
    "key_id",
    "prepare",
    "verify",
]

Rng = Callable[[int], bytes]
"""A source of random bytes: called with n, returns exactly n bytes."""

HASH_LEN = 48  # SHA-384
PREFIX_LEN = 32  # the message randomizer of the Randomized variants (RFC 9474 Section 4.1)
DEFAULT_E = 65537
MIN_MODULUS_BITS = 1024  # lanon's keys are 2048 bits (generate's default); 1024 is for tests
MAX_MODULUS_BITS = 16384
KEY_ID_LEN = 8
_MAX_FIELD_LEN = MAX_MODULUS_BITS // 8


class BlindRSAError(ValueError):
    """Any error RFC 9474 or RFC 8017 raises, named as they name it ("invalid signature", ...)."""


# ---------------------------------------------------------------------------------------------
# Keys


@dataclass(frozen=True)
class PublicKey:
    """An RSA public key (n, e): n odd, of MIN_MODULUS_BITS to MAX_MODULUS_BITS bits; e odd,
    3 <= e < min(n, 2^32) (a larger e would only make verifying slow)."""

    n: int
    e: int = DEFAULT_E

    def __post_init__(self) -> None:
        bits = self.n.bit_length()
        if not MIN_MODULUS_BITS <= bits <= MAX_MODULUS_BITS or self.n % 2 == 0:
            raise BlindRSAError("invalid public key: bad modulus")
        if not 3 <= self.e < min(self.n, 1 << 32) or self.e % 2 == 0:
            raise BlindRSAError("invalid public key: bad exponent")

    @property
    def bits(self) -> int:
        """bit_len(n), the RFC 8017 modBits."""
        return self.n.bit_length()

    @property
    def modulus_len(self) -> int:
        """The RFC's modulus_len (RFC 8017's k): the byte length of n, of blinded messages and
        of signatures."""
        return (self.n.bit_length() + 7) // 8

    def to_bytes(self) -> bytes:
        return _encode_fields(self.n, self.e)

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKey:
        n, e = _decode_fields(data, 2)
        return cls(n, e)


@dataclass(frozen=True)
class PrivateKey:
    """An RSA private key with its CRT parameters; build it with `generate`, `from_primes` or
    `from_bytes`. The secret fields stay out of repr."""

    n: int
    e: int
    d: int = field(repr=False)
    p: int = field(repr=False)
    q: int = field(repr=False)
    dp: int = field(repr=False)  # d mod (p - 1)
    dq: int = field(repr=False)  # d mod (q - 1)
    qinv: int = field(repr=False)  # q^-1 mod p

    def __post_init__(self) -> None:
        PublicKey(self.n, self.e)  # validates n and e
        p, q = self.p, self.q
        if (
            p < 3
            or q < 3
            or p == q
            or p * q != self.n
            or self.dp != self.d % (p - 1)
            or self.dq != self.d % (q - 1)
            or self.e * self.dp % (p - 1) != 1
            or self.e * self.dq % (q - 1) != 1
            or self.qinv * q % p != 1
        ):
            raise BlindRSAError("invalid private key")

    @classmethod
    def from_primes(cls, p: int, q: int, e: int = DEFAULT_E, d: int | None = None) -> PrivateKey:
        """The key of primes p and q; d defaults to e^-1 mod lcm(p - 1, q - 1). A given d (such
        as one computed mod (p - 1)(q - 1)) is kept if it is consistent."""
        if p < 3 or q < 3 or p == q:
            raise BlindRSAError("invalid private key")
        if d is None:
            try:
                d = pow(e, -1, math.lcm(p - 1, q - 1))
            except ValueError:
                raise BlindRSAError("invalid private key: e not invertible") from None
        try:
            qinv = pow(q, -1, p)
        except ValueError:
            raise BlindRSAError("invalid private key") from None
        return cls(p * q, e, d, p, q, d % (p - 1), d % (q - 1), qinv)

    @property
    def public_key(self) -> PublicKey:
        return PublicKey(self.n, self.e)

    def to_bytes(self) -> bytes:
        return _encode_fields(self.n, self.e, self.d, self.p, self.q)

    @classmethod
    def from_bytes(cls, data: bytes) -> PrivateKey:
        n, e, d, p, q = _decode_fields(data, 5)
        key = cls.from_primes(p, q, e, d)
        if key.n != n:
            raise BlindRSAError("invalid private key")
        return key


def key_id(pk: PublicKey) -> bytes:
    """A short name for a public key: the first 8 bytes of SHA-256(pk.to_bytes())."""
    return hashlib.sha256(pk.to_bytes()).digest()[:KEY_ID_LEN]


def _encode_fields(*values: int) -> bytes:
    out = bytearray()
    for value in values:
        raw = i2osp(value, (value.bit_length() + 7) // 8)
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


def _decode_fields(data: bytes, count: int) -> list[int]:
    values: list[int] = []
    pos = 0
    for _ in range(count):
        if len(data) - pos < 4:
            raise BlindRSAError("invalid key encoding: truncated")
        length = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4
        if not 1 <= length <= _MAX_FIELD_LEN or len(data) - pos < length:
            raise BlindRSAError("invalid key encoding: bad field length")
        raw = data[pos : pos + length]
        pos += length
        if raw[0] == 0:
            raise BlindRSAError("invalid key encoding: not minimal")
        values.append(os2ip(raw))
    if pos != len(data):
        raise BlindRSAError("invalid key encoding: trailing bytes")
    return values


# ---------------------------------------------------------------------------------------------
# Key generation


def _small_primes(limit: int) -> list[int]:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for i in range(2, math.isqrt(limit - 1) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, limit, i)))
    return [i for i in range(limit) if sieve[i]]


_SMALL_PRIMES = _small_primes(1 << 14)
_SMALL_PRIMES_SET = frozenset(_SMALL_PRIMES)
_SMALL_PRIMES_PRODUCT = math.prod(_SMALL_PRIMES)  # trial division by all of them in one gcd

# Miller-Rabin rounds with random bases. 40 rounds bound the error by 4^-40 for any odd
# composite; for the random candidates generated here the actual error is far smaller (FIPS 186
# asks for only a handful of rounds at this size). The rounds only cost time on the final
# prime: composites almost always fail the first round.
_MR_ROUNDS = 40


def _is_probable_prime(c: int, rounds: int = _MR_ROUNDS) -> bool:
    if c <= _SMALL_PRIMES[-1]:
        return c in _SMALL_PRIMES_SET
    if math.gcd(c, _SMALL_PRIMES_PRODUCT) != 1:
        return False
    d = c - 1
    s = (d & -d).bit_length() - 1
    d >>= s
    for _ in range(rounds):
        a = 2 + secrets.randbelow(c - 3)
        x = pow(a, d, c)
        if x in (1, c - 1):
            continue
        for _ in range(s - 1):
            x = x * x % c
            if x == c - 1:
                break
        else:
            return False
    return True


def _random_prime(bits: int, e: int) -> int:
    """A random prime of exactly `bits` bits, its two top bits set (so a product of two of
    them has exactly 2 * bits bits), with gcd(e, p - 1) = 1."""
    top = 0b11 << (bits - 2)
    while True:
        c = secrets.randbits(bits) | top | 1
        if math.gcd(c, _SMALL_PRIMES_PRODUCT) != 1:  # sieve by the small primes first
            continue
        if math.gcd(e, c - 1) == 1 and _is_probable_prime(c):
            return c


def generate(bits: int = 2048) -> PrivateKey:
    """A fresh RSA key of exactly `bits` bits (even, at least 1024; lanon uses 2048) and
    e = 65537.

    p and q are plain random primes, not safe primes. Safe primes matter to RSA blind
    signatures only where clients must be convinced that a possibly malicious signer's key is
    well formed (RFC 9474 mentions them, with proofs of well-formedness, for that case); an
    ordinary RSA-PSS key made of random primes is what the RFC otherwise asks for (its "Signing
    Key Generation and Usage": generated as for FIPS 186, used for RSABSSA alone, one key per
    variant). lanon: one key per purpose (payments, ratings) and per period."""
    if bits % 2 or not MIN_MODULUS_BITS <= bits <= MAX_MODULUS_BITS:
        raise BlindRSAError(f"unsupported key size {bits}")
    half = bits // 2
    while True:
        p = _random_prime(half, DEFAULT_E)
        q = _random_prime(half, DEFAULT_E)
        # FIPS 186's conditions |p - q| > 2^(nlen/2 - 100) and d > 2^(nlen/2): random primes
        # satisfy both but for a negligible chance, checked anyway.
        if abs(p - q) <= 1 << (half - 100):
            continue
        key = PrivateKey.from_primes(p, q, DEFAULT_E)
        if key.d.bit_length() <= half or key.n.bit_length() != bits:
            continue
        return key


# ---------------------------------------------------------------------------------------------
# RFC 8017 primitives


def i2osp(x: int, x_len: int) -> bytes:
    """I2OSP (RFC 8017 Section 4.1): x as x_len big-endian bytes."""
    if x < 0 or x.bit_length() > 8 * x_len:
        raise BlindRSAError("integer too large")
    return x.to_bytes(x_len, "big")


def os2ip(x: bytes) -> int:
    """OS2IP (RFC 8017 Section 4.2)."""
    return int.from_bytes(x, "big")


def rsasp1(sk: PrivateKey, m: int) -> int:
    """RSASP1 (RFC 8017 Section 5.2.1) with the CRT (its second form of K), the base blinded
    by a fresh random r: s = (m * r^e)^d * r^-1 = m^d mod n."""
    n = sk.n
    if not 0 <= m < n:
        raise BlindRSAError("message representative out of range")
    r = 1 + secrets.randbelow(n - 1)
    while math.gcd(r, n) != 1:  # r a multiple of p or q: negligible, but then draw again
        r = 1 + secrets.randbelow(n - 1)
    r_inv = pow(r, -1, n)
    c = m * pow(r, sk.e, n) % n
    s1 = pow(c % sk.p, sk.dp, sk.p)
    s2 = pow(c % sk.q, sk.dq, sk.q)
    h = sk.qinv * (s1 - s2) % sk.p
    return (s2 + sk.q * h) * r_inv % n


def rsavp1(pk: PublicKey, s: int) -> int:
    """RSAVP1 (RFC 8017 Section 5.2.2)."""
    if not 0 <= s < pk.n:
        raise BlindRSAError("signature representative out of range")
    return pow(s, pk.e, pk.n)


def mgf1_sha384(seed: bytes, mask_len: int) -> bytes:
    """MGF1 with SHA-384 (RFC 8017 Appendix B.2.1)."""
    if mask_len > (1 << 32) * HASH_LEN:
        raise BlindRSAError("mask too long")
    t = bytearray()
    for counter in range(-(-mask_len // HASH_LEN)):
        t += hashlib.sha384(seed + i2osp(counter, 4)).digest()
    return bytes(t[:mask_len])


def _xor(a: bytes, b: bytes) -> bytes:
    return (os2ip(a) ^ os2ip(b)).to_bytes(len(a), "big")


def _draw(rng: Rng, n: int) -> bytes:
    out = rng(n)
    if len(out) != n:
        raise BlindRSAError(f"rng returned {len(out)} bytes, not {n}")
    return out


def emsa_pss_encode(
    msg: bytes, em_bits: int, salt_len: int, rng: Rng = secrets.token_bytes
) -> bytes:
    """EMSA-PSS-ENCODE (RFC 8017 Section 9.1.1), SHA-384 and MGF1-SHA-384; the salt (salt_len
    bytes) is drawn from rng."""
    # 1. The SHA-384 input limit is 2^128 - 1 bits.
    if len(msg) >= 1 << 125:
        raise BlindRSAError("message too long")
    # 2.
    m_hash = hashlib.sha384(msg).digest()
    em_len = (em_bits + 7) // 8
    # 3.
    if em_len < HASH_LEN + salt_len + 2:
        raise BlindRSAError("encoding error")
    # 4.
    salt = _draw(rng, salt_len) if salt_len else b""
    # 5. - 6.
    h = hashlib.sha384(bytes(8) + m_hash + salt).digest()
    # 7. - 8.
    db = bytes(em_len - salt_len - HASH_LEN - 2) + b"\x01" + salt
    # 9. - 10.
    masked_db = bytearray(_xor(db, mgf1_sha384(h, em_len - HASH_LEN - 1)))
    # 11. Clear the leftmost 8 * em_len - em_bits bits.
    masked_db[0] &= 0xFF >> (8 * em_len - em_bits)
    # 12. - 13.
    return bytes(masked_db) + h + b"\xbc"


def emsa_pss_verify(msg: bytes, em: bytes, em_bits: int, salt_len: int) -> bool:
    """EMSA-PSS-VERIFY (RFC 8017 Section 9.1.2): True for "consistent"."""
    em_len = (em_bits + 7) // 8
    # 1.
    if len(msg) >= 1 << 125 or len(em) != em_len:
        return False
    # 2.
    m_hash = hashlib.sha384(msg).digest()
    # 3.
    if em_len < HASH_LEN + salt_len + 2:
        return False
    # 4.
    if em[-1] != 0xBC:
        return False
    # 5.
    masked_db = em[: em_len - HASH_LEN - 1]
    h = em[em_len - HASH_LEN - 1 : -1]
    # 6.
    top_mask = 0xFF >> (8 * em_len - em_bits)
    if masked_db[0] & ~top_mask & 0xFF:
        return False
    # 7. - 9.
    db = bytearray(_xor(masked_db, mgf1_sha384(h, em_len - HASH_LEN - 1)))
    db[0] &= top_mask
    # 10.
    ps_len = em_len - HASH_LEN - salt_len - 2
    if any(db[:ps_len]) or db[ps_len] != 0x01:
        return False
    # 11. - 14.
    salt = bytes(db[len(db) - salt_len :]) if salt_len else b""
    h2 = hashlib.sha384(bytes(8) + m_hash + salt).digest()
    return hmac.compare_digest(h, h2)


def rsassa_pss_verify(pk: PublicKey, msg: bytes, sig: bytes, salt_len: int) -> None:
    """RSASSA-PSS-VERIFY (RFC 8017 Section 8.1.2); raises "invalid signature"."""
    # 1.
    if len(sig) != pk.modulus_len:
        raise BlindRSAError("invalid signature")
    # 2.
    s = os2ip(sig)
    if s >= pk.n:
        raise BlindRSAError("invalid signature")
    m = rsavp1(pk, s)
    em_bits = pk.bits - 1
    em_len = (em_bits + 7) // 8
    if m.bit_length() > 8 * em_len:
        raise BlindRSAError("invalid signature")
    # 3. - 4.
    if not emsa_pss_verify(msg, i2osp(m, em_len), em_bits, salt_len):
        raise BlindRSAError("invalid signature")


def _random_integer_uniform(lo: int, hi: int, rng: Rng) -> int:
    """Uniform in [lo, hi), by rejection sampling over bit_len(hi)-bit integers."""
    length = (hi.bit_length() + 7) // 8
    mask = (1 << hi.bit_length()) - 1
    while True:
        x = os2ip(_draw(rng, length)) & mask
        if lo <= x < hi:
            return x


# ---------------------------------------------------------------------------------------------
# RFC 9474


@dataclass(frozen=True)
class Suite:
    """An RSABSSA variant (RFC 9474 Section 5): SHA-384, MGF1-SHA-384, salt_len, and whether
    Prepare randomizes (PrepareRandomize) or is the identity (PrepareIdentity)."""

    name: str
    salt_len: int
    randomized: bool

    def prepare(self, msg: bytes, rng: Rng = secrets.token_bytes) -> bytes:
        """Prepare (RFC 9474 Section 4.1): random(32) || msg when randomized, else msg."""
        if not self.randomized:
            return msg
        return _draw(rng, PREFIX_LEN) + msg

    def blind(self, pk: PublicKey, msg: bytes, rng: Rng = secrets.token_bytes) -> tuple[bytes, int]:
        """Blind (RFC 9474 Section 4.2) of a prepared message: (blind_msg, inv). The salt, then
        r, are drawn from rng."""
        # 1. - 2. The encoding follows RSASSA-PSS (RFC 8017 Section 8.1.1): emBits = modBits - 1,
        # so that Finalize's RSASSA-PSS-VERIFY accepts it (and the RFC's vectors agree).
        encoded_msg = emsa_pss_encode(msg, pk.bits - 1, self.salt_len, rng)
        # 3.
        m = os2ip(encoded_msg)
        # 4. - 5.
        if math.gcd(m, pk.n) != 1:
            raise BlindRSAError("invalid input")
        # 6.
        r = _random_integer_uniform(1, pk.n, rng)
        # 7. - 8.
        try:
            inv = pow(r, -1, pk.n)
        except ValueError:
            raise BlindRSAError("blinding error") from None
        # 9.
        x = rsavp1(pk, r)
        # 10.
        z = m * x % pk.n
        # 11. - 12.
        return i2osp(z, pk.modulus_len), inv

    def blind_sign(self, sk: PrivateKey, blind_msg: bytes) -> bytes:
        """BlindSign (RFC 9474 Section 4.3); the same for every variant."""
        return _blind_sign(sk, blind_msg)

    def finalize(self, pk: PublicKey, msg: bytes, blind_sig: bytes, inv: int) -> bytes:
        """Finalize (RFC 9474 Section 4.4): unblind, and raise "invalid signature" unless the
        result verifies for the prepared message msg."""
        # 1.
        if len(blind_sig) != pk.modulus_len:
            raise BlindRSAError("unexpected input size")
        # 2. - 4.
        z = os2ip(blind_sig)
        s = z * inv % pk.n
        sig = i2osp(s, pk.modulus_len)
        # 5. - 6.
        rsassa_pss_verify(pk, msg, sig, self.salt_len)
        return sig

    def verify(self, pk: PublicKey, msg: bytes, sig: bytes) -> None:
        """Verify (RFC 9474 Section 4.5): RSASSA-PSS-VERIFY of the prepared message msg; raises
        "invalid signature"."""
        rsassa_pss_verify(pk, msg, sig, self.salt_len)


def _blind_sign(sk: PrivateKey, blind_msg: bytes) -> bytes:
    k = (sk.n.bit_length() + 7) // 8
    if len(blind_msg) != k:
        raise BlindRSAError("unexpected input size")
    # 1.
    m = os2ip(blind_msg)
    # 2. (raises "message representative out of range" for m >= n)
    s = rsasp1(sk, m)
    # 3. - 4. The check that catches a faulty private operation (which would leak the key).
    if pow(s, sk.e, sk.n) != m:
        raise BlindRSAError("signing failure")
    # 5. - 6.
    return i2osp(s, k)


RSABSSA_SHA384_PSS_RANDOMIZED = Suite("RSABSSA-SHA384-PSS-Randomized", HASH_LEN, True)
RSABSSA_SHA384_PSSZERO_RANDOMIZED = Suite("RSABSSA-SHA384-PSSZERO-Randomized", 0, True)
RSABSSA_SHA384_PSS_DETERMINISTIC = Suite("RSABSSA-SHA384-PSS-Deterministic", HASH_LEN, False)
RSABSSA_SHA384_PSSZERO_DETERMINISTIC = Suite("RSABSSA-SHA384-PSSZERO-Deterministic", 0, False)
SUITES = {
    s.name: s
    for s in (
        RSABSSA_SHA384_PSS_RANDOMIZED,
        RSABSSA_SHA384_PSSZERO_RANDOMIZED,
        RSABSSA_SHA384_PSS_DETERMINISTIC,
        RSABSSA_SHA384_PSSZERO_DETERMINISTIC,
    )
}
DEFAULT_SUITE = RSABSSA_SHA384_PSS_RANDOMIZED


# ---------------------------------------------------------------------------------------------
# Token API (DEFAULT_SUITE)


@dataclass(frozen=True)
class BlindState:
    """What the client keeps between blind and finalize: the inverse of its blinding factor.
    Secret: whoever has it can link the blinded request to the final signature."""

    inv: int = field(repr=False)


def prepare(msg: bytes, rng: Rng = secrets.token_bytes) -> bytes:
    """Client: the prepared message, 32 random bytes || msg. This, not msg, is what is blinded,
    finalized and later verified: keep it and present it with the signature."""
    return DEFAULT_SUITE.prepare(msg, rng)


def blind(
    pk: PublicKey, prepared: bytes, rng: Rng = secrets.token_bytes
) -> tuple[bytes, BlindState]:
    """Client: (blinded message to send to the signer, state to keep for finalize). Raises
    BlindRSAError ("invalid input", "blinding error") only with negligible probability."""
    blinded, inv = DEFAULT_SUITE.blind(pk, prepared, rng)
    return blinded, BlindState(inv)


def blind_sign(sk: PrivateKey, blinded: bytes) -> bytes:
    """Server: the blind signature of a blinded message; BlindRSAError ("unexpected input
    size", "message representative out of range") for a malformed one."""
    return _blind_sign(sk, blinded)


def finalize(pk: PublicKey, prepared: bytes, blind_sig: bytes, state: BlindState) -> bytes:
    """Client: the signature of `prepared`; BlindRSAError if the signer's answer is not a
    valid blind signature of it."""
    return DEFAULT_SUITE.finalize(pk, prepared, blind_sig, state.inv)


def verify(pk: PublicKey, prepared: bytes, sig: bytes) -> bool:
    """Anyone: whether sig is a valid signature of the prepared message under pk. False, never
    an exception, for a bad signature or malformed input."""
    try:
        DEFAULT_SUITE.verify(pk, prepared, sig)
    except BlindRSAError:
        return False
    return True
