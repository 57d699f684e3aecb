import copy
import dataclasses
import enum
from pathlib import Path
from typing import Any

import pytest

from lanon.common import coalition, roster
from lanon.common.crypto import HostKey, encode_key
from lanon.common.errors import ConfigError, RemoteProtocolError
from lanon.common.events import RefuseReason
from lanon.common.flowkey import InboundCipher
from lanon.common.settings import describe
from tests.harness import coalition_dict

KEYS = [HostKey(bytes([i]) * 32) for i in range(1, 8)]
PATH = Path("c.toml")


def base() -> dict[str, Any]:
    return coalition_dict(
        [(f"m{i}", KEYS[i]) for i in range(4)],
        [("gw", KEYS[5], ["198.18.0.192/30"])],
    )


def test_valid_file_and_derived_values() -> None:
    c = coalition.parse(base(), PATH)
    assert [m.name for m in c.members] == ["m0", "m1", "m2", "m3"]
    assert len(c.anonymous) == 4 and str(c.anonymous[0]) == "198.18.0.192"
    assert c.connectivity.k == 3
    assert c.part_size == 1500 - 36
    assert c.cell_data == 1280 - 24  # (the template's cell_size, as coalition_dict's)
    assert c.cell_capacity == 1280 - 24 - 25  # a sealed packet: flags, counter, AEAD tag
    assert c.send_mss == 1231 - 40 and c.receive_mss == 1458 - 40
    raw = base()
    del raw["coalition"]["cell_size"]  # a file of the first releases keeps their 1400
    assert coalition.parse(raw, PATH).coalition.cell_size == 1400
    assert len(c.fingerprint) == 16 and c.id == int.from_bytes(c.fingerprint[:4], "big")


def test_fingerprint_changes_with_content() -> None:
    a = coalition.parse(base(), PATH)
    raw = base()
    raw["rounds"] = {"deadline": 0.3}
    b = coalition.parse(raw, PATH)
    assert a.fingerprint != b.fingerprint
    assert coalition.parse(base(), Path("elsewhere.toml")).fingerprint == a.fingerprint


def test_every_documented_key_is_accepted_with_its_default() -> None:
    raw = base()
    for section, cls in (
        ("coalition", coalition.CoalitionSection),
        ("rounds", coalition.RoundSection),
        ("flows", coalition.FlowSection),
        ("key_graph", coalition.KeyGraphSection),
    ):
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:  # as a file writes it: an enum by value
                value = f.default.value if isinstance(f.default, enum.Enum) else f.default
                raw.setdefault(section, {})[f.name] = value
    raw["key_graph"]["edges"] = []
    c = coalition.parse(raw, PATH)
    assert c.rounds == coalition.RoundSection() and c.flows == coalition.FlowSection()
    assert all(help_text for _, _, help_text in describe(coalition.RoundSection))


