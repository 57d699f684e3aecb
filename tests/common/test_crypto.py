import os
import random
from pathlib import Path

import pytest

from lanon.common import crypto
from lanon.common.errors import ConfigError


def test_ephemeral_exchanges_agree_and_pads_cancel() -> None:
    ea, eb, ec = crypto.Ephemeral(), crypto.Ephemeral(), crypto.Ephemeral()
    shared = ea.exchange(eb.public)
    assert shared is not None and shared == eb.exchange(ea.public)
    assert shared != ea.exchange(ec.public)
    k = crypto.epoch_key(5, shared)
    message = os.urandom(3000)
    once = crypto.apply_pads(message, [k], 77, 1, 4)
    assert once != message
    assert crypto.apply_pads(once, [k], 77, 1, 4) == message  # the same pad twice cancels
    assert crypto.apply_pads(once, [k], 78, 1, 4) != message  # another round: another pad
    # another shape of the same round (a leader that gave one member other slots or
    # another area than the others): another pad, which cancels nowhere
    assert crypto.apply_pads(once, [k], 77, 2, 4)[:100] != message[:100]
    assert crypto.apply_pads(once, [k], 77, 1, 8)[:100] != message[:100]
    assert crypto.epoch_key(6, shared) != k


def test_a_pad_bit_is_the_bit_of_the_pad_at_that_position() -> None:
    k = crypto.epoch_key(1, os.urandom(32))
    pad = crypto.apply_pads(bytes(64), [k], 9, 3, 16)
    bits = [(pad[i // 8] >> (7 - i % 8)) & 1 for i in range(512)]
    assert [crypto.pad_bit(k, 9, i, 3, 16) for i in range(512)] == bits


def test_the_compiled_pads_are_the_python_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every member makes its pads in one compiled call (common/native.c) where it was built;
    a checkout never installed makes them in Python. Both must give the same bytes, or the
    pads of two members would not cancel."""
    assert crypto._native is not None  # built by `pip install`
    rng = random.Random(11)
    cases = [(b"", [], 1, 1, 4), (bytes(100), [rng.randbytes(32)], 2**64 - 1, 65535, 65535)]
    for _ in range(200):
        keys = [rng.randbytes(32) for _ in range(rng.randrange(9))]
        shape = rng.randrange(65536), rng.randrange(65536)
        cases.append((rng.randbytes(rng.randrange(3000)), keys, rng.randrange(2**64), *shape))
    compiled = [crypto.apply_pads(*case) for case in cases]
    monkeypatch.setattr(crypto, "_native", None)
    assert [crypto.apply_pads(*case) for case in cases] == compiled
    monkeypatch.undo()
    with pytest.raises(ValueError):  # (the compiled call trusts the keys' length)
        crypto.apply_pads(bytes(10), [bytes(31)], 1, 1, 4)


def test_an_exchange_is_proven_without_the_private_key() -> None:
    ea, eb = crypto.Ephemeral(), crypto.Ephemeral()
    proven = ea.prove(eb.public)
    assert proven is not None
    shared, proof = proven
    assert shared == eb.exchange(ea.public)
    assert crypto.verify_exchange(ea.public, eb.public, shared, proof)
    other = crypto.Ephemeral()
    wrong = other.exchange(eb.public)
    assert wrong is not None
    # a wrong exchange, a proof for someone else's key, or a bent proof: all refused
    assert not crypto.verify_exchange(ea.public, eb.public, wrong, proof)
    assert not crypto.verify_exchange(other.public, eb.public, shared, proof)
    assert not crypto.verify_exchange(ea.public, other.public, shared, proof)
    bent = bytes([proof[0] ^ 1]) + proof[1:]
    assert not crypto.verify_exchange(ea.public, eb.public, shared, bent)
    liar = other.prove(eb.public)  # a valid proof, of another key's exchange
    assert liar is not None and not crypto.verify_exchange(ea.public, eb.public, *liar)
    assert not crypto.verify_exchange(ea.public, eb.public, bytes(32), proof)  # not a point
    assert not crypto.verify_exchange(ea.public, eb.public, shared, proof[:63])
    z = int.from_bytes(proof[32:], "little") + 2**252 + 27742317777372353535851937790883648493
    unreduced = proof[:32] + z.to_bytes(32, "little")  # z + L: the same proof, encoded again
    assert not crypto.verify_exchange(ea.public, eb.public, shared, unreduced)


def test_a_low_order_ephemeral_key_is_unusable() -> None:
    assert crypto.Ephemeral().exchange(bytes(32)) is None
    assert crypto.key_id(b"x" * 32) != crypto.key_id(b"y" * 32)


def test_mac_keys_agree() -> None:
    m, g = crypto.HostKey.generate(), crypto.HostKey.generate()
    assert crypto.mac_key(m, g.public) == crypto.mac_key(g, m.public)


def test_signatures() -> None:
    k = crypto.HostKey.generate()
    sig = k.sign(b"data")
    v = crypto.Verifier()
    assert v.verify(k.public, b"data", sig)
    assert not v.verify(k.public, b"datb", sig)
    assert not v.verify(crypto.HostKey.generate().public, b"data", sig)


def test_key_files(tmp_path: Path) -> None:
    k = crypto.HostKey.generate()
    crypto.write_private_key(tmp_path / "a.key", k, "a")
    crypto.write_public_key(tmp_path / "a.pub", k, "a")
    assert (tmp_path / "a.key").stat().st_mode & 0o777 == 0o600
    assert crypto.read_private_key(tmp_path / "a.key").public == k.public
    assert crypto.read_public_key(tmp_path / "a.pub") == k.public
    with pytest.raises(FileExistsError):
        crypto.write_private_key(tmp_path / "a.key", k, "a")


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604, 0o660])
def test_private_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.key"
    crypto.write_private_key(path, crypto.HostKey.generate(), "k")
    path.chmod(mode)
    with pytest.raises(ConfigError, match=r"readable by others .*expected 0600"):
        crypto.read_private_key(path)


@pytest.mark.parametrize("text", ["", "not base64!\n", "QUJD\n", "QUJD\nQUJD\n"])
def test_bad_private_key_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "k.key"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="not a lanon private key"):
        crypto.read_private_key(path)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        crypto.read_private_key(tmp_path / "nope.key")
