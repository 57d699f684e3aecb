"""Insiders can't read or hijack other members' flows (per-flow keys, common/flowkey.py).

The attackers: a curious member or the switch operator reading every frame on the LAN; a
member that puts cells of its own making into rounds under another member's flow tag (with
a key of its own, with junk, or a copy of the real member's cell); a gateway that restarted
and must get a flow's key again.
"""

from __future__ import annotations

from lanon.common import wire
from lanon.common.cell import SlotState, decode_slot, encode_cell
from lanon.common.events import DropReason, PacketDropped
from lanon.common.flowkey import KeyWrapper, flow_tag, new_flow_key, seal_packet
from lanon.common.packet import parse, set_source
from lanon.common.reservation import ENTRY_LEN
from lanon.member.contributor import Pending
from lanon.member.flows import REWRAP_INTERVAL
from tests.harness import Lan, running_lan
from tests.packets import udp


def _cells_in_outputs(lan: Lan) -> list[tuple[int, bytes]]:
    """(tag, sealed packet) of every one-cell packet in every round output on the wire."""
    parts: dict[int, dict[int, bytes]] = {}
    heads: dict[int, wire.OutputHead] = {}
    n = len(lan.c.members)
    for _src, _dst, f in lan.frames(wire.MsgType.OUTPUT_HEAD):
        head = wire.pull_output_head(wire.split_sealed(f, n)[0])
        heads[head.round] = head
    for _src, _dst, f in lan.frames(wire.MsgType.OUTPUT_PART):
        p = wire.pull_part(f)
        parts.setdefault(p.round, {})[p.index] = p.payload
    cs = lan.c.coalition.cell_size
    out = []
    for rnd, head in heads.items():
        got = parts.get(rnd, {})
        if len(got) != len(head.digests):
            continue
        vector = b"".join(got[i] for i in range(len(got)))
        base = head.nentries * ENTRY_LEN
        for s in range(head.nslots):
            state, cell = decode_slot(vector[base + s * cs : base + (s + 1) * cs])
            if state is SlotState.CELL and cell is not None and cell.count == 1:
                out.append((cell.tag, cell.data))
    return out


def _emitted_payloads(lan: Lan) -> list[bytes]:
    return [p for _gw, p in lan.emitted]


def _slip_in(lan: Lan, member: str, tag: int, sealed: bytes) -> None:
    """`member` queues a cell of its own making (an insider runs what code it likes)."""
    cell = encode_cell(lan.c.coalition.cell_size, tag, 12345, 0, 1, sealed)
    lan.member(member).rounds.queue.append(Pending(cell, lan.now))


def _drops(lan: Lan) -> list[DropReason]:
    return [e.reason for e in lan.events("gateway1", PacketDropped)]  # type: ignore[attr-defined]


def test_the_lan_sees_no_member_traffic_in_clear() -> None:
    """Everything a member or the switch operator captures: outputs, inbound broadcasts, every
    frame. Neither the request nor the reply shows; the gateway emits the request whole."""
    lan = running_lan(4)
    lan.wire_log.clear()
    lan.submit("member1", udp(payload=b"request: the newsroom's source"))
    lan.run_until(lambda: bool(lan.host("member1").injected))
    assert lan.host("member1").injected[-1].endswith(b"request: the newsroom's source")  # echo
    for _src, _dst, frame in lan.wire_log:
        assert b"newsroom" not in frame
    assert any(p.endswith(b"request: the newsroom's source") for p in _emitted_payloads(lan))
    assert lan.frames(wire.MsgType.INBOUND)  # the reply went over the LAN, sealed