def _set(path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(base())
    node: Any = raw
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return raw


DELETE = object()

BAD = [
    (
        "coalition.lan",
        "198.18.0.1/24",
        r"\[coalition\]: lan = '198.18.0.1/24': expected an IPv4 prefix",
    ),
    ("coalition.lan", 5, r"lan = 5: expected a string"),
    ("coalition.name", "Bad Name", r"name = 'Bad Name': expected a name of lowercase"),
    ("coalition.cell_size", 100, r"cell_size = 100: expected a number from 256 to 9000"),
    (
        "coalition.cell_sizes",
        100,
        r"unknown key 'cell_sizes'; expected one of: cell_size, disband_timeout, inbound_cipher, lan, lan_mtu, min_members, mode, name",
    ),
    ("coalition.name", DELETE, r"missing key 'name'"),
    ("rounds.deadline", "fast", r"\[rounds\]: deadline = 'fast': expected a number"),
    ("rounds.max_claims", 99, r"max_claims = 99: expected a number from 1 to 64"),
    ("rounds.max_slots", 2, r"max_claims = 4: expected at most max_slots \(2\)"),
    ("rounds.schedule", "ring", r"schedule = 'ring': expected one of 'star', 'tree'"),
    ("flows.port_min", 70000, r"port_min = 70000: expected a number from 1 to 65535"),
    ("key_graph.kind", "star", r"kind = 'star': expected one of 'full', 'regular', 'edges'"),
    ("members.0.public_key", "xyz", r"\[\[members\]\] m0: public_key: 'xyz' is not a public key"),
    ("members.1.name", "m0", r"host name 'm0' appears twice"),
    (
        "gateways.0.addresses",
        ["10.0.0.0/30"],
        r"addresses = '10.0.0.0/30': expected a prefix inside lan 198.18.0.0/24",
    ),
    (
        "gateways.0.addresses",
        "198.18.0.192/30",
        r"addresses = '198.18.0.192/30': expected a list of strings",
    ),
    ("gateways", [], r"no \[\[gateways\]\]: a lanon needs at least one"),
    ("coalition.min_members", 9, r"4 member\(s\) listed but \[coalition\] min_members = 9"),
    ("extra", {}, r"unknown table 'extra'"),
]


@pytest.mark.parametrize("path,value,message", BAD, ids=[b[0] + "=" + repr(b[1])[:20] for b in BAD])
def test_bad_values_are_named(path: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        coalition.parse(_set(path, value), PATH)
    assert str(info.value).startswith("c.toml")


def test_one_connected_key_graph_is_refused_naming_the_weak_member() -> None:
    raw = _set(
        "key_graph",
        {"kind": "edges", "edges": [["m0", "m1"], ["m1", "m2"], ["m2", "m0"], ["m2", "m3"]]},
    )
    with pytest.raises(
        ConfigError,
        match=r"1-connected; expected at least 2-connected: m3 reach\(es\) the other members through m2-m3 only",
    ):
        coalition.parse(raw, PATH)


def test_regular_key_graph() -> None:
    raw = _set("key_graph", {"kind": "regular", "degree": 2})
    assert coalition.parse(raw, PATH).connectivity.k == 2
    five = coalition_dict(
        [(f"m{i}", KEYS[i]) for i in range(5)],
        [("gw", KEYS[5], ["198.18.0.192/30"])],
        key_graph={"kind": "regular", "degree": 3},
    )
    with pytest.raises(
        ConfigError, match=r"degree = 3: an odd degree \(3\) needs an even number of members"
    ):
        coalition.parse(five, PATH)


def test_unknown_member_in_edges() -> None:
    with pytest.raises(ConfigError, match="'zz' is not a member"):
        coalition.parse(_set("key_graph", {"kind": "edges", "edges": [["m0", "zz"]]}), PATH)


def test_shares_must_not_overlap() -> None:
    raw = base()
    raw["gateways"].append(
        {"name": "gw2", "public_key": encode_key(KEYS[6].public), "addresses": ["198.18.0.194/31"]}
    )
    with pytest.raises(ConfigError, match=r"anonymous address '198\.18\.0\.194' appears twice"):
        coalition.parse(raw, PATH)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read coalition file"):
        coalition.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[coalition\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        coalition.load(bad)


def test_the_schedule_is_an_enum_and_the_fingerprint_keeps_the_files_word() -> None:
    assert coalition.parse(base(), PATH).rounds.schedule is coalition.Schedule.STAR
    tree = coalition.parse(_set("rounds.schedule", "tree"), PATH)
    assert tree.rounds.schedule is coalition.Schedule.TREE
    star = coalition.parse(_set("rounds.schedule", "star"), PATH)
    assert star.fingerprint == coalition.parse(base(), PATH).fingerprint != tree.fingerprint
    assert ("schedule", "'star'") in [(k, d) for k, d, _ in describe(coalition.RoundSection)]


def test_roster_check_names_its_reason() -> None:
    ring = [["m0", "m1"], ["m1", "m2"], ["m2", "m3"], ["m3", "m0"]]
    check = roster.RosterCheck(
        coalition.parse(_set("key_graph", {"kind": "edges", "edges": ring}), PATH)
    )
    assert check(frozenset({0, 1, 2, 3})) is None
    assert check(frozenset({0, 1})) == roster.RosterProblem(
        RefuseReason.ROSTER_TOO_SMALL, "2 member(s), at least 3 needed"
    )
    assert check(frozenset({0, 1, 2})) == roster.RosterProblem(  # m0 and m2 hang on m1
        RefuseReason.WEAK_KEY_GRAPH, "the key graph among them is 1-connected"
    )


def test_a_sender_index_beyond_the_coalition_is_not_in_the_roster() -> None:
    c = coalition.parse(base(), PATH)
    assert c.member_at(3) is c.members[3] and c.gateway_at(0) is c.gateways[0]
    with pytest.raises(RemoteProtocolError, match="not_in_roster: member #4: none"):
        c.member_at(4)
    with pytest.raises(RemoteProtocolError, match="not_in_roster: no gateway #1"):
        c.gateway_at(1)


def test_more_members_than_a_frame_can_name_is_a_clear_error() -> None:
    """OPEN and the output head carry a MAC (and a key id) per member: at MTU 1500, 69
    members fit a star round; beyond, the file says so instead of rounds that never open."""
    from lanon.lab.sim import make_coalition

    assert len(make_coalition(69)[0].members) == 69
    with pytest.raises(ConfigError, match="70 members do not fit \\[coalition\\] lan_mtu = 1500"):
        make_coalition(70)
    assert len(make_coalition(120, coalition={"lan_mtu": 9000})[0].members) == 120


def test_the_inbound_cipher_counts_in_the_fingerprint_only_when_it_is_aes() -> None:
    """A file without the line (every file of earlier releases) keeps its fingerprint and runs
    ChaCha20-Poly1305; naming that default changes nothing; AES-256-GCM changes both the
    fingerprint and the identity (no signed version can switch it: its frames would not open)."""
    without = coalition.parse(_set("coalition.inbound_cipher", DELETE), PATH)
    chacha = coalition.parse(_set("coalition.inbound_cipher", "chacha20-poly1305"), PATH)
    aes = coalition.parse(_set("coalition.inbound_cipher", "aes256-gcm"), PATH)
    assert without.coalition.inbound_cipher is InboundCipher.CHACHA20_POLY1305
    assert (without.fingerprint, without.identity) == (chacha.fingerprint, chacha.identity)
    assert aes.fingerprint != without.fingerprint and aes.id != without.id
    with pytest.raises(ConfigError, match="expected one of 'chacha20-poly1305', 'aes256-gcm'"):
        coalition.parse(_set("coalition.inbound_cipher", "aes-256-gcm"), PATH)
