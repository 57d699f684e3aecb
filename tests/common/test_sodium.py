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
