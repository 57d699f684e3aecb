"""Exceptions of lanon.

LanonError
├── ConfigError            bad configuration or key file: a user mistake, shown without traceback
├── LocalProtocolError     we misused an engine: a bug in lanon
└── RemoteProtocolError    a peer sent something we reject: counted, dropped, never fatal
    (also a ValueError, so codec read errors are ValueErrors as in aioquic)
PrerequisiteError          the machine lacks something lanon needs (root, a kernel feature, a tool)
"""

from __future__ import annotations

import enum


class LanonError(Exception):
    """Base of every error lanon raises on purpose."""


class ConfigError(LanonError):
    """A configuration or key file is wrong; the message names file, key, value and expectation."""


class LocalProtocolError(LanonError):
    """An engine was used wrongly by our own code."""


class RejectReason(enum.Enum):
    """Why a received frame was dropped; bounded, used as a metric label."""

    MALFORMED = "malformed"
    FOREIGN = "foreign"  # another coalition, or a version we do not speak
    NOT_IN_ROSTER = "not_in_roster"
    BAD_AUTH = "bad_auth"
    REPLAY = "replay"
    STALE = "stale"  # a round or frame that is no longer current
    UNEXPECTED = "unexpected"  # a valid frame that this role does not take
    RATE_LIMITED = "rate_limited"  # its source asked for more signature checks than it may


class RemoteProtocolError(LanonError, ValueError):
    """A frame or packet from the network is unacceptable."""

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason


class PrerequisiteError(LanonError):
    """Something the host must provide is missing; the message says what and how to get it."""
