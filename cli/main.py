"""`lanon`: run the daemons, make keys, check configuration, watch a coalition, run the lab."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lanon.common import __version__
from lanon.common.errors import ConfigError, LanonError, PrerequisiteError

EXIT_ERROR, EXIT_CONFIG, EXIT_PREREQ = 1, 2, 3


def _run_daemon(args: argparse.Namespace, role: str) -> int:
    from lanon.common.daemon import setup_logging
    from lanon.common.daemon_config import load

    if role == "member":
        from lanon.member.config import MemberSettings as settings_class
        from lanon.member.daemon import MemberDaemon as daemon_class
    else:
        from lanon.gateway.config import GatewaySettings as settings_class  # type: ignore[assignment]
        from lanon.gateway.daemon import GatewayDaemon as daemon_class  # type: ignore[assignment]
    settings, loaded = load(settings_class, args.config, role)
    if args.check:
        print(
            f"{args.config}: {role} {settings.name} of coalition {loaded.coalition.coalition.name}: ok"
        )
        return 0
    setup_logging(settings.log_level, f"{role}[{settings.name}]")
    daemon_class(settings, loaded).run()
    return 0


def cmd_member(args: argparse.Namespace) -> int:
    if args.remove_rules:
        from lanon.member import rules

        rules.remove()
        print("lanon member rules removed: this host's traffic now leaves with its own address")
        return 0
    return _run_daemon(args, "member")


def cmd_gateway(args: argparse.Namespace) -> int:
    return _run_daemon(args, "gateway")


def cmd_keygen(args: argparse.Namespace) -> int:
    from lanon.common.crypto import HostKey, encode_key, write_private_key, write_public_key
    from lanon.common.settings import is_name

    expected = is_name(args.name)
    if expected:
        raise ConfigError(f"name {args.name!r}: expected {expected}")
    args.dir.mkdir(parents=True, exist_ok=True)
    private, public = args.dir / f"{args.name}.key", args.dir / f"{args.name}.pub"
    if private.exists():
        raise LanonError(
            f"{private} exists; not overwriting a key (remove it first if you mean to)"
        )
    key = HostKey.generate()
    write_private_key(private, key, args.name)
    write_public_key(public, key, args.name)
    print(f"private key: {private} (mode 0600)\npublic key:  {public}\n{encode_key(key.public)}")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from lanon.common import coalition as coalition_mod
    from lanon.common.daemon_config import load, read_toml
    from lanon.common.settings import resolve
    from lanon.gateway.config import GatewaySettings
    from lanon.member.config import MemberSettings

    raw = read_toml(args.file)
    if isinstance(raw.get("coalition"), dict):
        c = coalition_mod.load(args.file)
        print(
            f"{args.file}: coalition {c.coalition.name}: {len(c.members)} members, {len(c.gateways)} gateway(s), "
            f"{len(c.anonymous)} anonymous addresses, key graph {c.connectivity.k}-connected, "
            f"fingerprint {c.fingerprint.hex()}"
        )
        return 0
    if not isinstance(raw.get("coalition"), str) or not isinstance(raw.get("name"), str):
        raise ConfigError(
            f"{args.file}: neither a coalition file ([coalition] table) nor a daemon file (coalition = PATH, name = ...)"
        )
    c = coalition_mod.load(resolve(args.file.parent, raw["coalition"]))
    role = "member" if raw["name"] in {m.name for m in c.members} else "gateway"
    cls: Any = MemberSettings if role == "member" else GatewaySettings
    settings, _ = load(cls, args.file, role)
    print(f"{args.file}: {role} {settings.name} of coalition {c.coalition.name}: ok")
    return 0


def cmd_config_keys(args: argparse.Namespace) -> int:
    from lanon.common import coalition as c
    from lanon.common.settings import describe
    from lanon.gateway.config import GatewaySettings
    from lanon.member.config import MemberSettings

    groups = [
        (
            "coalition file",
            [
                ("[coalition] ", c.CoalitionSection),
                ("[rounds] ", c.RoundSection),
                ("[flows] ", c.FlowSection),
                ("[key_graph] ", c.KeyGraphSection),
                ("[[gateways]] ", c.GatewayEntry),
                ("[[members]] ", c.MemberEntry),
            ],
        ),
        ("daemon files", [("member: ", MemberSettings), ("gateway: ", GatewaySettings)]),
    ]
    for title, sections in groups:
        print(f"# {title}")
        for prefix, cls in sections:
            for key, default, text in describe(cls, prefix):
                print(f"{key} = {default}\n    {text}")
        print()
    return 0


def cmd_config_template(args: argparse.Namespace) -> int:
    from lanon.common.templates import template

    print(template(f"{args.kind}.toml"), end="")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from lanon.common import coalition as coalition_mod
    from lanon.common.settings import is_network
    from lanon.lab.configs import write_coalition

    members = [m for m in args.members.split(",") if m]
    gateways = []
    for item in args.gateways.split(","):
        name, _, share = item.partition("=")
        if not share or is_network(share):
            raise ConfigError(
                f"--gateways {item!r}: expected NAME=PREFIX, e.g. gateway1=198.18.0.192/30"
            )
        gateways.append((name, share))
    if args.dir.exists() and any(args.dir.iterdir()):
        raise LanonError(f"{args.dir} is not empty; choose a new directory")
    args.dir.mkdir(parents=True, exist_ok=True)
    write_coalition(args.dir, args.name, args.lan, gateways, members)
    c = coalition_mod.load(args.dir / "coalition.toml")  # what we wrote must hold
    print(
        f"coalition {c.coalition.name} in {args.dir}: {len(c.members)} members, "
        f"{len(c.gateways)} gateway(s), key graph {c.connectivity.k}-connected\n"
        f"  {args.dir}/coalition.toml    the shared file: give the same one to every host\n"
        f"  {args.dir}/<host>.toml       each host's daemon file\n"
        f"  {args.dir}/keys/<host>.key   each host's private key (mode 0600): move it to that host only\n"
        "On real hosts, prefer: each host runs 'lanon keygen' and you put the public keys in the "
        "coalition file (lanon config template coalition)."
    )
    return 0


def _table(rows: list[dict[str, Any]]) -> str:
    cols = ["host", "role", "state", "round rate", "members", "k", "collisions", "flows", "leader"]
    lines = [cols] + [[str(r.get(c, "-")) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(cols))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def summarize(st: dict[str, Any]) -> dict[str, Any]:
    if st.get("role") == "gateway":
        present = len(st.get("members_present", []))
        state = (
            "disbanded" if st.get("disbanded") else ("leading" if st.get("leading") else "standby")
        )
        return {
            "host": st["name"],
            "role": "gateway",
            "state": state,
            "round rate": f"{st['round_rate']}/s",
            "members": f"{present}/{len(st.get('members', {}))}",
            "k": st.get("k"),
            "collisions": st.get("reservation_collisions", 0) + st.get("data_collisions", 0),
            "flows": st.get("flows"),
            "leader": "yes" if st.get("leading") else "no",
        }
    return {
        "host": st["name"],
        "role": "member",
        "state": "in roster" if st.get("in_roster") else "joining",
        "round rate": f"{st['round_rate']}/s",
        "members": st.get("members"),
        "k": st.get("k"),
        "collisions": "-",
        "flows": st.get("flows"),
        "leader": "-",
    }


def cmd_status(args: argparse.Namespace) -> int:
    from lanon.common import control

    statuses = []
    if args.socket:
        statuses.append(control.query(args.socket))
    else:
        from lanon.lab.lab import Lab

        lab = Lab(args.lab)
        if not lab.hosts:
            raise LanonError(f"lab {args.lab!r} is not up; give --socket PATH for a daemon")
        for h in lab.gateways + lab.members:
            try:
                statuses.append(control.query(lab.socket_path(h.name)))
            except LanonError as exc:
                statuses.append({"name": h.name, "role": h.kind, "error": str(exc)})
    if args.json:
        print(json.dumps(statuses if len(statuses) > 1 else statuses[0], indent=1, sort_keys=True))
    else:
        ok = [s for s in statuses if "error" not in s]
        print(_table([summarize(s) for s in ok]))
        for s in statuses:
            if "error" in s:
                print(f"{s['name']}: {s['error']}")
    return 0


def cmd_lab_up(args: argparse.Namespace) -> int:
    from lanon.lab.lab import Lab, LabSpec

    lab = Lab(args.name)
    spec = LabSpec(
        args.name, args.members, args.gateways, prometheus=args.prometheus, schedule=args.schedule
    )
    lab.up(spec, progress=lambda m: print(f"lab {args.name}: {m}"))
    print(
        f"lab {args.name} is up. Try:\n  lanon lab exec member1 -- curl http://203.0.113.10/whoami\n"
        f"  lanon status\n  lanon lab down" + ("" if args.name == "lab" else f" --name {args.name}")
    )
    return 0


def cmd_lab_down(args: argparse.Namespace) -> int:
    from lanon.lab.lab import Lab, all_labs

    names = all_labs() if args.all else [args.name]
    for name in names:
        removed = Lab(name).down()
        print(f"lab {name}: removed {len(removed)} namespace(s)")
    return 0


def cmd_lab_exec(args: argparse.Namespace) -> int:
    import os

    from lanon.lab.lab import Lab

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise LanonError("lanon lab exec HOST -- COMMAND...: no command given")
    argv = Lab(args.name).argv(args.host, command)
    os.execvp(argv[0], argv)
    return EXIT_ERROR  # not reached


def cmd_lab_demo(args: argparse.Namespace) -> int:
    from lanon.lab.demo import run_demo

    return run_demo(args.members, args.gateways)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lanon",
        description="lanon: the hosts of one LAN share anonymous IP addresses through DC-net rounds.",
        epilog="Start with 'lanon lab demo' (as root) to see a coalition at work.",
    )
    ap.add_argument("--version", action="version", version=f"lanon {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "member",
        help="run the member daemon",
        description="Run the member daemon: capture this host's outbound Internet traffic (iptables NFQUEUE, fail-closed) and send it through DC-net rounds.",
    )
    p.add_argument("--config", type=Path, help="the member's TOML configuration file")
    p.add_argument("--check", action="store_true", help="check the configuration and exit")
    p.add_argument(
        "--remove-rules",
        action="store_true",
        help="remove the lanon iptables rules (the host sends with its own address again) and exit",
    )
    p.set_defaults(func=cmd_member)

    p = sub.add_parser(
        "gateway",
        help="run the gateway daemon",
        description="Run the gateway daemon: claim anonymous addresses, lead rounds, emit their output, broadcast replies.",
    )
    p.add_argument(
        "--config", type=Path, required=True, help="the gateway's TOML configuration file"
    )
    p.add_argument("--check", action="store_true", help="check the configuration and exit")
    p.set_defaults(func=cmd_gateway)

    p = sub.add_parser(
        "keygen",
        help="make a host key pair",
        description="Write NAME.key (private, mode 0600) and NAME.pub; print the public key for the coalition file.",
    )
    p.add_argument("name", help="the host's name in the coalition file")
    p.add_argument(
        "--dir", type=Path, default=Path("."), help="where to write the files (default: here)"
    )
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser(
        "init",
        help="make a whole coalition's keys and files",
        description="Make a coalition in DIR from the shipped templates: every host's key, the shared coalition file, every host's daemon file. For trials and demo setups; on real hosts each host makes its own key with 'lanon keygen'.",
    )
    p.add_argument("dir", type=Path, help="a new, empty directory")
    p.add_argument("--members", required=True, help="member names, comma-separated (at least 3)")
    p.add_argument(
        "--gateways",
        required=True,
        help="NAME=PREFIX per gateway, comma-separated, e.g. gateway1=198.18.0.192/30",
    )
    p.add_argument("--lan", default="198.18.0.0/24", help="the LAN prefix (default 198.18.0.0/24)")
    p.add_argument("--name", default="coalition", help="the coalition's name")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "config",
        help="check configuration files, print templates",
        description="Check configuration files without starting anything; print documented templates; list every setting.",
    )
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    c = csub.add_parser(
        "check",
        help="check a coalition or daemon file",
        description="Check a coalition file or a member/gateway file (with the coalition file and key it names).",
    )
    c.add_argument("file", type=Path)
    c.set_defaults(func=cmd_config_check)
    t = csub.add_parser(
        "template",
        help="print a documented template",
        description="Print the documented template of a coalition, member or gateway file (deploy/templates), to copy and edit.",
    )
    t.add_argument("kind", choices=["coalition", "member", "gateway"])
    t.set_defaults(func=cmd_config_template)
    k = csub.add_parser(
        "keys",
        help="list every setting",
        description="List every setting of the coalition and daemon files, with its default and meaning.",
    )
    k.set_defaults(func=cmd_config_keys)

    p = sub.add_parser(
        "status",
        help="show how a coalition is doing",
        description="Show role, round rate, members, k, collisions, flows and leader of running daemons.",
    )
    p.add_argument("--socket", type=Path, help="a daemon's control socket")
    p.add_argument(
        "--lab", default="lab", help="a lab's name (default: lab), when no --socket is given"
    )
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "lab",
        help="a whole coalition in network namespaces",
        description="A LAN (bridge), members, gateways, a border router and an Internet host, in network namespaces on this machine (root).",
    )
    lsub = p.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    u = lsub.add_parser(
        "up",
        help="build the lab and start the lanon",
        description="Build the lab and start the lanon; return when it runs rounds with every member.",
    )
    u.add_argument("--members", type=int, default=3, help="members (default 3)")
    u.add_argument("--gateways", type=int, default=1, help="gateways (default 1)")
    u.add_argument(
        "--name", default="lab", help="lab name, part of every namespace name (default: lab)"
    )
    u.add_argument(
        "--schedule",
        choices=["star", "tree"],
        default="star",
        help="how contributions reach the leader (default star; tree: a reduction tree)",
    )
    u.add_argument(
        "--prometheus",
        action="store_true",
        help="also run Prometheus (deploy/prometheus) on the switch, scraping every daemon",
    )
    u.set_defaults(func=cmd_lab_up)
    d = lsub.add_parser(
        "down",
        help="stop and remove a lab",
        description="Stop every process of the lab and remove its namespaces (also after a crash).",
    )
    d.add_argument("--name", default="lab")
    d.add_argument("--all", action="store_true", help="every lab on this machine")
    d.set_defaults(func=cmd_lab_down)
    e = lsub.add_parser(
        "exec",
        help="run a command in a lab host",
        description="Run COMMAND in HOST: member1.., gateway1.., router or internet.",
    )
    e.add_argument("host")
    e.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    e.add_argument("--name", default="lab")
    e.set_defaults(func=cmd_lab_exec)
    m = lsub.add_parser(
        "demo",
        help="bring a lab up, use it, tear it down",
        description="Bring a lab up, fetch a page from the Internet host through every member, show what the server saw, tear down.",
    )
    m.add_argument("--members", type=int, default=3)
    m.add_argument("--gateways", type=int, default=1)
    m.set_defaults(func=cmd_lab_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "member" and not args.remove_rules and args.config is None:
        build_parser().parse_args(["member", "--help"])
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"lanon: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except PrerequisiteError as exc:
        print(f"lanon: {exc}", file=sys.stderr)
        return EXIT_PREREQ
    except LanonError as exc:
        print(f"lanon: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
