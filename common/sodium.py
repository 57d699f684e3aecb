"""libsodium's ChaCha20-Poly1305 and AES-256-GCM called directly, for the per-packet and
per-round paths.

PyNaCl's bindings check each argument's type and allocate a fresh output buffer on every call:
for a 1,300-byte packet that is half the cost of a seal or an open here (4 µs against 2), and
every member opens every inbound frame. These functions call the same libsodium functions
through PyNaCl's own cffi module, write into one preallocated buffer per thread and copy out the
result. Lengths are checked here, because libsodium trusts them.

Where only ChaCha20's keystream is wanted (the round pads, the whitening of cells, the even work
of `flowkey.InboundOpener`), libsodium's raw stream functions are called, which PyNaCl does not
bind: its module carries libsodium whole and exports them, so cffi finds them there (ABI mode).
The AEAD functions compute the same keystream from block 1 and a Poly1305 tag on top, a second
pass over the bytes that is thrown away; where the raw functions cannot be found (`RAW_STREAM`
false), that is what is done.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from nacl._sodium import ffi, lib  # type: ignore[import-not-found]

# libsodium picks its fastest ChaCha20 and Poly1305 for this processor in `sodium_init`, which
# PyNaCl calls only when `nacl.bindings` is imported: before it, ChaCha20 runs its plain C
# version, twice as slow here. Called again, it does nothing.
if lib.sodium_init() < 0:
    raise ImportError("libsodium could not be initialised")

KEY_LEN = 32
IETF_NONCE_LEN = 12  # ChaCha20-Poly1305 IETF: flow keys
NONCE_LEN = 8  # ChaCha20-Poly1305 (the original construction): round pads
TAG_LEN = 16
_BUFFER = 1 << 17  # the largest round vector and packet fit; longer ones get their own


class _Scratch(threading.local):
    def __init__(self) -> None:
        self.out = ffi.new("unsigned char[]", _BUFFER)


_scratch = _Scratch()

_STREAM_CDEF = """
int crypto_stream_chacha20_xor_ic(unsigned char *c, const unsigned char *m,
    unsigned long long mlen, const unsigned char *n, uint64_t ic, const unsigned char *k);
int crypto_stream_chacha20_ietf_xor_ic(unsigned char *c, const unsigned char *m,
    unsigned long long mlen, const unsigned char *n, uint32_t ic, const unsigned char *k);
