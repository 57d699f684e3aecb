"""`lanon`: run the daemons, make keys, check configuration, watch a coalition, run the lab."""

from __future__ import annotations

import argparse
import json
import logging
import os
import pwd
import sys
from pathlib import Path
from typing import Any

from lanon.cli import admin as admin_cli
from lanon.common import __version__
from lanon.common.errors import ConfigError, LanonError, PrerequisiteError
from lanon.common.wire import VERSION as WIRE_VERSION

EXIT_ERROR, EXIT_CONFIG, EXIT_PREREQ = 1, 2, 3
DAEMON_USER = "lanon"  # the user the units run the daemons as


def _run_daemon(args: argparse.Namespace, role: str) -> int:
    from lanon.common.daemon import setup_logging
    from lanon.common.daemon_config import load

    if role == "member":
        from lanon.member import rules
        from lanon.member.config import MemberSettings as settings_class
        from lanon.member.daemon import MemberDaemon as daemon_class
    else:
        from lanon.gateway import rules  # type: ignore[no-redef]
        from lanon.gateway.config import GatewaySettings as settings_class  # type: ignore[assignment]
        from lanon.gateway.daemon import GatewayDaemon as daemon_class  # type: ignore[assignment]
    if not args.check:
        # The rules first, from the least of the configuration, before the key or anything
        # else that can fail is read; they stay whatever happens next (fail-closed).
        setup_logging("info", role)
        rules.install_first(args.config, logging.getLogger(f"lanon.{role}"))
    settings, loaded = load(settings_class, args.config, role)
    _check_services(settings, loaded.coalition, args.config)
    cipher = loaded.coalition.coalition.inbound_cipher
    why = cipher.missing()
    if why is not None:
        raise PrerequisiteError(
            f"{loaded.coalition.path}: [coalition] inbound_cipher = '{cipher.value}' cannot run "
            f"here: {why} (or every host's coalition file says 'chacha20-poly1305', which runs "
            "anywhere: a new coalition)"
        )
    if args.check:
        print(
            f"{args.config}: {role} {settings.name} of coalition {loaded.coalition.coalition.name}: ok"
        )
        return 0
    setup_logging(settings.log_level, f"{role}[{settings.name}]")
    daemon_class(settings, loaded).run()
    return 0


def _check_services(settings: Any, coalition: Any, path: Path) -> None:
    """A member's [[services]] against the coalition (pinned endpoints and their keys)."""
    from lanon.member.config import MemberSettings
    from lanon.member.services import offers

    if isinstance(settings, MemberSettings):
        offers(settings.services, coalition, path.parent, str(path))


def cmd_member(args: argparse.Namespace) -> int:
    if args.remove_rules:
        from lanon.member import rules

        rules.remove()
        print("lanon member rules removed: this host's traffic now leaves with its own address")
        return 0
    return _run_daemon(args, "member")


def cmd_gateway(args: argparse.Namespace) -> int:
    return _run_daemon(args, "gateway")


def cmd_rules(args: argparse.Namespace) -> int:
    """`lanon rules install|check ROLE`: what the boot unit lanon-rules@ROLE runs (as root)."""
    from lanon.common import iptables

    config = args.config or Path(f"/etc/lanon/{args.role}.toml")
    rulesets: tuple[iptables.RuleSet, ...]
    if args.role == "member":
        from lanon.member import rules as member_rules

        if args.closed:
            if args.action == "install":
                member_rules.install(None)
            rulesets = member_rules.closed()
            what = "closed: nothing leaves but loopback, broadcast, multicast, link-local"
        else:
            try:
                own, _ = member_rules.from_config(config)
            except ConfigError as exc:
                if args.action == "check":
                    ok = member_rules.in_place()
                    print(f"lanon: {exc}; lanon rules {'in place' if ok else 'MISSING'}")
                    return 0 if ok else EXIT_ERROR
                print(f"lanon: configuration error: {exc}; {member_rules.fall_back()}")
                return EXIT_CONFIG
            if args.action == "install":
                member_rules.install(own)
            rulesets = own.rulesets()
            what = f"traffic beyond {own.lan} to NFQUEUE {own.queue}, fail-closed"
    else:
        from lanon.gateway import rules as gateway_rules

        if args.closed:
            raise LanonError("--closed: only a member has closed rules")
        prefixes = gateway_rules.from_config(config)
        if args.action == "install":
            gateway_rules.install(prefixes)
        rulesets = gateway_rules.rulesets(prefixes)
        what = f"this host's stack kept away from {len(prefixes)} anonymous addresses"
    if args.action == "install":
        print(f"lanon {args.role} rules installed ({what})")
        return 0
    ok = iptables.intact(rulesets)
    print(f"lanon {args.role} rules ({what}): {'in place' if ok else 'MISSING or altered'}")
    return 0 if ok else EXIT_ERROR


