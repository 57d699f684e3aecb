"""Owning a flow costs nothing visible (issue 10, point 3).

The attacker sends every member the same INBOUND frames of one flow (the genuine one and
thousands of forged copies) and watches what each member does: the cryptographic work it
spends, and what it exports on its public metrics endpoint or logs. The owner must look like
everyone else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from lanon.common import flowkey, wire
from lanon.common.events import FrameRejected, InboundRefused
from lanon.member.metrics import MemberMetrics
from tests.harness import Lan, running_lan
from tests.packets import udp


class Work:
    """Bytes each member's libsodium calls pass through ChaCha20 and Poly1305, or through
    AES-256-GCM; `cipher`, the coalition's."""

    def __init__(self, cipher: flowkey.InboundCipher) -> None:
        self.tally: Counter[str] = Counter()
        self.cipher = cipher

    def lan(self) -> Lan:
        return running_lan(4, coalition={"inbound_cipher": self.cipher.value})

    def aes_decrypt(self, sealed: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes | None:
        self.tally["calls"] += 1  # one pass of CTR and GHASH, whether the tag holds or not
        self.tally["aes256gcm"] += len(aad) + len(sealed) - flowkey.AEAD_TAG
        return AES_OPEN(sealed, aad, nonce, key)

    def encrypt(self, message: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes:
        self.tally["calls"] += 1
        self.tally["chacha20"] += len(message)
        self.tally["poly1305"] += len(aad) + len(message)
        return SEAL(message, aad, nonce, key)

    def decrypt(self, sealed: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes | None:
        self.tally["calls"] += 1
        self.tally["poly1305"] += len(aad) + len(sealed) - flowkey.AEAD_TAG
        out = OPEN(sealed, aad, nonce, key)  # None on a bad tag, after Poly1305 only
        if out is not None:
            self.tally["chacha20"] += len(sealed) - flowkey.AEAD_TAG
        return out

    def stream(self, data: bytes, length: int, nonce: bytes, key: bytes) -> None:
        self.tally["calls"] += 1
        self.tally["chacha20"] += length
        STREAM(data, length, nonce, key)


SEAL = flowkey.seal
OPEN = flowkey.open_sealed
STREAM = flowkey.spend_stream
AES_OPEN = flowkey.aes_open


@pytest.fixture(params=[True, False, None], ids=["raw stream", "AEAD only", "AES-256-GCM"])
def work(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Work]:
    """ChaCha20-Poly1305's two ways of evening out: with libsodium's raw stream functions,
    and without them; and AES-256-GCM, which needs none."""
    aes = request.param is None
    w = Work(flowkey.InboundCipher.AES256_GCM if aes else flowkey.CHACHA)
    monkeypatch.setattr(flowkey, "RAW_STREAM", bool(request.param))
    monkeypatch.setattr(flowkey, "seal", w.encrypt)
    monkeypatch.setattr(flowkey, "open_sealed", w.decrypt)
    monkeypatch.setattr(flowkey, "spend_stream", w.stream)
    monkeypatch.setattr(flowkey, "aes_open", w.aes_decrypt)
    yield w


def _attack_frames(lan: Lan) -> tuple[bytes, list[bytes]]:
    """member1's genuine INBOUND frame, then 2,000 forged copies (payload bytes flipped, later
    sequence numbers) and 100 replays."""
    src, _dst, genuine = lan.frames(wire.MsgType.INBOUND)[-1]
    seq = int.from_bytes(genuine[8:16], "big")
    frames = [genuine]
    for i in range(2000):
        forged = bytearray(genuine)
        forged[8:16] = (seq + 1 + i).to_bytes(8, "big")
        forged[40 + i % 20] ^= 0x5A
        frames.append(bytes(forged))
    frames += [genuine] * 100
    return src, frames


def _public_metrics(events: list[Any], name: str) -> str:
    public = CollectorRegistry()
    m = MemberMetrics(public, CollectorRegistry(), name, "lab")
    for e in events:
        m.observe(e, 0.0)
    text = generate_latest(public).decode().replace(name, "NAME")
    return "\n".join(ln for ln in text.splitlines() if "_created" not in ln)  # (wall clock)


def test_the_owner_of_a_flow_does_the_same_work_and_shows_the_same(work: Work) -> None:
    lan = work.lan()
    lan.submit("member1", udp(payload=b"ping"))
    lan.run_until(lambda: bool(lan.host("member1").injected))
    src, frames = _attack_frames(lan)
    tallies = {}
    public = {}
    private_refusals = {}
    for name in ("member1", "member2", "member3"):
        eng = lan.member(name)
        eng.pop_commands()
        eng.pop_events()
        work.tally.clear()
        for frame in frames[1:]:  # the forgeries and replays: nothing is injected anywhere
            eng.receive_frame(src, frame, lan.now)
        assert eng.pop_commands() == []
        tallies[name] = dict(work.tally)
        events = eng.pop_events()
        assert not [e for e in events if isinstance(e, FrameRejected)]  # nothing public
        private_refusals[name] = len([e for e in events if isinstance(e, InboundRefused)])
        public[name] = _public_metrics(events, name)
    assert tallies["member1"] == tallies["member2"] == tallies["member3"], tallies
    aes = work.cipher is flowkey.InboundCipher.AES256_GCM
    assert tallies["member1"]["calls"] == (1 if aes else 2) * 2100
    assert public["member1"] == public["member2"] == public["member3"]
    assert private_refusals == {"member1": 2100, "member2": 0, "member3": 0}


def test_a_genuine_frame_costs_its_owner_what_it_costs_the_others(work: Work) -> None:
    """One genuine frame, before the owner takes it: the same calls, the same bytes."""
    lan = work.lan()
    lan.submit("member1", udp(sport=40001, payload=b"first"))
    lan.run_until(lambda: bool(lan.host("member1").injected))
    lan.submit("member1", udp(sport=40001, payload=b"x" * 900))
    # hold the reply back from everyone, then hand it to each member alike
    frames_before = len(lan.frames(wire.MsgType.INBOUND))
    lan.run_until(lambda: len(lan.frames(wire.MsgType.INBOUND)) > frames_before)
    src, _dst, genuine = lan.frames(wire.MsgType.INBOUND)[-1]
    tallies = {}
    for name in ("member1", "member2", "member3"):
        eng = lan.member(name)
        flow = eng.flows.by_tag(wire.pull_inbound(genuine).tag)
        if flow is not None and flow.inbound_seq:
            flow.inbound_seq.clear()  # as if it had not seen this one yet
        work.tally.clear()
        eng.receive_frame(src, genuine, lan.now)
        tallies[name] = dict(work.tally)
    assert tallies["member1"] == tallies["member2"] == tallies["member3"], tallies
