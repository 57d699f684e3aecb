"""Drop reasons are one enum whose values are the metric labels: every reason of the parts
that give packets up has its member, named as the label always was."""

from __future__ import annotations

import pytest

from lanon.common.coalition import NEVER_EMITTED
from lanon.common.events import DropReason, FragmentDrop
from lanon.common.packet import Unsupported
from lanon.common.parts import PartDrop


def test_every_reason_of_the_parsers_and_reassemblers_has_its_label() -> None:
    for u in Unsupported:
        assert DropReason.outbound(u).value == u.value
        assert DropReason.inbound(u).value == "inbound_" + u.value
    for p in PartDrop:
        assert DropReason.cells(p).value == "cells_" + p.value
    for f in FragmentDrop:
        assert DropReason.fragments(f).value == "inbound_fragments_" + f.value


@pytest.mark.parametrize(
    "what", sorted({"broadcast", "lan", "local", "private"} | {w for w, _ in NEVER_EMITTED})
)
def test_every_class_of_refused_destination_has_its_label(what: str) -> None:
    assert DropReason.prohibited(what).value == "prohibited_" + what


def test_labels_are_bounded_and_distinct() -> None:
    assert len(DropReason.__members__) == len(DropReason)  # no two members share a label
    assert all(r.value.isidentifier() and r.value.islower() for r in DropReason)
