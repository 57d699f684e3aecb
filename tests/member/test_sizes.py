"""Packets of every size are carried whole or refused as the kernel would; nothing is cut."""

import random

from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror

from lanon.common.events import InjectPacket, PacketDropped
from lanon.member.engine import MemberEngine
from tests.harness import WALL, Lan, make_coalition
from tests.harness import running_lan as harness_lan
from tests.packets import checksums_ok, udp


def running_lan() -> Lan:
    return harness_lan(3)


def test_a_datagram_nfqueue_cut_short_is_refused_with_fragmentation_needed() -> None:
    c, keys = make_coalition(3, 1)
    eng = MemberEngine(
        c, "member1", keys["member1"], now=0.0, wall_offset=WALL, rng=random.Random(1)
    )
    whole = udp(payload=b"u" * 8000)
    eng.submit_packet(whole[:4016], 0.0)  # NFQUEUE copies about 4 KB
    injected = [cmd.packet for cmd in eng.pop_commands() if isinstance(cmd, InjectPacket)]
    assert [e.reason.value for e in eng.pop_events() if isinstance(e, PacketDropped)] == [
        "truncated"
    ]
    assert len(injected) == 1
    err = IP(injected[0])
    assert (err.src, err.dst) == ("203.0.113.10", "198.18.0.11")  # from the far end, to us
    assert err[ICMP].type == 3 and err[ICMP].code == 4 and err[ICMP].nexthopmtu == 1500
    assert err[IPerror].len == len(whole) and err[UDPerror].sport == 40000
    assert checksums_ok(injected[0])


def test_a_df_packet_larger_than_the_lan_mtu_is_answered_by_the_gateway() -> None:
    lan = running_lan()
    lan.submit("member1", udp(payload=b"d" * 2000, flags="DF"))  # two cells, too big to emit
    lan.run_until(lambda: bool(lan.host("member1").injected))
    assert lan.emitted == []
    err = IP(lan.host("member1").injected[0])
    assert (
        err.dst == "198.18.0.11"
        and err[ICMP].type == 3
        and err[ICMP].code == 4
        and err[ICMP].nexthopmtu == 1500
    )
    assert err[IPerror].src == "198.18.0.11" and err[UDPerror].sport == 40000  # restored to ours
    assert checksums_ok(bytes(err))


def test_a_large_datagram_without_df_is_fragmented_and_its_reply_arrives_whole() -> None:
    lan = running_lan()
    payload = bytes(range(256)) * 12  # 3072 bytes: three cells, three fragments on the wire
    lan.submit("member2", udp(src="198.18.0.12", payload=payload))
    lan.run_until(lambda: bool(lan.host("member2").injected))
    assert len(lan.emitted) == 3 and all(len(p) <= 1500 for _, p in lan.emitted)
    reply = IP(lan.host("member2").injected[0])
    assert reply[UDP].load == payload and reply.dst == "198.18.0.12"
