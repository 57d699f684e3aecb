"""Events of every round or packet skip the daemons' logs (`common.daemon.UNLOGGED`): no
`log_event` may be about one of them, or its lines would never be written."""

from __future__ import annotations

import inspect

import pytest

from lanon.common.daemon import UNLOGGED, DaemonBase
from lanon.gateway.daemon import GatewayDaemon
from lanon.member.daemon import MemberDaemon


@pytest.mark.parametrize("daemon", [DaemonBase, GatewayDaemon, MemberDaemon])
def test_no_log_event_is_about_an_unlogged_event(daemon: type[DaemonBase]) -> None:
    text = inspect.getsource(daemon.log_event)
    assert "ev." in text  # (the source is the method's own)
    for kind in UNLOGGED:
        assert f"ev.{kind.__name__}(" not in text, f"{daemon.__name__} logs {kind.__name__}"
