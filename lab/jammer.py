"""A jamming member, for the lab and the tests only: `lanon lab up --jammer NAME`.

It runs the member daemon as `lanon member` does, with one change: its contributor XORs junk
into every reserved slot of each round but its own (`Jamming`), as an insider that wants to
stop the coalition would. `Flooding` (tests) claims every reservation entry instead. Nothing in a shipped configuration can turn a daemon into this:
only the lab starts it, with `python -m lanon.lab.jammer --config FILE`.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path

from lanon.common import wire
from lanon.common.reservation import ENTRY_LEN, SECRET_LEN, make_claim
from lanon.member.contributor import Contributor, Pending


class Jamming(Contributor):
    """A contributor that XORs junk into every reserved slot but its own."""

    def _vector(
        self, o: wire.Open, slots: dict[int, Pending], claims: dict[int, tuple[bytes, bytes]]
    ) -> bytearray:
        vector = super()._vector(o, slots, claims)
        cs = self.c.coalition.cell_size
        base = o.nentries * ENTRY_LEN
        junk = random.Random(o.round)
        for s in range(o.nslots - self.c.rounds.express_slots):
            if s not in slots:
                for i in range(base + s * cs, base + (s + 1) * cs):
                    vector[i] ^= junk.randrange(256)
        return vector


class Flooding(Contributor):
    """A contributor that claims every entry of every round's reservation area."""

    def _vector(
        self, o: wire.Open, slots: dict[int, Pending], claims: dict[int, tuple[bytes, bytes]]
    ) -> bytearray:
        vector = super()._vector(o, slots, claims)
        junk = random.Random(o.round)
        for e in range(o.nentries):
            if e not in claims:
                claim = make_claim(junk.randbytes(SECRET_LEN))
                vector[e * ENTRY_LEN : (e + 1) * ENTRY_LEN] = claim
        return vector


def main(argv: list[str]) -> int:
    from lanon.common.daemon import setup_logging
    from lanon.common.daemon_config import load
    from lanon.member import rules
    from lanon.member.config import MemberSettings
    from lanon.member.daemon import MemberDaemon

    ap = argparse.ArgumentParser(prog="lanon.lab.jammer", description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    args = ap.parse_args(argv)
    setup_logging("info", "member")
    rules.install_first(args.config, logging.getLogger("lanon.member"))
    settings, loaded = load(MemberSettings, args.config, "member")
    setup_logging(settings.log_level, f"member[{settings.name}]")
    daemon = MemberDaemon(settings, loaded)
    daemon.engine.rounds.__class__ = Jamming
    daemon.log.warning("JAMMING (lab only): junk into every reserved slot but this member's own")
    daemon.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
