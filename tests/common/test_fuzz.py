"""The fuzzer (lanon/lab/fuzz.py) on every decoder and engine entry point: a short, seeded run.

`./run bench --fuzz` runs the same targets with a million inputs; LANON_FUZZ_SEED=n runs this
test with other inputs. A failure names the input: `python -m lanon.lab.fuzz TARGET SEED INDEX`
replays it with its traceback.
"""

from __future__ import annotations

import os

import pytest

from lanon.common import wire
from lanon.lab import fuzz

SEED = int(os.environ.get("LANON_FUZZ_SEED", "0"))


def inputs_for(target: fuzz.Target) -> int:
    """A few thousand inputs for decoders, fewer for engines, which take longer each."""
    return 3000 if target.cost == 1 else 600 if target.cost < 50 else 200


@pytest.fixture(scope="module")
def corpus() -> fuzz.Corpus:
    return fuzz.Corpus.build()


@pytest.mark.parametrize("name", list(fuzz.BY_NAME))
def test_no_input_crashes(corpus: fuzz.Corpus, name: str) -> None:
    target = fuzz.BY_NAME[name]
    n = inputs_for(target)
    r = fuzz.run_target(target, corpus, n, SEED)
    assert not r.crashes, "\n".join(f"{c.error} at {c.where}: {c.reproducer()}" for c in r.crashes)
    assert r.inputs == n
    if target.cost == 1 and name != "wire.peek_inbound_tag":
        # the inputs are neither all garbage nor all harmless: they reach past the checks
        assert 0 < r.rejected < r.inputs, f"{r.rejected} of {r.inputs} rejected"


def test_every_decoder_and_entry_point_is_a_target() -> None:
    pulls = {n for n in dir(wire) if n.startswith(("pull_", "peek_"))} | {"bitmap_decode"}
    assert {f"wire.{n}" for n in pulls} <= set(fuzz.BY_NAME)
    for entry in (
        "member.receive_frame",
        "member.submit_packet",
        "member.handle_timer",
        "gateway.receive_frame",
        "gateway.receive_packet",
        "gateway.receive_arp",
        "gateway.handle_timer",
    ):
        assert entry in fuzz.BY_NAME


def test_the_raw_material_has_every_kind_of_frame(corpus: fuzz.Corpus) -> None:
    assert all(corpus.frames[t] for t in wire.MsgType), {
        t.name: len(corpus.frames[t]) for t in wire.MsgType
    }
    assert corpus.cells and corpus.fragments and corpus.packets


def test_a_run_is_reproducible(corpus: fuzz.Corpus) -> None:
    for name in ("member.receive_frame", "lan.star", "defrag"):
        a = fuzz.run_target(fuzz.BY_NAME[name], corpus, 150, seed=7)
        b = fuzz.run_target(fuzz.BY_NAME[name], corpus, 150, seed=7)
        assert (a.inputs, a.rejected) == (b.inputs, b.rejected)


def test_a_crash_is_reported_with_an_input_that_replays_it(
    corpus: fuzz.Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = wire.pull_keys

    def buggy(body: bytes) -> wire.Keys:
        keys = real(body)
        if len(keys.keys) > 1:
            raise IndexError("a planted bug")
        return keys

    monkeypatch.setattr(wire, "pull_keys", buggy)
    target = fuzz.BY_NAME["member.receive_frame"]
    r = fuzz.run_target(target, corpus, 3000, seed=1)
    assert r.crashes and r.crashes[0].error == "IndexError: a planted bug"
    crash = r.crashes[0]
    assert crash.reproducer().startswith("python -m lanon.lab.fuzz 'member.receive_frame' ")
    with pytest.raises(IndexError, match="planted"):
        fuzz.replay(crash.target, crash.seed, crash.index, corpus)
