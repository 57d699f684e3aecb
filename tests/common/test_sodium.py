"""The direct libsodium calls give exactly what PyNaCl's bindings give, and refuse what
libsodium would read out of bounds."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from nacl.bindings import (
    crypto_aead_chacha20poly1305_encrypt,
    crypto_aead_chacha20poly1305_ietf_encrypt,
)

from lanon.common import sodium


@pytest.mark.parametrize("size", [0, 1, 1300, 70_000, 200_000])
def test_seal_and_open_match_pynacl(size: int) -> None:
    key, nonce, aad, message = os.urandom(32), os.urandom(12), os.urandom(24), os.urandom(size)
    sealed = sodium.seal(message, aad, nonce, key)
    assert sealed == crypto_aead_chacha20poly1305_ietf_encrypt(message, aad, nonce, key)
    assert sodium.open_sealed(sealed, aad, nonce, key) == message


def test_a_bad_seal_opens_to_none() -> None:
    key, nonce = os.urandom(32), os.urandom(12)
    sealed = bytearray(sodium.seal(b"packet", b"head", nonce, key))
    assert sodium.open_sealed(bytes(sealed), b"other head", nonce, key) is None
    sealed[0] ^= 1
    assert sodium.open_sealed(bytes(sealed), b"head", nonce, key) is None
    assert sodium.open_sealed(b"short", b"head", nonce, key) is None


@pytest.mark.parametrize("raw", [True, False], ids=["raw stream", "AEAD only"])
@pytest.mark.parametrize("size", [0, 512, 22_912, 150_000])
def test_the_pad_stream_is_the_original_constructions_ciphertext(
    size: int, raw: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever libsodium function computes it: the pads of every member must agree."""
    if not raw:
        monkeypatch.setattr(sodium, "_stream", None)
    key, nonce, data = os.urandom(32), os.urandom(8), os.urandom(size)
    expected = crypto_aead_chacha20poly1305_encrypt(data, None, nonce, key)[:-16]
    assert sodium.stream_xor(data, nonce, key) == expected


def test_the_raw_stream_functions_are_found_in_pynacls_module() -> None:
    """Where this fails, the pads and the inbound evening out fall back to the AEAD calls
    (correct, a Poly1305 pass dearer): PyNaCl no longer exports libsodium's symbols."""
    assert sodium.RAW_STREAM


def test_spent_stream_is_a_decryptions_keystream_work_over_the_length_asked() -> None:
    key, nonce, message = os.urandom(32), os.urandom(12), os.urandom(1300)
    sealed = sodium.seal(message, b"", nonce, key)
    sodium.spend_stream(sealed, len(sealed) - 16, nonce, key)
    assert bytes(sodium.ffi.buffer(sodium._scratch.out, 1300)) == message  # (its scratch)
    sodium.spend_stream(sealed, 10**6, nonce, key)  # never past the data
    with pytest.raises(ValueError):
        sodium.spend_stream(sealed, 16, os.urandom(8), key)


def test_wrong_lengths_are_refused_before_libsodium_reads_them() -> None:
    with pytest.raises(ValueError):
        sodium.seal(b"x", b"", os.urandom(12), os.urandom(31))
    with pytest.raises(ValueError):
        sodium.open_sealed(b"x" * 20, b"", os.urandom(8), os.urandom(32))
    with pytest.raises(ValueError):
        sodium.stream_xor(b"x", os.urandom(12), os.urandom(32))


def test_libsodium_is_initialised_whoever_imports_this_module_first() -> None:
    """Without `sodium_init` its ChaCha20 is the plain C version (twice as slow here): a
    process that imports this module before any of PyNaCl's bindings still gets the fast one."""
    code = (
        "import lanon.common.sodium, sys\n"
        "from nacl._sodium import lib\n"
        "assert 'nacl.bindings' not in sys.modules\n"
        "print(lib.sodium_init())"  # 1: initialised already
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "1", r.stdout + r.stderr


def test_a_failed_aes_gcm_opening_decrypts_all_the_same() -> None:
    """What the even work of `InboundOpener` and the compiled reader rests on with AES-256-GCM
    (libsodium 1.0.19 on): a frame whose tag fails is decrypted as one that opens, then the
    output overwritten; an older libsodium stopped at the tag and left it alone."""
    assert sodium.AES_GCM_MISSING is None, sodium.AES_GCM_MISSING
    key, nonce = os.urandom(32), os.urandom(12)
    sealed = bytearray(sodium.aes_seal(bytes(1300), b"head", nonce, key))
    assert sodium.aes_open(bytes(sealed), b"head", nonce, key) == bytes(1300)
    sealed[-1] ^= 1
    assert sodium.aes_open(bytes(sealed), b"head", nonce, key) is None
    assert bytes(sodium.ffi.buffer(sodium._scratch.out, 1300)) == b"\xd0" * 1300


REAL = sodium.lib


class _OldLib:
    """PyNaCl's module as an older release or another processor has it."""

    def __init__(self, available: int = 1, overwrites: bool = True) -> None:
        self._available, self._overwrites = available, overwrites

    def __getattr__(self, name: str) -> object:
        return getattr(REAL, name)

    def crypto_aead_aes256gcm_is_available(self) -> int:
        return self._available

    def crypto_aead_aes256gcm_decrypt(self, out: object, *args: object) -> int:
        if self._overwrites:
            return int(REAL.crypto_aead_aes256gcm_decrypt(out, *args))
        return -1  # (1.0.18: the tag checked first, the output left as it was)


@pytest.mark.parametrize(
    "lib,why",
    [
        (object(), "PyNaCl is older than 1.6"),
        (_OldLib(available=0), "this processor lacks the AES instructions"),
        (_OldLib(overwrites=False), "older than 1.0.19"),
        (_OldLib(), None),
    ],
    ids=["PyNaCl 1.5", "no AES-NI", "libsodium 1.0.18", "as here"],
)
def test_why_aes_gcm_cannot_run_is_said(
    lib: object, why: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sodium, "lib", lib)
    found = sodium._aes_gcm_missing()
    assert found is None if why is None else (found is not None and why in found)
