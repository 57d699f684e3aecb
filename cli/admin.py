"""`lanon admin`, `lanon join`, `lanon rekey`: coalition versions from the command line.

An administrator works on a gateway host (or any host that reaches a gateway's control
socket): `pending` lists the hosts asking to join, `approve` and `remove` make the next
version, sign it and hand it to the gateway, which repeats it on the LAN; every host applies it
without a restart. `show`, `sign` and `publish` are for edits by hand and for coalitions that
need more than one signature. A new host runs `lanon join` once (key, request); a host that
wants a new key runs `lanon rekey`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from lanon.common.errors import LanonError


def _gateway_socket(args: argparse.Namespace) -> Path:
    """The control socket of a gateway: --socket, this host's gateway, or the lab's first."""
    from lanon.cli.main import _status_targets

    for _name, role, sock in _status_targets(args):
        if role != "member" and (role == "gateway" or sock.stem.startswith("gateway")):
            return sock
    targets = _status_targets(args)
    if args.socket:
        return targets[0][2]
    raise LanonError("no gateway's control socket found: give --socket PATH or --lab NAME")


def _admin_key(args: argparse.Namespace) -> Any:
    from lanon.common.crypto import read_private_key

    return read_private_key(args.key)


def cmd_pending(args: argparse.Namespace) -> int:
    from lanon.common import admin_client

    requests = admin_client.pending(_gateway_socket(args))
    if args.json:
        import json

        print(json.dumps(requests, indent=1, sort_keys=True))
        return 0
    if not requests:
        print("no host asks to join")
        return 0
    for r in requests:
        what = f"a new key, replacing {r['replaces']}" if r["replaces"] else "to join"
        print(
            f"{r['name']}: asks {what}\n  public key {r['public_key']}\n"
            f"  waiting {r['waiting']:.0f} s (last heard {r['last_heard']:.0f} s ago)"
        )
    print(
        "Compare each key with its host's (lanon join printed it there), then: lanon admin approve NAME"
    )
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from lanon.common import admin_client

    c = admin_client.approve(
        _gateway_socket(args), args.name, _admin_key(args), public=args.public, address=args.address
    )
    print(f"version {c.version} of coalition {c.coalition.name} is out: {args.name} is in it")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from lanon.common import admin_client

    c = admin_client.remove(_gateway_socket(args), args.name, _admin_key(args))
    print(
        f"version {c.version} of coalition {c.coalition.name} is out: {args.name} is removed "
        f"({len(c.members)} members{'; ' + c.shortfall if c.shortfall else ''})"
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from lanon.common import admin_client

    sys.stdout.write(admin_client.current(_gateway_socket(args)).text)
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from lanon.common import admin
    from lanon.common.coalition import loads

    text = args.file.read_text()
    if args.next:
        text = admin.next_version(text, args.file)
    text = admin.sign(text, args.file, _admin_key(args))
    args.file.write_text(text)
    c = loads(text, args.file, signatures=False)
    print(f"{args.file}: version {c.version} signed ({c.threshold} signature(s) needed)")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from lanon.common import admin_client
    from lanon.common.coalition import load

    c = load(args.file)  # checked here first: signatures and all
    admin_client.publish(_gateway_socket(args), args.file.read_text())
    print(f"version {c.version} of coalition {c.coalition.name} is out")
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    """Make this host's key if it has none, and ask to join on the LAN (the daemon, once
    started, goes on asking until a version lists it)."""
    from lanon.common import coalition as coalition_mod
    from lanon.common import wire
    from lanon.common.crypto import (
        HostKey,
        encode_key,
        read_private_key,
        write_private_key,
        write_public_key,
    )
    from lanon.common.daemon_config import read_toml
    from lanon.common.rawsock import LinkSocket
    from lanon.common.settings import load_table, resolve
    from lanon.common.versions import join_frame
    from lanon.member.config import MemberSettings

    settings = load_table(MemberSettings, read_toml(args.config), str(args.config))
    base = args.config.parent
    c = coalition_mod.load(resolve(base, settings.coalition))
    if not c.versioned:
        raise LanonError(
            f"{c.path} has no [admin]: hosts join it by a new file on every host, not by asking"
        )
    key_path = resolve(base, settings.private_key)
    if key_path.exists():
        key = read_private_key(key_path)
    else:
        key = HostKey.generate()
        write_private_key(key_path, key, settings.name)
        write_public_key(key_path.with_suffix(".pub"), key, settings.name)
    if any(m.name == settings.name and m.public == key.public for m in c.members):
        print(f"{settings.name} is a member of {c.coalition.name} already (version {c.version})")
        return 0
    sock = LinkSocket(settings.interface, wire.ETHERTYPE)
    try:
        for _ in range(args.repeat):
            frame = join_frame(c, settings.name, key, int(time.time() * 1000), None)
            sock.send(wire.BROADCAST, frame)
            time.sleep(0.2)
    finally:
        sock.close()
    print(
        f"{settings.name} asks to join coalition {c.coalition.name} with public key\n"
        f"  {encode_key(key.public)}\n"
        "Tell the administrator this key; once approved (lanon admin approve), the member "
        "daemon takes part without a restart. Started now, it goes on asking."
    )
    return 0


def cmd_rekey(args: argparse.Namespace) -> int:
    """Make a new key beside the member's (KEY.next) and have its daemon ask for it: signed
    by both keys, so that the administrator can approve it (lanon admin approve NAME); the
    version that gives it replaces the old key, without a restart."""
    from lanon.cli.main import _key_owner
    from lanon.common import control
    from lanon.common.crypto import HostKey, encode_key, write_private_key
    from lanon.common.daemon_config import control_path, next_key_path, read_toml
    from lanon.common.errors import ConfigError
    from lanon.common.settings import load_table, resolve
    from lanon.gateway.config import GatewaySettings
    from lanon.member.config import MemberSettings

    raw = read_toml(args.config)
    settings: MemberSettings | GatewaySettings
    try:
        settings = load_table(MemberSettings, raw, str(args.config))
    except ConfigError:
        settings = load_table(GatewaySettings, raw, str(args.config))
    base = args.config.parent
    path = next_key_path(resolve(base, settings.private_key))
    if path.exists():
        raise LanonError(f"{path} exists: a new key waits for its version already")
    owner, note = _key_owner(None)
    key = HostKey.generate()
    write_private_key(path, key, f"{settings.name} (next)")
    if owner is not None:
        import os

        os.chown(path, owner.pw_uid, owner.pw_gid)
    print(f"new key of {settings.name}: {encode_key(key.public)} (in {path})")
    if note:
        print(note, file=sys.stderr)
    sock = control_path(settings, base)
    try:
        if sock is None:
            raise LanonError("no control socket")
        answer = control.query(sock, "rekey")
        if "error" in answer:
            raise LanonError(answer["error"])
        print("the daemon asks for it; then: lanon admin approve " + settings.name)
    except LanonError as exc:
        print(f"the daemon was not told ({exc}): it asks for the key once started")
    return 0


def add_parsers(sub: Any) -> None:
    def target(p: argparse.ArgumentParser) -> None:
        p.add_argument("--socket", type=Path, help="a gateway's control socket")
        p.add_argument("--lab", help="the gateways of a lab")

    p = sub.add_parser(
        "admin",
        help="coalition versions: join requests, approve, remove, sign, publish",
        description="Change a running coalition with a signed version (its [admin] keys): "
        "every host applies it without a restart.",
    )
    asub = p.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    a = asub.add_parser("pending", help="hosts asking to join (or for a new key)")
    target(a)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_pending)
    a = asub.add_parser("approve", help="add a host that asks (or give it the key it asks for)")
    a.add_argument("name")
    a.add_argument("--key", type=Path, required=True, help="your administrator key")
    a.add_argument("--public", help="which key, when the name asked with several")
    a.add_argument("--address", default="", help="its LAN address, for the coalition file")
    target(a)
    a.set_defaults(func=cmd_approve)
    a = asub.add_parser("remove", help="remove a member (it takes no part from then on)")
    a.add_argument("name")
    a.add_argument("--key", type=Path, required=True, help="your administrator key")
    target(a)
    a.set_defaults(func=cmd_remove)
    a = asub.add_parser("show", help="print the coalition file a gateway runs")
    target(a)
    a.set_defaults(func=cmd_show)
    a = asub.add_parser("sign", help="sign a coalition file (in place)")
    a.add_argument("file", type=Path)
    a.add_argument("--key", type=Path, required=True, help="your administrator key")
    a.add_argument("--next", action="store_true", help="raise its version first (a new edit)")
    a.set_defaults(func=cmd_sign)
    a = asub.add_parser("publish", help="hand a signed version to a gateway (it goes out)")
    a.add_argument("file", type=Path)
    target(a)
    a.set_defaults(func=cmd_publish)

    p = sub.add_parser(
        "join",
        help="make this host's key and ask to join a coalition",
        description="Make the member's key (if it has none) and ask, on the LAN, to be added "
        "to the coalition; prints the key to give the administrator.",
    )
    p.add_argument("--config", type=Path, required=True, help="the member's TOML file")
    p.add_argument("--repeat", type=int, default=3, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_join)

    p = sub.add_parser(
        "rekey",
        help="make a new key for this host and ask for it",
        description="Make a new key beside the host's (KEY.next); the daemon asks for it, "
        "signed by both keys. Once the administrator approves, the version that gives it "
        "replaces the old key: no restart.",
    )
    p.add_argument("--config", type=Path, required=True, help="the member's or gateway's file")
    p.set_defaults(func=cmd_rekey)
