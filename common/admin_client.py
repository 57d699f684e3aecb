"""An administrator's commands to a running gateway, over its control socket: the version it
runs, the hosts asking to join, a new version to publish (lanon admin, lanon lab join/leave).
The gateway verifies what it is given like anything heard on the LAN, applies it and repeats
it to every host."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from lanon.common import admin, control
from lanon.common.coalition import Coalition, loads
from lanon.common.crypto import HostKey, decode_public_key
from lanon.common.errors import LanonError


def current(sock: Path) -> Coalition:
    """The coalition the gateway runs (its signatures checked here too)."""
    answer = control.query(sock, "coalition")
    if "text" not in answer:
        raise LanonError(f"{sock}: {answer.get('error', answer)}")
    return loads(answer["text"], Path(answer["path"]))


def pending(sock: Path) -> list[dict[str, Any]]:
    answer = control.query(sock, "pending")
    if "pending" not in answer:
        raise LanonError(f"{sock}: {answer.get('error', answer)}")
    requests: list[dict[str, Any]] = answer["pending"]
    return requests


def publish(sock: Path, text: str) -> dict[str, Any]:
    """Give the gateway a signed version; its answer: applied, or refused and why."""
    request = "publish " + base64.b64encode(text.encode()).decode()
    answer = control.query(sock, request, timeout=10.0)
    if answer.get("outcome") != "applied":
        raise LanonError(
            f"the gateway did not apply it: {answer.get('outcome', '')} "
            f"{answer.get('detail') or answer.get('error', '')}".strip()
        )
    return answer


def approve(
    sock: Path, name: str, key: HostKey, *, public: str | None = None, address: str = ""
) -> Coalition:
    """Add the host that asks to join as `name` (or give `name` the key it asks for), in a
    new version signed with `key`; published. `public` picks one of several requests, or
    names the key without a request (its owner gave it: a flood of requests cannot hide it)."""
    c = current(sock)
    asks = [r for r in pending(sock) if r["name"] == name]
    if public is not None:
        asks = [r for r in asks if r["public_key"] == public]
    if not asks and public is not None:
        asks = [{"name": name, "public_key": public}]  # its key, given by its owner in person
    if not asks:
        raise LanonError(
            f"no pending request from {name!r} (lanon admin pending lists them; --public KEY "
            "adds a key its owner gave you)"
        )
    if len(asks) > 1:
        keys = ", ".join(r["public_key"] for r in asks)
        raise LanonError(f"{name!r} asked with {len(asks)} keys ({keys}): pick one with --public")
    [ask] = asks
    new_key = decode_public_key(ask["public_key"], f"request of {name}")
    listed = {m.name for m in c.members} | {g.name for g in c.gateways}
    if name in listed:
        text = admin.key_replaced(c, name, new_key)
    else:
        text = admin.member_added(c, name, new_key, address)
    return _sign_and_publish(sock, text, c, key)


def remove(sock: Path, name: str, key: HostKey) -> Coalition:
    c = current(sock)
    return _sign_and_publish(sock, admin.member_removed(c, name), c, key)


def _sign_and_publish(sock: Path, text: str, c: Coalition, key: HostKey) -> Coalition:
    signed = admin.sign(text, c.path, key)
    new = loads(signed, c.path, signatures=False)
    if new.threshold > 1:
        raise LanonError(
            f"version {new.version} needs {new.threshold} signatures: write it to a file "
            "(lanon admin sign), have the others sign it, then lanon admin publish"
        )
    publish(sock, signed)
    return loads(signed, c.path)