def cmd_keygen(args: argparse.Namespace) -> int:
    from lanon.common.crypto import HostKey, encode_key, write_private_key, write_public_key
    from lanon.common.settings import is_name

    expected = is_name(args.name)
    if expected:
        raise ConfigError(f"name {args.name!r}: expected {expected}")
    owner, note = _key_owner(args.owner)
    args.dir.mkdir(parents=True, exist_ok=True)
    private, public = args.dir / f"{args.name}.key", args.dir / f"{args.name}.pub"
    if private.exists():
        raise LanonError(
            f"{private} exists; not overwriting a key (remove it first if you mean to)"
        )
    key = HostKey.generate()
    write_private_key(private, key, args.name)
    write_public_key(public, key, args.name)
    if owner is not None:
        for path in (private, public):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    whose = f"owned by {owner.pw_name}" if owner is not None else f"owned by {_user_name()}"
    print(
        f"private key: {private} (mode 0600, {whose})\npublic key:  {public}\n"
        f"{encode_key(key.public)}"
    )
    if note:
        print(note, file=sys.stderr)
    return 0


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _key_owner(wanted: str | None) -> tuple[pwd.struct_passwd | None, str]:
    """Who the new key should belong to, and a note if it is not what the daemon will need.

    The daemons run as user lanon and refuse keys that others can read: a key made by root
    must be handed to lanon. Without --owner, root hands it over if the user exists."""
    name = wanted or DAEMON_USER
    try:
        owner = pwd.getpwnam(name)
    except KeyError:
        if wanted:
            raise LanonError(
                f"--owner {wanted}: no such user (the units' user is made by "
                "'systemd-sysusers' once 'lanon deploy install' has run)"
            ) from None
        owner = None
    if owner is not None and owner.pw_uid == os.geteuid():
        return None, ""
    if os.geteuid() != 0:
        if wanted:
            raise LanonError(f"--owner {wanted}: only root can give a file to another user")
        return None, ""  # an ordinary user's key, for its own daemon or a trial
    if owner is None:
        return None, (
            f"note: the key belongs to root, but the units run the daemon as user "
            f"{DAEMON_USER}, which does not exist yet: create it (systemd-sysusers), then "
            f"'chown {DAEMON_USER}: KEY', or run 'lanon keygen --owner USER' for another user"
        )
    return owner, ""


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
        for warning in coalition_mod.warnings(c):
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    if not isinstance(raw.get("coalition"), str) or not isinstance(raw.get("name"), str):
        raise ConfigError(
            f"{args.file}: neither a coalition file ([coalition] table) nor a daemon file (coalition = PATH, name = ...)"
        )
    c = coalition_mod.load(resolve(args.file.parent, raw["coalition"]))
    role = "member" if raw["name"] in {m.name for m in c.members} else "gateway"
    cls: Any = MemberSettings if role == "member" else GatewaySettings
    settings, loaded = load(cls, args.file, role)
    _check_services(settings, loaded.coalition, args.file)
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
                ("[egress] ", c.EgressSection),
                ("[providers] ", c.ProvidersSection),
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
    from lanon.common.templates import write_coalition

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
    sections: dict[str, dict[str, Any]] = {}
    admin_key = None
    if args.admin:
        from lanon.common.crypto import HostKey, encode_key, write_private_key

        admin_key = HostKey.generate()
        sections = {"coalition": {"version": 1}, "admin": {"keys": [encode_key(admin_key.public)]}}
    write_coalition(args.dir, args.name, args.lan, gateways, members, sections=sections)
    path = args.dir / "coalition.toml"
    if admin_key is not None:
        from lanon.common.admin import sign

        write_private_key(
            args.dir / "keys" / "admin.key", admin_key, f"administrator of {args.name}"
        )
        path.write_text(sign(path.read_text(), path, admin_key))
    c = coalition_mod.load(path)  # what we wrote must hold
    print(
        f"coalition {c.coalition.name} in {args.dir}: {len(c.members)} members, "
        f"{len(c.gateways)} gateway(s), key graph {c.connectivity.k}-connected\n"
        f"  {args.dir}/coalition.toml    the shared file: give the same one to every host\n"
        f"  {args.dir}/<host>.toml       each host's daemon file\n"
        f"  {args.dir}/keys/<host>.key   each host's private key (mode 0600): move it to that host only\n"
        + (
            f"  {args.dir}/keys/admin.key    the administrator's key (lanon admin): keep it off the hosts\n"
            if admin_key is not None
            else ""
        )
        + "On real hosts, prefer: each host runs 'lanon keygen' and you put the public keys in the "
        "coalition file (lanon config template coalition)."
    )
    return 0


