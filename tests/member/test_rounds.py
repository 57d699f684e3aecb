"""Whole rounds in memory: members and a leader, an explicit clock, no sockets."""

from collections import defaultdict
from typing import Any

from scapy.layers.inet import IP, TCP, UDP

from lanon.common import flowkey, wire
from lanon.common.cell import SlotState, decode_slot
from lanon.common.events import CellDelivered, Contributed, FrameRejected
from lanon.common.reservation import ENTRY_LEN
from tests.harness import Lan
from tests.harness import running_lan as harness_lan
from tests.packets import checksums_ok, ping, tcp, udp


def running_lan(n: int = 3, **kw: dict[str, Any]) -> Lan:
    return harness_lan(n, **kw)


def frames_of(lan: Lan, mtype: wire.MsgType) -> list[tuple[bytes, bytes]]:
    return [(src, f) for src, _dst, f in lan.wire_log if len(f) > 1 and f[1] == mtype]


def test_rounds_start_once_members_say_hello() -> None:
    lan = running_lan()
    assert not lan.all_events(FrameRejected)
    assert {e.round for e in lan.events("member1", Contributed)} == {
        e.round for e in lan.events("member2", Contributed)
    }


def test_xor_of_all_contributions_is_the_output_and_carries_the_cell() -> None:
    lan = running_lan()
    lan.wire_log.clear()
    lan.submit("member1", udp(payload=b"the secret message"))
    lan.run_until(lambda: bool(lan.events("member1", CellDelivered)))

    contribs: dict[int, dict[bytes, dict[int, bytes]]] = defaultdict(lambda: defaultdict(dict))
    attests = 0
    for src, f in frames_of(lan, wire.MsgType.CONTRIB):
        part = wire.pull_part(f[: -wire.MAC_LEN])
        payload = part.payload
        if part.index == part.count - 1:  # the member's signed ATTEST rides at its end
            attest = wire.pull_attest(payload[-wire.ATTEST_LEN : -wire.SIG_LEN])
            assert attest.round == part.round and attest.nparts == part.count
            payload, attests = payload[: -wire.ATTEST_LEN], attests + 1
        contribs[part.round][src][part.index] = payload
    assert attests and not frames_of(lan, wire.MsgType.ATTEST)  # no frame of its own
    outputs: dict[int, dict[int, bytes]] = defaultdict(dict)
    for _src, f in frames_of(lan, wire.MsgType.OUTPUT_PART):
        part = wire.pull_part(f)
        outputs[part.round][part.index] = part.payload

    carried = None
    for rnd, by_member in contribs.items():
        assert len(by_member) == 3
        vectors = [b"".join(parts[i] for i in sorted(parts)) for parts in by_member.values()]
        total = bytes(len(vectors[0]))
        for v in vectors:
            total = bytes(a ^ b for a, b in zip(total, v, strict=True))
        output = b"".join(outputs[rnd][i] for i in sorted(outputs[rnd]))
        assert total == output  # the sum of all contributions is the round output
        size = lan.c.coalition.cell_size
        area = next(  # the round's reservation area: what is left is whole cells
            n * ENTRY_LEN for n in (4, 8, 16, 32, 64) if (len(output) - n * ENTRY_LEN) % size == 0
        )
        nslots = (len(output) - area) // size
        for s in range(nslots):
            state, cell = decode_slot(output[area + s * size : area + (s + 1) * size])
            if state is SlotState.CELL:
                assert cell is not None
                carried = (rnd, cell, vectors)
    assert carried is not None
    rnd, cell, vectors = carried
    # The output shows the cell, sealed under the flow's key: only a gateway (or member1) opens it.
    assert b"the secret message" not in cell.data
    flow = lan.member("member1").flows.by_tag(cell.tag)
    assert flow is not None
    packet = flowkey.Sealed(cell.tag, cell.data).open(flow.secret)
    assert packet is not None and packet.endswith(b"the secret message")
    for v in vectors:  # no single member's frames show the message (or anything but noise)
        assert b"the secret message" not in v
        assert v.count(0) < len(v) // 64


def test_idle_and_busy_members_send_the_same_frames() -> None:
    lan = running_lan(4)
    lan.wire_log.clear()
    for i in range(30):
        lan.submit("member2", udp(sport=41000 + i, payload=b"z" * 900))
    lan.run_until(lambda: len(lan.events("member2", CellDelivered)) >= 30)
    shapes: dict[int, dict[bytes, list[int]]] = defaultdict(lambda: defaultdict(list))
    for src, f in frames_of(lan, wire.MsgType.CONTRIB):
        shapes[wire.pull_part(f[: -wire.MAC_LEN]).round][src].append(len(f))
    busy_rounds = 0
    for by_member in shapes.values():
        assert len(by_member) == 4
        assert len({tuple(sorted(v)) for v in by_member.values()}) == 1
        busy_rounds += len(next(iter(by_member.values()))) > 1
    assert busy_rounds >= 3  # rounds with data slots happened, and still every member matched


def test_udp_ping_and_tcp_come_back_to_their_member_only() -> None:
    lan = running_lan()
    lan.submit("member1", udp(payload=b"echo me"))
    lan.submit("member2", ping(src="198.18.0.12", ident=4242))
    lan.submit("member3", tcp(src="198.18.0.13", options=[("MSS", 1460)]))
    lan.run_until(lambda: all(lan.host(m).injected for m in ("member1", "member2", "member3")))
    lan.run(0.5)
    a, b, c = (lan.host(m).injected for m in ("member1", "member2", "member3"))
    assert len(a) == len(b) == len(c) == 1
    assert (
        IP(a[0])[UDP].load == b"echo me"
        and IP(a[0]).dst == "198.18.0.11"
        and IP(a[0])[UDP].dport == 40000
    )
    assert IP(b[0]).dst == "198.18.0.12" and IP(b[0]).id is not None
    syn_ack = IP(c[0])
    assert (
        syn_ack[TCP].flags == "SA" and syn_ack.dst == "198.18.0.13" and syn_ack[TCP].dport == 40000
    )
    # clamped on the way in too: the member's segments fit a cell
    assert dict(syn_ack[TCP].options)["MSS"] == lan.c.send_mss
    assert all(checksums_ok(p) for p in (a[0], b[0], c[0]))
    # the Internet saw anonymous addresses and ports
    seen = [IP(p) for _, p in lan.emitted]
    assert {p.src for p in seen} <= {str(a) for a in lan.c.anonymous}
    # and an MSS whose segments fit an inbound frame
    assert dict(next(p for p in seen if TCP in p)[TCP].options)["MSS"] == lan.c.receive_mss
    assert lan.c.receive_mss > lan.c.send_mss


def test_a_large_packet_travels_in_several_cells() -> None:
    lan = running_lan()
    lan.submit("member1", udp(payload=bytes(range(256)) * 10))  # 2588 bytes: two cells
    lan.run_until(lambda: bool(lan.host("member1").injected))
    assert IP(lan.host("member1").injected[0])[UDP].load == bytes(range(256)) * 10
