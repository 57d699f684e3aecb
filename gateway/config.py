"""The gateway daemon's configuration file."""

from __future__ import annotations

from dataclasses import dataclass

from lanon.common.daemon_config import DaemonSettings
from lanon.common.settings import opt


@dataclass(frozen=True)
class GatewaySettings(DaemonSettings):
    promiscuous: bool = opt(
        False,
        "capture in promiscuous mode (needed where frames for a taken-over address still go to "
        "the lost gateway's MAC, e.g. a hub or a switch port mirror)",
    )
    manage_rules: bool = opt(
        True,
        "install the raw-table rules that keep this host's own stack away from anonymous "
        "addresses (no RST, no ICMP from it)",
    )