def _table(rows: list[dict[str, Any]]) -> str:
    cols = ["host", "role", "state", "round rate", "members", "k", "collisions", "flows", "leader"]
    return _grid(cols, [[str(r.get(c, "-")) for c in cols] for r in rows])


def summarize(st: dict[str, Any]) -> dict[str, Any]:
    if st.get("role") == "gateway":
        present = len(st.get("members_present", []))
        state = st.get("state") or (
            "paused" if st.get("disbanded") else ("leading" if st.get("leading") else "standby")
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
    heard = st.get("members_heard")
    return {
        "host": st["name"],
        "role": "member",
        "state": st.get("state") or ("running" if st.get("in_roster") else "joining"),
        "round rate": f"{st['round_rate']}/s",
        "members": st.get("members") if heard is None else f"{heard}/{st.get('members')}",
        "k": st.get("k"),
        "collisions": "-",
        "flows": st.get("flows"),
        "leader": "-",
    }


def describe_status(statuses: list[dict[str, Any]]) -> str:
    """The table, then what needs saying: each daemon's condition unless all is well, and
    which coalition file and version each runs (hosts that differ refuse each other)."""
    ok = [s for s in statuses if "error" not in s]
    lines = [_table([summarize(s) for s in ok])] if ok else []
    for s in ok:
        if s.get("state") not in (None, "running", "leading", "standby"):
            lines.append(f"{s['name']}: {s.get('condition', s['state'])}")
        if s.get("corrupted_slots"):
            lines.append(
                f"{s['name']}: {s['corrupted_slots']} reserved slots of ours emerged corrupted: "
                "a member writes into slots not its own (this member accused it, anonymously)"
            )
        blame = s.get("blame") or {}
        if blame.get("excluded"):
            lines.append(
                f"{s['name']}: excluded after blame: {', '.join(blame['excluded'])} (lanon "
                "readmit NAME on a gateway lets one back in)"
            )
        if blame.get("held_out"):
            lines.append(
                f"{s['name']}: silent when blame asked, out for the rest of the epoch: "
                f"{', '.join(blame['held_out'])}"
            )
        refuted = (blame.get("verdicts") or {}).get("refuted")
        if refuted:
            lines.append(
                f"{s['name']}: {refuted} blame verdicts did not hold against their evidence: "
                "the leading gateway named members it should not have"
            )
        if s.get("pending"):
            lines.append(
                f"{s['name']}: {len(s['pending'])} host(s) ask to join: "
                f"{', '.join(r['name'] for r in s['pending'])} (lanon admin pending)"
            )
        if s.get("shortfall"):
            lines.append(f"{s['name']}: this version cannot run rounds: {s['shortfall']}")
        for svc in s.get("services") or []:  # a member's own: only its own socket says them
            at = svc["endpoint"] or f"no endpoint ({svc['refused'] or svc['state']})"
            lines.append(
                f"{s['name']}: service {svc['name']} ({svc['protocol']} port {svc['port']}) at {at}"
            )
    for s in statuses:
        if "error" in s:
            lines.append(f"{s['name']}: {s['error']}")
    if any(s.get("mode") == "trusted" for s in ok):
        lines.append(
            "trusted-gateway mode: the gateways know which member sends each packet (the "
            "switch and the Internet do not)"
        )
    runs: dict[tuple[str, str, str, str, str], list[str]] = {}
    for s in ok:
        key = (
            s.get("coalition", "?"),
            str(s.get("coalition_version", 0)),
            s.get("fingerprint", "?")[:16],
            s.get("version", "?"),
            str(s.get("wire_version", "?")),
        )
        runs.setdefault(key, []).append(s["name"])
    for (coalition, cversion, fingerprint, version, wire_version), names in sorted(runs.items()):
        who = "" if len(runs) == 1 else f" ({', '.join(names)})"
        numbered = f" version {cversion}" if cversion != "0" else ""
        lines.append(
            f"coalition {coalition}{numbered}, fingerprint {fingerprint}, lanon {version}, "
            f"wire version {wire_version}{who}"
        )
    if len(runs) > 1:
        versions = {k[1] for k in runs}
        if len(versions) > 1 and len({k[0] for k in runs}) == 1 and "0" not in versions:
            lines.append(
                "these daemons run different versions of the coalition file: a host behind "
                "applies the newest when a gateway repeats it (every 2 s); one that stays "
                "behind could not verify it (its log says why)"
            )
        else:
            lines.append(
                "these daemons run different coalition files or versions: they refuse each other"
            )
    return "\n".join(lines)


def _status_targets(args: argparse.Namespace) -> list[tuple[str, str, Path]]:
    """(name, role, socket) of the daemons to ask: --socket, else this host's daemons (the
    units' sockets in /run/lanon), else the lab's."""
    from lanon.common import control

    if args.socket:
        return [(str(args.socket), "-", args.socket)]
    if args.lab is None:
        found = control.find_sockets()
        if found:
            return [(p.stem, "-", p) for p in found]
    from lanon.lab.lab import Lab

    lab = Lab(args.lab or "lab")
    if not lab.hosts:
        if args.lab is None:
            raise LanonError(
                f"no daemon's control socket in {control.DEFAULT_DIR} (is a daemon running, "
                "with control_socket set?); give --socket PATH"
            )
        raise LanonError(f"lab {args.lab!r} is not up; give --socket PATH for a daemon")
    return [(h.name, h.kind, lab.socket_path(h.name)) for h in lab.gateways + lab.members]


def cmd_status(args: argparse.Namespace) -> int:
    from lanon.common import control

    statuses = []
    targets = _status_targets(args)
    for name, role, sock in targets:
        try:
            statuses.append(control.query(sock))
        except LanonError as exc:
            if len(targets) == 1:
                raise
            statuses.append({"name": name, "role": role, "error": str(exc)})
    if args.json:
        print(json.dumps(statuses if len(statuses) > 1 else statuses[0], indent=1, sort_keys=True))
    else:
        print(describe_status(statuses))
    return 0


def _grid(cols: list[str], rows: list[list[str]]) -> str:
    lines = [cols, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(cols))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _num(v: Any, fmt: str = "{:g}") -> str:
    return "-" if v is None else fmt.format(v)


def describe_providers(statuses: list[dict[str, Any]]) -> str:
    """Each member's view of the providers: price, what it measured, ratings, score, choice."""
    out = []
    for st in statuses:
        if "error" in st:
            out.append(f"{st['name']}: {st['error']}")
            continue
        p = st.get("providers")
        if st.get("role") != "member" or p is None:
            continue
        unit = p["unit"]
        out.append(f"{st['name']}: chose {p['choice'] or 'no provider'} ({p['reason']})")
        cols = ["provider", f"{unit}/GB", f"{unit}/month", "rtt ms", "loss", "avail"]
        cols += ["rating", "crowd", "score", "choice"]
        rows = []
        for r in p["providers"]:
            o = r["offer"] or {}
            mark = "chosen" if r["chosen"] else (f"refused: {r['refused']}" if r["refused"] else "")
            if o.get("next"):
                mark = (mark + f" (from {o['next']['at_ms']}: {o['next']['per_gb']:g}/GB)").strip()
            rating = _num(r["rating"], "{:.2f}") + (f" ({r['ratings']})" if r["ratings"] else "")
            rows.append(
                [
                    r["operator"],
                    _num(o.get("per_gb")),
                    _num(o.get("per_month")),
                    _num(r["rtt_ms"], "{:.1f}"),
                    _num(r["loss"], "{:.0%}"),
                    _num(r["availability"], "{:.0%}"),
                    rating,
                    _num(r["crowd"], "{}"),
                    f"{r['score']:.2f}" if o else "-",
                    mark,
                ]
            )
        out.append(_grid(cols, rows))
        tokens = p.get("tokens")
        if tokens:
            held = ", ".join(
                f"{k}: {v['held']} held, {v['spent']} spent" for k, v in tokens.items()
            )
            out.append(f"  tokens: {held}")
        out.append("")
    return "\n".join(out).rstrip() or "no member daemon answered"


def cmd_providers(args: argparse.Namespace) -> int:
    from lanon.common import control

    statuses = []
    targets = _status_targets(args)
    for name, role, sock in targets:
        if role not in ("member", "-"):
            continue
        try:
            st = control.query(sock)
        except LanonError as exc:
            if len(targets) == 1:
                raise
            st = {"name": name, "role": role, "error": str(exc)}
        statuses.append(st)
    if args.json:
        views = [
            {"name": s["name"], **({"error": s["error"]} if "error" in s else s["providers"])}
            for s in statuses
            if "error" in s or s.get("role") == "member"
        ]
        print(json.dumps(views, indent=1, sort_keys=True))
    else:
        print(describe_providers(statuses))
    return 0


def cmd_provider_keygen(args: argparse.Namespace) -> int:
    """An operator's token key: every gateway of the operator is given the same file."""
    from lanon.common import blindrsa
    from lanon.gateway.provider import TOKEN_KEY_BITS, write_token_key

    if args.file.exists():
        raise LanonError(
            f"{args.file} exists; not overwriting a key (remove it first if you mean to)"
        )
    key = blindrsa.generate(TOKEN_KEY_BITS)
    write_token_key(args.file, key, args.comment or args.file.stem)
    kid = blindrsa.key_id(key.public_key).hex()
    print(f"token key: {args.file} (mode 0600; RSA {TOKEN_KEY_BITS}, RFC 9474), id {kid}")
    print("give it to every gateway of the operator: [offer] token_key in gateway.toml")
    return 0


def cmd_agency_rate(args: argparse.Namespace) -> int:
    """A rating agency's signed rating of providers for the current period, as hex: what
    'lanon providers publish' hands a gateway to pass on."""
    import time

    from lanon.common.coalition import load as load_coalition
    from lanon.common.crypto import read_private_key
    from lanon.common.tokens import Rating, agency_signed, agency_statement

    c = load_coalition(args.coalition)
    key = read_private_key(args.key)
    operators = {g.operator for g in c.gateways}
    scores = []
    for item in args.scores:
        name, _, value = item.partition("=")
        if name not in operators or not value.isdigit() or int(value) > 100:
            raise LanonError(
                f"{item!r}: expected OPERATOR=SCORE, SCORE 0 to 100, OPERATOR one of "
                f"{', '.join(sorted(operators))}"
            )
        scores.append((name, int(value)))
    rating = Rating(int(time.time() // c.providers.rating_period), tuple(scores))
    signature = key.sign(agency_signed(rating.encode(), key.public))
    print(agency_statement(rating, key.public, signature).hex())
    return 0


def cmd_providers_publish(args: argparse.Namespace) -> int:
    from lanon.common import control

    targets = [t for t in _status_targets(args) if t[1] in ("gateway", "-")][:1]
    if not targets:
        raise LanonError("no gateway to hand the rating to; give --socket PATH")
    name, _role, sock = targets[0]
    answer = control.query(sock, f"agency {args.statement.strip()}")
    if "error" in answer:
        raise LanonError(f"{name}: {answer['error']}")
    print(f"{name} passed on the agency's rating of {answer['relayed']} provider(s)")
    return 0


def cmd_readmit(args: argparse.Namespace) -> int:
    """Ask a gateway to let an excluded member back into the rosters (the others follow)."""
    from lanon.common import control

    errors = []
    for name, role, sock in _status_targets(args):
        if role == "member":
            continue
        try:
            answer = control.query(sock, f"readmit {args.member}")
        except LanonError as exc:
            errors.append(f"{name}: {exc}")
            continue
        if "readmitted" in answer:
            print(f"{args.member} is readmitted (by {name}); the other gateways follow")
            return 0
        errors.append(f"{name}: {answer.get('error', answer)}")
    raise LanonError("; ".join(errors) or "no gateway to ask")


def cmd_deploy_path(args: argparse.Namespace) -> int:
    from lanon.deploy import path as deploy_path

    for name in args.file or [""]:
        found = deploy_path(*[p for p in name.split("/") if p])
        if not (found.is_file() or found.is_dir()):
            raise LanonError(
                f"{name}: not a shipped deployment file (lanon deploy path lists the directory)"
            )
        print(found)
    return 0


def cmd_deploy_install(args: argparse.Namespace) -> int:
    from lanon.deploy.install import install, installed_lanon

    lanon = args.lanon or installed_lanon()
    done = install(args.root, lanon)
    for item in sorted(done, key=lambda d: str(d.path)):
        if item.change != "unchanged" or args.verbose:
            print(f"{item.change:9}  {item.path}")
    changed = sum(1 for d in done if d.change != "unchanged")
    print(
        f"{changed} of {len(done)} files installed under {args.root} (units run {lanon}).\n"
        "Then: systemd-sysusers (the user lanon), systemctl daemon-reload, and the steps of "
        f"{args.root / 'usr/share/doc/lanon/README.md'}."
    )
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    import logging

    from lanon.common.daemon_config import read_toml
    from lanon.common.prepare import prepare
    from lanon.common.settings import resolve

    logging.basicConfig(level=logging.INFO, format=f"prepare[{args.role}] %(message)s")
    log = logging.getLogger("lanon.prepare")
    control_dir: Path | None = None
    if args.config is not None:
        try:
            sock = read_toml(args.config).get("control_socket", "")
        except ConfigError as exc:  # the daemon says it again, after its fail-closed rules
            log.warning("%s; no control socket directory made", exc)
            sock = ""
        if isinstance(sock, str) and sock:
            control_dir = resolve(args.config.parent, sock).parent
    for line in prepare(args.role, args.user, control_dir):
        log.info("%s", line)
    return 0


def cmd_lab_up(args: argparse.Namespace) -> int:
    from lanon.lab.lab import Lab, LabSpec

    lab = Lab(args.name)
    spec = LabSpec(
        args.name,
        args.members,
        args.gateways,
        prometheus=args.prometheus,
        schedule=args.schedule,
        unprivileged=args.unprivileged,
        jammer=args.jammer,
        serve=tuple(args.serve or ()),
        mode=args.mode,
        providers=args.providers,
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


def cmd_lab_slow(args: argparse.Namespace) -> int:
    from lanon.lab.lab import Lab

    if not 0 <= args.delay_ms <= 10_000:
        raise LanonError(f"--delay-ms {args.delay_ms:g}: expected 0 to 10000")
    Lab(args.name).slow(args.gateway, args.delay_ms)
    what = f"{args.delay_ms:g} ms late" if args.delay_ms else "at once again"
    print(f"lab {args.name}: what {args.gateway} emits reaches the Internet {what}")
    return 0


def cmd_lab_join(args: argparse.Namespace) -> int:
    from lanon.lab.lab import Lab

    lab = Lab(args.name)
    pid = lab.join(args.member, progress=print)
    print(f"{args.member} is a member of lab {args.name} (daemon pid {pid}), no restart")
    return 0


def cmd_lab_leave(args: argparse.Namespace) -> int:
    from lanon.lab.lab import Lab

    version = Lab(args.name).leave(args.member, progress=print)
    print(f"{args.member} is out of lab {args.name} from version {version}")
    return 0


def cmd_lab_demo(args: argparse.Namespace) -> int:
    from lanon.lab.demo import run_demo

    return run_demo(args.members, args.gateways)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lanon",
        description="lanon: the hosts of one LAN share anonymous IP addresses through DC-net rounds.",
        epilog="Start with 'lanon lab demo' (as root) to see a coalition at work.",
    )
    ap.add_argument(
        "--version",
        action="version",
        version=f"lanon {__version__} (wire version {WIRE_VERSION})",
        help="print lanon's version and the wire version of its frames (daemons of different "
        "wire versions refuse each other), and exit",
    )
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
        "rules",
        help="install or check this host's iptables rules",
        description="Install or check a member's or gateway's iptables rules, as the boot unit "
        "lanon-rules@ROLE.service does before any network is up (as root). A member whose "
        "configuration cannot be read keeps the lanon rules in place, or gets the closed ones. "
        "Only 'lanon member --remove-rules' takes a member's rules away.",
    )
    p.add_argument("action", choices=["install", "check"])
    p.add_argument("role", choices=["member", "gateway"])
    p.add_argument(
        "--config", type=Path, help="the daemon's TOML file (default: /etc/lanon/ROLE.toml)"
    )
    p.add_argument(
        "--closed",
        action="store_true",
        help="a member's closed rules, which need no configuration: nothing leaves but "
        "loopback, broadcast, multicast and link-local traffic",
    )
    p.set_defaults(func=cmd_rules)

    p = sub.add_parser(
        "keygen",
        help="make a host key pair",
        description="Write NAME.key (private, mode 0600) and NAME.pub; print the public key for the coalition file. As root, the files go to user lanon (the units' user) if it exists.",
    )
    p.add_argument("name", help="the host's name in the coalition file")
    p.add_argument(
        "--dir", type=Path, default=Path("."), help="where to write the files (default: here)"
    )
    p.add_argument(
        "--owner",
        metavar="USER",
        help=f"give the files to USER (as root); default: {DAEMON_USER}, the units' user, if it "
        "exists, so that the daemon can read the key",
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
    p.add_argument(
        "--admin",
        action="store_true",
        help="a versioned coalition: an administrator key (keys/admin.key) signs version 1, "
        "and members join and leave with lanon admin, without restarts",
    )
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
    p.add_argument(
        "--socket",
        type=Path,
        help="a daemon's control socket (default: every socket in /run/lanon, this host's daemons)",
    )
    p.add_argument(
        "--lab", help="the daemons of a lab (default: lab, when /run/lanon holds no socket)"
    )
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "providers",
        help="show the providers each member sees, and its choice",
        description="Show, per member, each provider's price, the quality the member measured "
        "(latency, loss, availability), the ratings it heard, its score and the member's "
        "choice, and the tokens it holds and has spent.",
    )
    p.add_argument("--socket", type=Path, help="a member daemon's control socket")
    p.add_argument("--lab", help="the members of a lab")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_providers)
    psub = p.add_subparsers(dest="providers_command", metavar="ACTION")
    pp = psub.add_parser(
        "publish",
        help="hand a rating agency's signed rating to a gateway, which passes it on",
        description="Hand a rating agency's signed rating (lanon agency rate) to a gateway: it "
        "checks the agency is in [providers] agencies and broadcasts it to the members.",
    )
    pp.add_argument("statement", help="the hex 'lanon agency rate' printed")
    pp.add_argument("--socket", type=Path, help="a gateway's control socket")
    pp.add_argument("--lab", help="a lab's gateways")
    pp.set_defaults(func=cmd_providers_publish)

    p = sub.add_parser(
        "provider",
        help="an operator's tools: its token key",
        description="Tools for an operator that sells: 'keygen FILE' makes its token key.",
    )
    prsub = p.add_subparsers(dest="provider_command", required=True, metavar="ACTION")
    pk = prsub.add_parser("keygen", help="make a token key (RSA, RFC 9474 blind signatures)")
    pk.add_argument("file", type=Path)
    pk.add_argument("--comment", default="", help="what the key file's first line says")
    pk.set_defaults(func=cmd_provider_keygen)

    p = sub.add_parser(
        "agency",
        help="a rating agency's tools",
        description="A rating agency (its key: lanon keygen; its public key in the coalition's "
        "[providers] agencies) signs ratings of providers.",
    )
    asub = p.add_subparsers(dest="agency_command", required=True, metavar="ACTION")
    ar = asub.add_parser("rate", help="sign a rating for this period: prints it as hex")
    ar.add_argument("scores", nargs="+", metavar="OPERATOR=SCORE", help="0 to 100 each")
    ar.add_argument("--key", type=Path, required=True, help="the agency's private key")
    ar.add_argument("--coalition", type=Path, required=True, help="the coalition file")
    ar.set_defaults(func=cmd_agency_rate)

    p = sub.add_parser(
        "readmit",
        help="let a member that blame excluded back in",
        description="Let a member that a blame verdict excluded back into the rosters: asked of "
        "a gateway (the others follow its heartbeats). Mend the host first: a member that "
        "jams again is traced and excluded again.",
    )
    p.add_argument("member", help="the member's name in the coalition file")
    p.add_argument("--socket", type=Path, help="a gateway's control socket")
    p.add_argument("--lab", help="the gateways of a lab")
    p.set_defaults(func=cmd_readmit)

    p = sub.add_parser(
        "deploy",
        help="the shipped units, rules, sysctl files, templates and dashboard",
        description="Show or install the deployment files that ship inside the package (deploy/ of the source tree).",
    )
    dsub = p.add_subparsers(dest="deploy_command", required=True, metavar="ACTION")
    d = dsub.add_parser(
        "path",
        help="print where the shipped files are",
        description="Print the directory of the shipped deployment files, or of FILE (e.g. systemd/lanon-member.service).",
    )
    d.add_argument("file", nargs="*", help="files relative to that directory")
    d.set_defaults(func=cmd_deploy_path)
    d = dsub.add_parser(
        "install",
        help="install units, sysctl, sysusers, rules, templates, dashboard and the guide",
        description="Copy the shipped files into place under ROOT: units to /etc/systemd/system (running this installation's lanon), sysctl.d and sysusers.d files to /etc, the guide to /usr/share/doc/lanon, everything to /usr/share/lanon. Replaces lanon's own files (change units with drop-ins); starts nothing.",
    )
    d.add_argument(
        "--root", type=Path, default=Path("/"), help="install under this directory (default /)"
    )
    d.add_argument(
        "--lanon",
        metavar="PATH",
        help="the lanon command the units run (default: the one of this installation)",
    )
    d.add_argument("-v", "--verbose", action="store_true", help="list unchanged files too")
    d.set_defaults(func=cmd_deploy_install)

    p = sub.add_parser(
        "prepare",
        help="root's part of a daemon's start (the units' ExecStartPre=+)",
        description="As root, before a daemon starts as USER with only CAP_NET_ADMIN and CAP_NET_RAW: give USER access to /dev/net/tun (member) and to iptables' lock file, and make the control socket's directory. Idempotent.",
    )
    p.add_argument("role", choices=["member", "gateway"])
    p.add_argument("--user", default=DAEMON_USER, help=f"the daemon's user (default {DAEMON_USER})")
    p.add_argument(
        "--config",
        type=Path,
        help="the daemon's file: its control socket's directory is made if missing (the units' "
        "RuntimeDirectory= makes /run/lanon)",
    )
    p.set_defaults(func=cmd_prepare)

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
    u.add_argument(
        "--unprivileged",
        action="store_true",
        help="run the daemons as the units do: user lanon, only CAP_NET_ADMIN and CAP_NET_RAW, "
        "no new privileges, after the units' root pre-start steps",
    )
    u.add_argument(
        "--jammer",
        metavar="MEMBER",
        help="for testing blame: this member's daemon writes junk into the others' reserved "
        "slots (a lab option only; no daemon configuration can ask for it)",
    )
    u.add_argument(
        "--mode",
        choices=["dcnet", "trusted"],
        default="dcnet",
        help="dcnet (default: nobody learns who sent a packet) or trusted (each member's cells "
        "go to the leading gateway sealed: the gateways know who sent what)",
    )
    u.add_argument(
        "--serve",
        action="append",
        metavar="MEMBER:PORT",
        help="start a small web server on MEMBER at PORT and offer it at an anonymous endpoint "
        "(lanon status --lab NAME shows where); repeatable",
    )
    u.add_argument(
        "--providers",
        action="store_true",
        help="two operators sell: odd gateways 'budget', even ones 'premium' (needs --gateways "
        "2); member1 weighs price, member2 quality ('lanon providers --lab NAME' shows them)",
    )
    u.set_defaults(func=cmd_lab_up)
    sl = lsub.add_parser(
        "slow",
        help="make a gateway's uplink slow",
        description="What GATEWAY emits reaches the Internet DELAY_MS later (0: at once again), "
        "as tc netem would: members that weigh quality move to another provider.",
    )
    sl.add_argument("gateway")
    sl.add_argument("--delay-ms", type=float, required=True)
    sl.add_argument("--name", default="lab")
    sl.set_defaults(func=cmd_lab_slow)
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
    for action, helptext in (
        ("join", "add a member host to a running lab, by request and approval"),
        ("leave", "remove a member from a running lab, by a version"),
    ):
        j = lsub.add_parser(action, help=helptext, description=helptext.capitalize() + ".")
        j.add_argument("member", help="member4, member5, ... (join); a member's name (leave)")
        j.add_argument("--name", default="lab")
        j.set_defaults(func=cmd_lab_join if action == "join" else cmd_lab_leave)
    admin_cli.add_parsers(sub)
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