def test_a_member_cannot_bind_its_own_key_to_another_members_tag() -> None:
    """member2 reads member1's tag in an output and sends cells under it: with a wrap of a key
    of its own, with junk, with the real cell copied into a later round. The gateway emits
    none of them and keeps member1's flow as it was; member1 goes on."""
    lan = running_lan(4)
    lan.submit("member1", udp(sport=41000, payload=b"first"))
    lan.run_until(lambda: bool(lan.host("member1").injected))
    tag, real = _cells_in_outputs(lan)[-1]
    flow = lan.gateway().flows.by_tag[tag]
    before = (flow.key, flow.port, flow.remote, flow.remote_port)
    emitted = len(lan.emitted)

    # a key of member2's, wrapped for the gateways, for a packet to another server
    mine = new_flow_key(lan.rng)
    wrap = KeyWrapper([g.public for g in lan.c.gateways]).wrap(mine, lan.rng)
    hijack = bytearray(udp(sport=41000, dst="203.0.113.99", payload=b"hijack"))
    set_source(hijack, parse(hijack), lan.member("member1").flows.by_tag(tag).anon, 0)  # type: ignore[union-attr]
    _slip_in(lan, "member2", tag, seal_packet(mine, tag, 99, bytes(hijack), wrap))
    _slip_in(lan, "member2", tag, seal_packet(mine, tag, 100, bytes(hijack)))  # no wrap
    _slip_in(lan, "member2", tag, b"\x00" + bytes(200))  # junk that looks sealed
    _slip_in(lan, "member2", tag, real)  # member1's own cell, again
    lan.run_until(lambda: len(_drops(lan)) >= 4)
    assert sorted(r.value for r in _drops(lan)) == sorted(
        ["bad_seal", "bad_seal", "bad_seal", "replayed"]
    )
    assert len(lan.emitted) == emitted  # nothing emitted, not even the copy
    flow = lan.gateway().flows.by_tag[tag]
    assert (flow.key, flow.port, flow.remote, flow.remote_port) == before

    lan.submit("member1", udp(sport=41000, payload=b"second"))
    lan.run_until(lambda: lan.host("member1").injected[-1].endswith(b"second"))


def test_a_tag_is_its_keys_hash_so_a_wrap_cannot_claim_a_fresh_tag() -> None:
    """Even for a tag no gateway has seen (a member guessing where another's next flow will
    be), a wrap must hold the key that hashes to it."""
    lan = running_lan(3)
    key = new_flow_key(lan.rng)
    other = flow_tag(new_flow_key(lan.rng))
    wrap = KeyWrapper([g.public for g in lan.c.gateways]).wrap(key, lan.rng)
    packet = bytearray(udp(payload=b"x"))
    set_source(packet, parse(packet), lan.c.anonymous[0].packed, 0)
    _slip_in(lan, "member2", other, seal_packet(key, other, 1, bytes(packet), wrap))
    lan.run_until(lambda: bool(_drops(lan)))
    assert _drops(lan) == [DropReason.BAD_SEAL]
    assert other not in lan.gateway().flows.by_tag


def test_a_restarted_gateway_gets_the_key_again_from_the_next_wrap() -> None:
    """The only gateway restarts and forgets every flow: packets of a flow without a wrap are
    dropped (no key), until the member wraps the key again, at most REWRAP_INTERVAL later."""
    lan = running_lan(3)
    injected = lan.host("member1").injected

    def answered(payload: bytes) -> bool:
        return bool(injected) and injected[-1].endswith(payload)

    for i in range(10):  # past the packets that carry the wrap, answered
        lan.submit("member1", udp(sport=42000, payload=b"p%d" % i))
        lan.run_until(lambda i=i: answered(b"p%d" % i))  # type: ignore[misc]
    lan.restart("gateway1")
    lan.run_until(lambda: lan.gateway().leading and lan.gateway().leader.round > 0, limit=30)
    lan.run(2.0)
    lan.submit("member1", udp(sport=42000, payload=b"lost"))
    lan.run_until(lambda: DropReason.NO_FLOW_KEY in _drops(lan))
    lan.run(REWRAP_INTERVAL)
    lan.submit("member1", udp(sport=42000, payload=b"back"))
    lan.run_until(lambda: answered(b"back"))
