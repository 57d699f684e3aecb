import random

import pytest

from lanon.common import cell, reservation, wire


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def test_cell_roundtrip_and_empty() -> None:
    c = cell.encode_cell(200, 0xABCDEF, 7, 1, 3, b"payload")
    assert len(c) == 200
    state, got = cell.decode_slot(c)
    assert state is cell.SlotState.CELL and got == cell.Cell(0xABCDEF, 7, 1, 3, b"payload")
    assert cell.decode_slot(bytes(200)) == (cell.SlotState.EMPTY, None)


def test_collision_is_detected() -> None:
    a = cell.encode_cell(200, 1, 1, 0, 1, b"from a")
    b = cell.encode_cell(200, 2, 1, 0, 1, b"from b")
    assert cell.decode_slot(xor(a, b))[0] is cell.SlotState.GARBLED


def test_reassembly() -> None:
    r = cell.Reassembler(timeout=2.0)
    data = bytes(range(256)) * 10
    chunks = wire.split_vector(data, 1000)
    cells = [cell.Cell(5, 9, i, len(chunks), c) for i, c in enumerate(chunks)]
    assert r.add_cell(cells[2], 0.0) is None
    assert r.add_cell(cells[0], 0.1) is None
    assert r.add_cell(cells[1], 0.2) == data
    assert len(r) == 0
    assert r.add_cell(cells[0], 1.0) is None
    assert r.expire(10.0) == 1


def test_reservation_tally() -> None:
    rng = random.Random(1)
    a = reservation.make_claim(rng.randbytes(16))
    b = reservation.make_claim(rng.randbytes(16))
    c = reservation.make_claim(rng.randbytes(16))
    area = bytearray(reservation.write_claims(8, {1: a, 5: c}))
    collide = reservation.write_claims(8, {5: b})
    area = bytes(x ^ y for x, y in zip(area, collide, strict=True))
    t = reservation.tally(area, 8, 16)
    assert t.granted == (1,) and t.collisions == 1 and t.deferred == ()


def test_reservation_cap_defers() -> None:
    rng = random.Random(2)
    claims = {i: reservation.make_claim(rng.randbytes(16)) for i in (0, 3, 4, 7)}
    t = reservation.tally(bytes(reservation.write_claims(8, claims)), 8, 2)
    assert t.granted == (0, 3) and t.deferred == (4, 7)


def test_a_claim_commits_to_its_secret_and_only_its_claimant_can_show_it() -> None:
    secret = bytes(range(16))
    entry = reservation.make_claim(secret)
    assert reservation.proves_claim(secret, entry)
    assert not reservation.proves_claim(bytes(16), entry)
    assert not reservation.proves_claim(secret[:15], entry)
    assert entry != bytes(reservation.ENTRY_LEN)
    with pytest.raises(ValueError):
        reservation.make_claim(b"four")


def test_the_reservation_area_follows_the_last_rounds_claims() -> None:
    assert reservation.entries_for(0, 64) == reservation.MIN_ENTRIES == 4  # a quiet round
    assert reservation.entries_for(1, 64) == 16
    assert reservation.entries_for(2, 64) == 32
    assert reservation.entries_for(3, 64) == 64 == reservation.entries_for(40, 64)
    assert reservation.entries_for(1, 8) == 8 and reservation.entries_for(0, 4) == 4
    t = reservation.Tally(granted=(0, 3), collisions=1, deferred=(5,))
    assert reservation.claims_in(t) == 5  # a collision holds two claims at least