"""


def _raw_stream() -> Any:
    """libsodium's raw ChaCha20 stream functions, from PyNaCl's own module; None if absent,
    or if cffi itself cannot be used here (its package and its compiled backend of two
    versions, as where a system Python finds the system's backend first: PyNaCl's module
    works with either, cffi's `FFI` refuses to)."""
    try:
        from cffi import FFI  # type: ignore[import-untyped]

        raw = FFI()
        raw.cdef(_STREAM_CDEF)
        found = raw.dlopen(sys.modules["nacl._sodium"].__file__)
        found.crypto_stream_chacha20_xor_ic  # noqa: B018 (looked up now, not at first use)
        found.crypto_stream_chacha20_ietf_xor_ic  # noqa: B018
    except Exception:  # (cffi's version check raises a bare Exception)
        return None
    return found


_stream = _raw_stream()
RAW_STREAM = _stream is not None


def _out(size: int) -> Any:
    return _scratch.out if size <= _BUFFER else ffi.new("unsigned char[]", size)


def _check(key: bytes, nonce: bytes, nonce_len: int) -> None:
    if len(key) != KEY_LEN or len(nonce) != nonce_len:
        raise ValueError("wrong key or nonce length")


def seal(message: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes:
    """ChaCha20-Poly1305 (IETF): the ciphertext of `message` and its 16-byte tag."""
    _check(key, nonce, IETF_NONCE_LEN)
    size = len(message) + TAG_LEN
    out = _out(size)
    lib.crypto_aead_chacha20poly1305_ietf_encrypt(
        out, ffi.NULL, message, len(message), aad, len(aad), ffi.NULL, nonce, key
    )
    return bytes(ffi.buffer(out, size))


def open_sealed(sealed: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes | None:
    """The message `seal` made into `sealed`, or None if it does not authenticate. (Its checks
    written out: every member opens every inbound frame.)"""
    if len(key) != KEY_LEN or len(nonce) != IETF_NONCE_LEN:
        raise ValueError("wrong key or nonce length")
    size = len(sealed) - TAG_LEN
    if size < 0:
        return None
    out = _scratch.out if size <= _BUFFER else ffi.new("unsigned char[]", size)
    if lib.crypto_aead_chacha20poly1305_ietf_decrypt(
        out, ffi.NULL, ffi.NULL, sealed, size + TAG_LEN, aad, len(aad), nonce, key
    ):
        return None
    return bytes(ffi.buffer(out, size))


def _aes_gcm_missing() -> str | None:
    """None if AES-256-GCM can seal INBOUND frames here, else why not. libsodium has it only
    on processors with AES instructions (x86: AES-NI, PCLMUL and AVX; ARM: its crypto
    extensions); and only from 1.0.19 (PyNaCl 1.6) does a failed opening decrypt as a
    successful one does (before, it stopped at the tag): without that, opening another's frame
    would cost less than opening one's own. That is asked of libsodium itself: a frame whose
    tag fails must come back overwritten, its decryption done."""
    available = getattr(lib, "crypto_aead_aes256gcm_is_available", None)
    if available is None:
        return "PyNaCl is older than 1.6, which binds AES-256-GCM: pip install -U pynacl"
    if not available():
        return (
            "this processor lacks the AES instructions libsodium's AES-256-GCM needs (x86: "
            "AES-NI, PCLMUL and AVX)"
        )
    key, nonce = bytes(32), bytes(IETF_NONCE_LEN)
    sealed = ffi.new("unsigned char[]", 16 + TAG_LEN)
    lib.crypto_aead_aes256gcm_encrypt(sealed, ffi.NULL, bytes(16), 16, b"", 0, ffi.NULL, nonce, key)
    sealed[16 + TAG_LEN - 1] ^= 1  # (a broken tag)
    out = ffi.new("unsigned char[]", 16)
    lib.crypto_aead_aes256gcm_decrypt(
        out, ffi.NULL, ffi.NULL, sealed, 16 + TAG_LEN, b"", 0, nonce, key
    )
    if bytes(ffi.buffer(out, 16)) == bytes(16):  # (1.0.19 on: decrypted, then overwritten)
        return (
            "PyNaCl's libsodium is older than 1.0.19, whose AES-256-GCM skips the decryption of "
            "a frame that does not open, so that a member's own frames would cost it more than "
            "others': pip install -U pynacl"
        )
    return None


AES_GCM_MISSING = _aes_gcm_missing()


def aes_seal(message: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes:
    """AES-256-GCM: the ciphertext of `message` and its 16-byte tag (`AES_GCM_MISSING` must
    be None: libsodium cannot run it where the processor lacks it)."""
    _check(key, nonce, IETF_NONCE_LEN)
    if AES_GCM_MISSING is not None:
        raise RuntimeError(AES_GCM_MISSING)
    size = len(message) + TAG_LEN
    out = _out(size)
    if lib.crypto_aead_aes256gcm_encrypt(
        out, ffi.NULL, message, len(message), aad, len(aad), ffi.NULL, nonce, key
    ):  # (never: but the scratch may hold another frame's plaintext)
        raise RuntimeError("libsodium's AES-256-GCM refused to seal")
    return bytes(ffi.buffer(out, size))


def aes_open(sealed: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes | None:
    """The message `aes_seal` made into `sealed`, or None if it does not authenticate. Opened
    or not, libsodium runs one pass of AES-CTR and GHASH over it (`AES_GCM_MISSING`)."""
    _check(key, nonce, IETF_NONCE_LEN)
    if AES_GCM_MISSING is not None:
        raise RuntimeError(AES_GCM_MISSING)
    size = len(sealed) - TAG_LEN
    if size < 0:
        return None
    out = _out(size)
    if lib.crypto_aead_aes256gcm_decrypt(
        out, ffi.NULL, ffi.NULL, sealed, size + TAG_LEN, aad, len(aad), nonce, key
    ):
        return None
    return bytes(ffi.buffer(out, size))


def stream_xor(data: bytes, nonce: bytes, key: bytes) -> bytes:
    """`data` XOR the ChaCha20 keystream (original construction, from block 1): the ciphertext
    part of ChaCha20-Poly1305 encryption, as the round pads have always been computed."""
    _check(key, nonce, NONCE_LEN)
    size = len(data) + TAG_LEN
    out = _out(size)
    if _stream is not None:
        _stream.crypto_stream_chacha20_xor_ic(out, data, len(data), nonce, 1, key)
    else:
        lib.crypto_aead_chacha20poly1305_encrypt(
            out, ffi.NULL, data, len(data), ffi.NULL, 0, ffi.NULL, nonce, key
        )
    return bytes(ffi.buffer(out, len(data)))


def spend_stream(data: bytes, length: int, nonce: bytes, key: bytes) -> None:
    """ChaCha20 (IETF, from block 1) over the first `length` bytes of `data`, the result
    thrown away: the keystream work of decrypting them, done where no decryption was
    (`flowkey.InboundOpener`). Needs the raw stream functions (`RAW_STREAM`)."""
    if len(key) != KEY_LEN or len(nonce) != IETF_NONCE_LEN:
        raise ValueError("wrong key or nonce length")
    if _stream is None:
        raise RuntimeError("libsodium's raw stream functions were not found")
    if length > len(data):  # never past the data
        length = len(data)
    elif length < 0:  # (a frame too short for a tag: nothing)
        length = 0
    _stream.crypto_stream_chacha20_ietf_xor_ic(_out(length), data, length, nonce, 1, key)
