"""Signed coalition versions: ordering, signatures and thresholds, forged, replayed and foreign
versions, reassembly from COALITION frames, join requests (common/versions.py, common/admin.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanon.common import admin, wire
from lanon.common.coalition import loads, split_signed
from lanon.common.crypto import HostKey, encode_key
from lanon.common.errors import ConfigError, RejectReason, RemoteProtocolError
from lanon.common.flowkey import InboundCipher
from lanon.common.templates import set_keys
from lanon.common.versions import (
    JOIN_CHECKS_PER_SECOND,
    MAX_PENDING,
    PARSES_PER_SECOND,
    Outcome,
    PendingJoins,
    VersionBook,
    changes,
    chunks,
    join_frame,
)
from lanon.lab.sim import ADMIN, make_versioned, toml_text

PATH = Path("test-coalition.toml")
NEWCOMER = HostKey(bytes([44]) * 32)


def v2_with_member4() -> str:
    c, _ = make_versioned(3)
    return admin.sign(admin.member_added(c, "member4", NEWCOMER.public), PATH, ADMIN)


def test_a_versioned_file_needs_its_administrators_signatures() -> None:
    c, _ = make_versioned(3)
    assert c.versioned and c.version == 1
    with pytest.raises(ConfigError, match="0 valid administrator signature"):
        loads(admin.unsigned(c.text), PATH)
    other = HostKey(bytes([10]) * 32)
    with pytest.raises(ConfigError, match="not one of \\[admin\\] keys"):
        admin.sign(c.text, PATH, other)


def test_an_edit_after_signing_voids_the_signature() -> None:
    c, _ = make_versioned(3)
    edited = c.text.replace("min_members", "# min_members") + "\n"
    edited = edited.replace('name = "test"', 'name = "test"\nlan_mtu = 1400')
    with pytest.raises(ConfigError, match="signature"):
        loads(edited, PATH)


def test_a_threshold_of_two_needs_two_administrators() -> None:
    second = HostKey(bytes([11]) * 32)
    c, _ = make_versioned(3)
    text = c.text.replace(
        f'keys = ["{encode_key(ADMIN.public)}"]',
        f'keys = ["{encode_key(ADMIN.public)}", "{encode_key(second.public)}"]\nthreshold = 2',
    )
    one = admin.sign(admin.unsigned(text), PATH, ADMIN)
    with pytest.raises(ConfigError, match="1 valid administrator signature"):
        loads(one, PATH)
    again = admin.sign(one, PATH, ADMIN)  # the same administrator twice counts once
    with pytest.raises(ConfigError, match="1 valid"):
        loads(again, PATH)
    assert loads(admin.sign(one, PATH, second), PATH).version == 1


def test_identity_stays_across_versions_and_headers_carry_it() -> None:
    c, _ = make_versioned(3)
    new = loads(v2_with_member4(), PATH)
    assert new.version == 2 and new.identity == c.identity and new.id == c.id
    assert new.fingerprint != c.fingerprint
    assert changes(c, new) == (("member4",), (), ())


def test_newer_applies_and_older_same_conflicting_forged_foreign_are_refused() -> None:
    c, _ = make_versioned(3)
    book = VersionBook(c)
    v2 = v2_with_member4()
    assert book.consider(c.text).outcome is Outcome.SAME
    applied = book.consider(v2)
    assert applied.outcome is Outcome.APPLIED and applied.coalition is not None
    assert book.current.version == 1  # until the engine has applied it
    book.current = applied.coalition
    assert book.consider(c.text).outcome is Outcome.OLDER  # a replay of version 1
    assert book.consider(v2).outcome is Outcome.SAME
    rival = admin.sign(
        admin.member_added(c, "member9", HostKey(bytes([45]) * 32).public), PATH, ADMIN
    )
    assert book.consider(rival).outcome is Outcome.CONFLICT  # another version 2
    forged = admin.next_version(v2, PATH)  # version 3, signed by nobody
    assert book.consider(forged).outcome is Outcome.FORGED
    stranger = HostKey(bytes([12]) * 32)
    foreign = forged.replace(encode_key(ADMIN.public), encode_key(stranger.public))
    assert book.consider(admin.sign(foreign, PATH, stranger)).outcome is Outcome.FOREIGN
    assert book.consider("not toml [").outcome is Outcome.INVALID
    assert book.current.version == 2


def test_a_version_travels_in_chunks_and_is_looked_at_once() -> None:
    c, _ = make_versioned(3)
    v2 = loads(v2_with_member4(), PATH)
    frames = chunks(v2)
    assert all(len(f) <= c.coalition.lan_mtu for f in frames)
    book = VersionBook(c)
    outcomes = [book.receive(f, 0.0) for f in reversed(frames)]
    assert all(o is None for o in outcomes[:-1])
    last = outcomes[-1]
    assert last is not None and last.outcome is Outcome.APPLIED and last.coalition is not None
    book.current = last.coalition
    assert book.receive(frames[0], 0.1) is None  # ours now: repeats cost nothing


GATEWAY_MAC, ATTACKER_MAC = b"\x02" * 6, b"\x0a" * 6


def junk(c: object, i: int) -> list[bytes]:
    """A text no administrator signed, of a new digest each time (what a flood sends)."""
    from lanon.common.coalition import Coalition

    assert isinstance(c, Coalition)
    text = admin.next_version(c.text, PATH) + f"# {i}\n"
    return chunks(loads(text, PATH, signatures=False))


def test_a_flood_of_unsigned_texts_does_not_keep_out_the_version_a_gateway_advertises() -> None:
    c, _ = make_versioned(3)
    v2 = loads(v2_with_member4(), PATH)
    book = VersionBook(c)
    seen = [book.receive(f, 0.5, ATTACKER_MAC) for i in range(20) for f in junk(c, i)]
    looked_at = [o for o in seen if o is not None and o.outcome is not Outcome.BUSY]
    assert len(looked_at) == PARSES_PER_SECOND  # the rest of the second: busy, unread
    from lanon.common.versions import text_digest

    book.advertised(2, text_digest(v2.text.encode()), GATEWAY_MAC)  # a verified heartbeat
    with pytest.raises(RemoteProtocolError):  # its digest, from another source: refused
        book.receive(chunks(v2)[0], 0.6, ATTACKER_MAC)
    got = [book.receive(f, 0.7, GATEWAY_MAC) for f in chunks(v2)][-1]
    assert got is not None and got.outcome is Outcome.APPLIED  # within the busy second


def test_a_refused_digest_is_not_advertised_again() -> None:
    c, _ = make_versioned(3)
    book = VersionBook(c)
    [forged] = junk(c, 0)
    assert book.receive(forged, 0.0, ATTACKER_MAC).outcome is Outcome.FORGED  # type: ignore[union-attr]
    chunk = wire.pull_coalition(forged)
    book.advertised(2, chunk.digest, GATEWAY_MAC)
    again = book.receive(forged, 5.0, GATEWAY_MAC)
    assert again is not None and again.detail == "refused before"


def test_a_refused_text_is_refused_again_without_a_look() -> None:
    c, _ = make_versioned(3)
    forged = loads(admin.next_version(c.text, PATH), PATH, signatures=False)
    book = VersionBook(c)
    first = [book.receive(f, 0.0) for f in chunks(forged)][-1]
    assert first is not None and first.outcome is Outcome.FORGED
    again = next(book.receive(f, 0.0) for f in chunks(forged))
    assert (
        again is not None and again.outcome is Outcome.FORGED and again.detail == "refused before"
    )


def test_chunks_that_disagree_start_their_text_over_and_a_wrong_text_is_malformed() -> None:
    c, _ = make_versioned(3)
    book = VersionBook(c)
    first = wire.CoalitionChunk(2, b"d" * 16, 0, 2, b"[coa").encode(c.id)
    assert book.receive(first, 0.0) is None
    odd = wire.CoalitionChunk(2, b"d" * 16, 1, 3, b"lition]").encode(c.id)
    assert book.receive(odd, 0.0) is None  # another count: that text starts over
    for index in (0, 2):
        last = wire.CoalitionChunk(2, b"d" * 16, index, 3, b"x").encode(c.id)
        if index == 2:
            with pytest.raises(RemoteProtocolError) as info:  # whole, but not its digest
                book.receive(last, 0.0)
            assert info.value.reason is RejectReason.MALFORMED
        else:
            assert book.receive(last, 0.0) is None


def test_an_unversioned_coalition_ignores_versions() -> None:
    from lanon.lab.sim import make_coalition

    c, _ = make_coalition(3)
    assert not c.versioned and c.identity == c.fingerprint
    make_versioned(3)
    assert VersionBook(c).receive(chunks(loads(v2_with_member4(), PATH))[0], 0.0) is None


def test_removing_members_below_min_members_is_a_valid_version_that_disbands() -> None:
    c, _ = make_versioned(3)
    text = admin.sign(admin.member_removed(c, "member2"), PATH, ADMIN)
    new = loads(text, PATH)
    assert new.version == 2 and len(new.members) == 2
    assert "min_members" in new.shortfall


def test_a_join_request_is_kept_once_verified_and_dropped_when_granted() -> None:
    c, _ = make_versioned(3)
    joins = PendingJoins()
    frame = join_frame(c, "member4", NEWCOMER, 1000, None)
    assert joins.receive(c, frame, 0.0, 1000)
    assert not joins.receive(c, join_frame(c, "member4", NEWCOMER, 2000, None), 1.0, 2000)
    [req] = joins.as_list(1.0)
    assert req["name"] == "member4" and req["public_key"] == encode_key(NEWCOMER.public)
    joins.prune(loads(v2_with_member4(), PATH), 2.0)
    assert not joins.requests


def test_forged_stale_and_foreign_join_requests_are_refused() -> None:
    c, keys = make_versioned(3)
    joins = PendingJoins()
    frame = bytearray(join_frame(c, "member4", NEWCOMER, 1000, None))
    frame[-1] ^= 1
    for bad, now_ms, reason in (
        (bytes(frame), 1000, RejectReason.BAD_AUTH),
        (join_frame(c, "member4", NEWCOMER, 1000, None), 1000 + 60_000, RejectReason.REPLAY),
        # a key rotation for member1 signed by a key member1 does not have
        (
            join_frame(c, "member1", NEWCOMER, 1000, HostKey(bytes([13]) * 32)),
            1000,
            RejectReason.BAD_AUTH,
        ),
    ):
        with pytest.raises(RemoteProtocolError) as info:
            joins.receive(c, bad, 0.0, now_ms)
        assert info.value.reason is reason
    rotation = join_frame(c, "member1", NEWCOMER, 1000, keys["member1"])
    assert joins.receive(c, rotation, 0.0, 1000)
    assert joins.as_list(0.0)[0]["replaces"] == encode_key(keys["member1"].public)
    for i in range(MAX_PENDING + 5):  # many requests: the most recently heard are kept
        key = HostKey(bytes([50 + i]) * 32)
        joins.receive(c, join_frame(c, f"h{i}", key, 1000, None), i * 0.2, 1000)
    assert len(joins.requests) == MAX_PENDING


def test_admin_edits_keep_comments_and_change_only_their_host() -> None:
    c, keys = make_versioned(4)
    text = admin.sign("# the office coalition\n" + c.text, PATH, ADMIN)  # comments are signed
    c = loads(text, PATH)
    removed = admin.member_removed(c, "member2")
    assert removed.startswith("# the office coalition") and "member2" not in removed
    assert "[[signatures]]" not in removed and "version = 2" in removed
    rekeyed = loads(
        admin.sign(admin.key_replaced(c, "member3", NEWCOMER.public), PATH, ADMIN), PATH
    )
    assert rekeyed.member("member3").public == NEWCOMER.public
    assert rekeyed.member("member1").public == keys["member1"].public
    assert toml_text({"a": {"b": 1}}) == "[a]\nb = 1\n"


def test_a_signed_body_rewrapped_by_anyone_comes_out_as_the_same_text() -> None:
    c, _ = make_versioned(3)
    body, tail = split_signed(c.text)
    variants = [
        body + "\n\n   \n" + tail,  # blank lines between
        body + tail + "\n# a comment after the signatures\n",
        body + tail + tail,  # the signature twice
        body
        + tail
        + '\n[[signatures]]\nkey = "'
        + encode_key(NEWCOMER.public)
        + '"\nsignature = "AAAA"\n',
    ]
    for variant in variants:
        assert loads(variant, PATH).text == c.text
    # what is signed cannot change: a comment, a quoting, a table header written otherwise
    for edited in (
        "# hello\n" + c.text,
        c.text.replace("[[members]]", '[["members"]]', 1),
        c.text.replace('name = "member1"', "name = 'member1'"),
    ):
        with pytest.raises(ConfigError, match="signature"):
            loads(edited, PATH)
    with pytest.raises(ConfigError, match="go last"):
        hidden = '[[ signatures ]]\nkey = "k"\nsignature = "s"\n\n[admin]'
        loads(body.replace("[admin]", hidden) + tail, PATH)


def test_texts_too_long_to_repeat_or_with_too_many_hosts_are_refused_before_any_work() -> None:
    c, _ = make_versioned(3)
    with pytest.raises(ConfigError, match="at most"):
        loads("# " + "x" * 100_000 + "\n" + c.text, PATH)


def test_an_edit_that_would_change_more_than_asked_is_refused() -> None:
    c, _ = make_versioned(4)
    text = admin.sign(c.text.replace('name = "member2"', "name = 'member2'"), PATH, ADMIN)
    assert "member2" not in admin.member_removed(loads(text, PATH), "member2")  # either quoting
    # member3's table header quoted: the edit by tables would take it for part of member2's
    odd = c.text.replace('[[members]]\nname = "member3"', '[["members"]]\nname = "member3"')
    with pytest.raises(ConfigError, match="not change only what was asked"):
        admin.member_removed(loads(admin.sign(odd, PATH, ADMIN), PATH), "member2")


def test_join_names_are_host_names_and_new_requests_are_checked_at_a_bounded_rate() -> None:
    c, _ = make_versioned(3)
    joins = PendingJoins()
    with pytest.raises(RemoteProtocolError) as info:
        joins.receive(c, join_frame(c, "m\x1b[2J", NEWCOMER, 1000, None), 0.0, 1000)
    assert info.value.reason is RejectReason.MALFORMED
    checked = 0
    for i in range(50):  # one second's flood of new requests
        try:
            joins.receive(
                c, join_frame(c, f"h{i}", HostKey(bytes([60 + i]) * 32), 1000, None), 0.5, 1000
            )
            checked += 1
        except RemoteProtocolError as exc:
            assert exc.reason is RejectReason.STALE
    assert checked == JOIN_CHECKS_PER_SECOND
    real = join_frame(c, "member4", NEWCOMER, 2000, None)
    assert joins.receive(c, real, 1.5, 2000)  # the next second: its host's request gets in


def test_a_version_that_switches_the_inbound_cipher_is_another_coalition() -> None:
    """Members of the old cipher could not open a gateway's frames of the new: like the mode,
    it is part of the identity, and the refusal says so."""
    c, _ = make_versioned(3)
    was = c.coalition.inbound_cipher.value
    now = next(x.value for x in InboundCipher if x.value != was)
    text = admin.next_version(c.text, PATH)
    text = set_keys(text, {"inbound_cipher": now}, "coalition")
    considered = VersionBook(c).consider(admin.sign(text, PATH, ADMIN))
    assert considered.outcome is Outcome.FOREIGN
    assert f"inbound_cipher {now}, ours {was} (a new coalition, not a version)" in considered.detail
