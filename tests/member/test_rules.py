"""The member's rules as text, what a member file gives them, the start order and the watch.

The rules in the kernel are tested in test_rules_kernel.py (a scratch namespace) and in
tests/integration/test_fail_closed.py (a lab: packets, a capture on the router).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from lanon.common import iptables
from lanon.common.errors import ConfigError, PrerequisiteError
from lanon.common.iptables import Jump, RuleSet
from lanon.common.templates import write_coalition
from lanon.member import rules
from lanon.member.rules import JUMPS_V4, JUMPS_V6, MemberRules

LAN = "198.18.0.0/24"


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def chain(text: str, name: str) -> list[str]:
    """The rules of one chain, without the '-A NAME ' prefix."""
    return [ln.split(" ", 2)[2] for ln in lines(text) if ln.startswith(f"-A {name} ")]


def declared(text: str) -> set[str]:
    return {ln[1:].split()[0] for ln in lines(text) if ln.startswith(":")}


def returns(rules_: list[str]) -> list[str]:
    """The exemptions of a chain: the matches of its RETURN rules."""
    return [r.removesuffix(" -j RETURN") for r in rules_ if r.endswith(" -j RETURN")]


def test_outbound_goes_to_the_queue_and_the_safety_net_drops_what_would_leave_otherwise() -> None:
    v4 = MemberRules(LAN, 7, "lanon0").ipv4()
    assert "@" not in "".join(lines(v4))
    out, post = chain(v4, "LANON_OUT"), chain(v4, "LANON_POST")
    assert out[-1] == "-j NFQUEUE --queue-num 7" and "bypass" not in "".join(lines(v4))
    assert post[-1] == "-j DROP"
    # the same exemptions: what the queue lets pass, the safety net lets pass (and no more)
    assert returns(out) == returns(post)
    assert {"-o lo", "-d 255.255.255.255/32", "-d 224.0.0.0/4"} <= set(returns(out))
    # The LAN is not exempt: its resolver would see who asks (#10.7). Only answers to hosts
    # that connected to this one, DHCP with the LAN's server, and [lan_services] direct.
    assert f"-d {LAN}" not in returns(out)
    lan = [r for r in returns(out) if r.startswith(f"-d {LAN}")]
    assert lan == [
        f"-d {LAN} -m conntrack --ctdir REPLY",
        f"-d {LAN} -p udp -m udp --sport 68 --dport 67",
    ]


def test_only_the_direct_lan_services_pass_with_the_hosts_own_address() -> None:
    v4 = MemberRules(LAN, 0, "lanon0", direct=("198.18.0.9:631/tcp", "198.18.0.10:445")).ipv4()
    for name in ("LANON_OUT", "LANON_POST"):
        assert [r for r in returns(chain(v4, name)) if "--dport" in r and "68" not in r] == [
            "-d 198.18.0.9/32 -p tcp -m tcp --dport 631",
            "-d 198.18.0.10/32 -p tcp -m tcp --dport 445",
            "-d 198.18.0.10/32 -p udp -m udp --dport 445",
        ]


def test_forwarded_traffic_beyond_the_lan_is_refused() -> None:
    v4 = MemberRules(LAN, 0, "lanon0").ipv4()
    fwd = chain(v4, "LANON_FWD")
    assert fwd[-1] == "-j REJECT --reject-with icmp-admin-prohibited"
    assert f"-d {LAN}" in returns(fwd)
    v6 = MemberRules(LAN, 0, "lanon0").ipv6()
    assert chain(v6, "LANON_FWD6")[-1] == "-j REJECT --reject-with icmp6-adm-prohibited"
    assert chain(v6, "LANON_POST6")[-1] == "-j DROP"
    assert all("fe80" in r or "ff00" in r or "lo" in r for r in returns(chain(v6, "LANON_OUT6")))


def test_unsolicited_inbound_from_beyond_the_lan_is_dropped_but_the_tun_passes() -> None:
    v4 = MemberRules(LAN, 0, "lanon9").ipv4()
    inp = chain(v4, "LANON_IN")
    assert inp[-1] == "-j DROP"
    # in mangle: no ACCEPT of another tool in the filter table comes before it
    assert ":LANON_IN " in v4.split("*mangle", 1)[1].split("COMMIT", 1)[0]
    assert Jump("mangle", "INPUT", "LANON_IN") in JUMPS_V4
    assert {"-i lo", "-i lanon9", f"-s {LAN}"} <= set(returns(inp))
    assert not any(r.startswith("-d") for r in returns(inp))


def test_dhcp_passes_only_broadcast_or_to_the_named_server() -> None:
    plain = MemberRules(LAN, 0, "lanon0").ipv4()
    # beyond the LAN, no port open anywhere
    assert not re.search(r"-d (?!198\.18\.0\.0/24).* --dport 6[78]", "\n".join(lines(plain)))
    named = MemberRules(LAN, 0, "lanon0", "203.0.113.67").ipv4()
    dhcp = [ln for ln in lines(named) if "--dport 6" in ln and LAN not in ln]
    assert dhcp == [
        "-A LANON_POST -d 203.0.113.67/32 -p udp -m udp --sport 68 --dport 67 -j RETURN",
        "-A LANON_IN -s 203.0.113.67/32 -p udp -m udp --sport 67 --dport 68 -j RETURN",
        "-A LANON_OUT -d 203.0.113.67/32 -p udp -m udp --sport 68 --dport 67 -j RETURN",
    ]
    with pytest.raises(ValueError):
        MemberRules(LAN, 0, "lanon0", "not-an-address").ipv4()


def test_the_closed_rules_need_nothing_and_fill_the_same_chains() -> None:
    full_v4, full_v6 = MemberRules(LAN, 0, "lanon0").rulesets()
    closed_v4, closed_v6 = rules.closed()
    assert "@" not in "".join(lines(closed_v4.text)) and "NFQUEUE" not in closed_v4.text
    assert declared(closed_v4.text) == declared(full_v4.text)  # a full install replaces them
    assert closed_v4.jumps == full_v4.jumps == JUMPS_V4 and closed_v6 == full_v6
    out = chain(closed_v4.text, "LANON_OUT")
    assert out[-1] == "-j REJECT --reject-with icmp-admin-prohibited"
    assert not any("198.18" in r for r in out)  # no LAN: only the link
    assert chain(closed_v4.text, "LANON_POST")[-1] == "-j DROP"
    # what tells that lanon rules hold a host is in both
    core = lines(rules.CORE_V4.text)
    assert all(ln in lines(full_v4.text) and ln in lines(closed_v4.text) for ln in core[1:-1])


def test_a_check_is_the_ruleset_as_checks_and_never_declares_a_chain() -> None:
    v4, v6 = MemberRules(LAN, 0, "lanon0").rulesets()
    text = v4.checks()
    assert not any(ln.startswith(":") for ln in text.splitlines())  # would empty our chains
    assert sorted(ln[3:] for ln in text.splitlines() if ln.startswith("-C LANON")) == sorted(
        ln[3:] for ln in lines(v4.text) if ln.startswith("-A ")
    )
    for j in JUMPS_V4:
        block = text.split(f"*{j.table}\n", 1)[1].split("COMMIT", 1)[0]
        assert f"-C {j.builtin} -j {j.chain}\n" in block
    # jumps into tables the text does not fill are checked too
    core = rules.CORE_V4.checks()
    assert "*filter\n-C OUTPUT -j LANON_OUT\n" in core and "*raw\n" in core
    assert "-C POSTROUTING -j LANON_POST6" in v6.checks()


# --- what a member file gives the rules ---------------------------------------------------


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    write_coalition(tmp_path, "office", LAN, [("gw1", "198.18.0.192/30")], ["a", "b", "c"])
    return tmp_path


def edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert re.search(old, text, re.M), old
    path.write_text(re.sub(old, new, text, flags=re.M))
    return path


def test_the_rules_need_only_the_lan_queue_tun_and_dhcp_server(files: Path) -> None:
    member = files / "a.toml"
    assert rules.from_config(member) == (MemberRules(LAN, 0, "lanon0"), True)
    (files / "keys" / "a.key").unlink()  # the key is not read
    edit(member, r"^name = .*$", 'name = "nobody"')  # nor whose file it is
    edit(member, r"^metrics = .*$", 'metrics = "not an address"')  # nor other settings
    member.write_text(
        member.read_text() + 'queue = 3\ntun = "lan9"\ndhcp_server = "203.0.113.67"\n'
    )
    assert rules.from_config(member) == (MemberRules(LAN, 3, "lan9", "203.0.113.67"), True)
    member.write_text(member.read_text() + "manage_rules = false\n")
    assert rules.from_config(member)[1] is False


def test_the_direct_lan_services_come_from_the_coalition_file_or_none_if_broken(
    files: Path,
) -> None:
    coalition_file = files / "coalition.toml"
    edit(coalition_file, r"^# direct = \[\]$", 'direct = ["198.18.0.9:631/tcp"]')
    got, _ = rules.from_config(files / "a.toml")
    assert got.direct == ("198.18.0.9:631/tcp",)
    edit(coalition_file, r"^direct = .*$", 'direct = ["198.18.0.9"]')
    got, _ = rules.from_config(files / "a.toml")
    assert got.direct == ()  # fewer exceptions: the safe side


@pytest.mark.parametrize(
    "breakage,message",
    [
        (lambda d: edit(d / "a.toml", r"^queue = .*$|\Z", "queue = 70000\n"), r"queue = 70000"),
        (lambda d: edit(d / "a.toml", r"^coalition = .*$", 'coalition = "gone.toml"'), "gone"),
        (lambda d: edit(d / "coalition.toml", r"^lan = .*$", 'lan = "10.1.2.3/8"'), "lan ="),
        (lambda d: edit(d / "coalition.toml", r"^lan = .*$", ""), "lan = None"),
        (lambda d: (d / "a.toml").write_text("not toml ["), "not valid TOML"),
    ],
)
def test_what_the_rules_cannot_do_without_is_a_configuration_error(
    files: Path, breakage: object, message: str
) -> None:
    breakage(files)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=message):
        rules.from_config(files / "a.toml")


# --- the start order, with the kernel's side recorded ------------------------------------


class Kernel:
    """What install_first asks of iptables, and whether lanon rules are in place."""

    def __init__(self, in_place: bool) -> None:
        self.in_place = in_place
        self.installed: list[tuple[int, str]] = []

    def install(self, rulesets: object) -> list[Jump]:
        self.installed += [(rs.family, rs.text) for rs in rulesets]  # type: ignore[attr-defined]
        return []


@pytest.fixture()
def kernel(monkeypatch: pytest.MonkeyPatch) -> Kernel:
    k = Kernel(in_place=False)
    monkeypatch.setattr(iptables, "install", k.install)
    monkeypatch.setattr(rules, "in_place", lambda: k.in_place)
    return k


def test_a_readable_file_gets_its_full_rules_first(files: Path, kernel: Kernel) -> None:
    (files / "keys" / "a.key").unlink()  # the daemon will fail on it: after the rules
    got = rules.install_first(files / "a.toml", logging.getLogger("test"))
    assert got == MemberRules(LAN, 0, "lanon0")
    assert kernel.installed == [(4, got.ipv4()), (6, got.ipv6())]


def test_an_unreadable_file_after_a_boot_gets_the_closed_rules(
    files: Path, kernel: Kernel, caplog: pytest.LogCaptureFixture
) -> None:
    (files / "coalition.toml").unlink()
    assert rules.install_first(files / "a.toml", logging.getLogger("test")) is None
    assert kernel.installed == [(rs.family, rs.text) for rs in rules.closed()]
    assert "installed the closed rules" in caplog.text and "coalition.toml" in caplog.text


def test_an_unreadable_file_keeps_the_rules_in_place(
    files: Path, kernel: Kernel, caplog: pytest.LogCaptureFixture
) -> None:
    kernel.in_place = True  # e.g. a restart after an edit that broke the file
    (files / "a.toml").write_text("queue = -1\n")
    assert rules.install_first(files / "a.toml", logging.getLogger("test")) is None
    assert kernel.installed == [(6, rules.ipv6())]  # IPv4 as it was; IPv6 needs no file
    assert "the lanon rules in place stay" in caplog.text


def test_manage_rules_false_installs_nothing(files: Path, kernel: Kernel) -> None:
    path = files / "a.toml"
    path.write_text(path.read_text() + "manage_rules = false\n")
    assert rules.install_first(path, logging.getLogger("test")) is None
    assert kernel.installed == []


# --- the watch ------------------------------------------------------------------------------


class FakeRuleSet(RuleSet):
    """A rule set whose state in the kernel is a flag."""

    state: dict[str, bool]

    def intact(self) -> bool:
        return self.state[self.text]

    def install(self) -> list[Jump]:
        self.state[self.text] = True
        return list(self.jumps[:1])


def test_the_watch_puts_back_what_is_missing_and_says_what() -> None:
    FakeRuleSet.state = {"v4": True, "v6": True}
    v4 = FakeRuleSet(4, "v4", (Jump("filter", "OUTPUT", "LANON_OUT"),))
    v6 = FakeRuleSet(6, "v6", JUMPS_V6)
    told: list[list[Jump]] = []
    watch = iptables.Watch([v4, v6], told.append)
    assert watch.check() and told == []
    FakeRuleSet.state["v4"] = False  # iptables -F
    assert not watch.check()
    assert told == [[Jump("filter", "OUTPUT", "LANON_OUT")]] and FakeRuleSet.state["v4"]
    assert watch.check() and len(told) == 1  # once put back, quiet
    assert str(told[0][0]) == "filter OUTPUT -> LANON_OUT"


def test_the_watch_thread_checks_every_interval_and_survives_a_failing_tool() -> None:
    import threading

    calls = threading.Semaphore(0)

    class Failing(RuleSet):
        def intact(self) -> bool:
            calls.release()
            raise PrerequisiteError("iptables-restore failed: (test)")

    watch = iptables.Watch([Failing(4, "", ())], lambda jumps: None, interval=0.01, events=False)
    watch.start()
    try:
        for _ in range(3):  # it goes on after failures
            assert calls.acquire(timeout=5)
    finally:
        watch.stop()
    assert watch.failures >= 3
