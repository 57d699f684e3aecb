"""The simulated LAN of the tests: it lives in the package, as `lanon.lab.sim`, so that the
benchmark uses it too; tests import it from here or from there alike."""

from lanon.lab.sim import (
    WALL,
    Host,
    Lan,
    coalition_dict,
    mac_of,
    make_coalition,
    running_lan,
)

__all__ = ["WALL", "Host", "Lan", "coalition_dict", "mac_of", "make_coalition", "running_lan"]
