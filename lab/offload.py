"""Segmentation offloads of one lab interface, off or on (the benchmark's frame rate).

Run inside a lab namespace as

    python -m lanon.lab.offload eth0 off

With TCP and generic segmentation on (a veth's default), a TCP sender hands the veth segments
of up to 64 KB, and they cross the lab's bridge whole: a download then says little of how many
frames a second the LAN carries. Off, the sender's stack cuts them to the MTU first. Lab use
only: it changes the interface it is given, in the namespace it runs in.
"""

from __future__ import annotations

import sys

from pyroute2.ethtool import Ethtool

SEGMENTATION = ("tx-tcp-segmentation", "tx-tcp6-segmentation", "tx-generic-segmentation")


def set_segmentation(ifname: str, on: bool) -> list[str]:
    """The segmentation features of `ifname` set to `on`; the names changed."""
    ethtool = Ethtool()
    try:
        features = ethtool.get_features(ifname)
        changed = []
        for name in SEGMENTATION:
            f = features.features.get(name)
            if f is not None and f.available and f.enable != on:
                f.enable = on
                changed.append(name)
        if changed:
            ethtool.set_features(ifname, features)
        return changed
    finally:
        ethtool.close()


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[2] not in ("on", "off"):
        sys.exit("usage: python -m lanon.lab.offload IFNAME on|off")
    print(" ".join(set_segmentation(sys.argv[1], sys.argv[2] == "on")))


if __name__ == "__main__":
    main()
