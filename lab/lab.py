"""The lab: a whole coalition on one machine, in namespaces it creates and always removes.

`Lab.up()` builds the network (topology.py), generates keys and configuration files from the
shipped templates, starts the Internet host's servers and the gateway and member daemons, and
returns once the lanon runs rounds with every member. `Lab.down()` stops every process in the
lab's namespaces and removes them, also when the lab crashed or was half built.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import pwd
import shlex
import shutil
import signal
import site
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, netns

from lanon.common import admin, admin_client, control
from lanon.common.coalition import RoundSection
from lanon.common.coalition import load as load_coalition
from lanon.common.crypto import HostKey, encode_key, read_private_key, write_private_key
from lanon.common.errors import LanonError, PrerequisiteError
from lanon.common.templates import daemon_file, write_coalition
from lanon.deploy import path as deploy_path
from lanon.lab import providers, topology
from lanon.lab.topology import Host
from lanon.member.config import MemberSettings

STATE_ROOT = Path("/run/lanon/lab")
NETNS_ETC = Path("/etc/netns")
DNS_NAME = "lanon.test"
READY_TIMEOUT = 45.0
DAEMON_PORT = 9551
MONITOR_ADDRESS = "198.18.0.254"
TUN_ADDRESS = MemberSettings.tun_address  # the members' (the default): services listen there  # the switch's own address, where the lab's Prometheus listens
DAEMON_USER = "lanon"  # the units' user (deploy/sysusers.d/lanon.conf)
CAPABILITIES = "net_admin,net_raw"  # the units' AmbientCapabilities=, CapabilityBoundingSet=
PACER_LIMITS = ("prlimit", "--rtprio=10", "--rttime=200000", "--")  # lanon-member.service's


def shared_cpu_busy_interval(members: int) -> float:
    """The lab's [rounds] busy_interval: every host of a lab shares this machine's cores, so
    a busy round costs the machine every member's work (about 0.45 ms each here, its pacer
    included) and the leader's, not one host's; rounds spaced by 0.4 ms a member, and at
    least 1.3 ms, leave the two cores room to answer and deliver at once. Measured (added
    RTT): 8 members 3.9-4.3 ms at 3.2 ms apart, 4.5-4.7 at 4 ms, 5.1-5.3 at 2.5 ms; 3
    members 1.83-1.93 at 1.2-1.3 ms, 1.92-2.04 at 1.5 ms, 2.2-2.3 at 1 ms, where the cores
    are full. Since a round's output wakes no member (about 0.35 ms each), 8 members at 2.6 ms
    gave 3.88-4.03 ms against 4.05-4.11, and slower downloads. A LAN of real hosts keeps the
    coalition file's default (2.5 ms)."""
    return max(0.0013, 0.0004 * members)


@dataclass
class LabSpec:
    name: str = "lab"
    members: int = 3
    gateways: int = 1
    idle_interval: float | None = None  # None: the coalition file's default
    answer_delay: float | None = None  # None: the coalition file's default
    busy_interval: float | None = None  # None: shared_cpu_busy_interval(members)
    deadline: float = 0.25
    min_members: int = 3
    epoch_seconds: float = 600.0
    prometheus: bool = False
    schedule: str = "star"
    key_graph: str = "full"  # or "regular" (degree 4)
    # run the daemons as the units do: user lanon, only CAP_NET_ADMIN and CAP_NET_RAW, no new
    # privileges, after the units' root pre-start steps (sysctl, `lanon prepare`)
    unprivileged: bool = False
    # each gateway's share, prefixes separated by commas (default: topology.share)
    shares: tuple[str, ...] = ()
    jammer: str | None = None  # a member whose daemon jams the others' slots (lab/jammer.py)
    serve: tuple[str, ...] = ()  # "member2:8000": a web server there, offered at an endpoint
    mode: str = "dcnet"  # or "trusted" (seed 000 §5.1: the gateways know who sends what)
    # two operators selling (seed 001): odd gateways 'budget', even ones 'premium'; member1
    # weighs price, member2 quality (lab/providers.py)
    providers: bool = False
    filter_inbound: bool = False  # the members' `filter_inbound` (member.toml)
    inbound_cipher: str = ""  # [coalition] inbound_cipher; "": the template's (aes256-gcm)


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise PrerequisiteError("the lab needs root (network namespaces, iptables, raw sockets)")
    missing = [
        t
        for t in ("ip", "iptables", "ip6tables", "iptables-restore", "sysctl")
        if shutil.which(t) is None
    ]
    if missing:
        raise PrerequisiteError(
            f"missing tools: {', '.join(missing)} (apt-get install iproute2 iptables procps)"
        )
    if not Path("/dev/net/tun").exists():
        raise PrerequisiteError("/dev/net/tun is missing (modprobe tun)")


def _valid_name(name: str) -> str:
    if not name or len(name) > 24 or not all(c.isalnum() or c == "-" for c in name):
        raise LanonError(f"lab name {name!r}: expected up to 24 letters, digits or '-'")
    return name


class Lab:
    def __init__(self, name: str = "lab") -> None:
        self.name = _valid_name(name)
        self.dir = STATE_ROOT / self.name
        self.spec = LabSpec(name)
        self.hosts: list[Host] = []
        self.pids: dict[str, int] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}  # ours to reap, if we started them
        state = self.dir / "lab.json"
        if state.exists():
            data = json.loads(state.read_text())
            self.spec = LabSpec(**data["spec"])
            self.hosts = [Host(**h) for h in data["hosts"]]
            self.pids = data["pids"]

    # --- names and paths --------------------------------------------------------------------

    def ns(self, host: str) -> str:
        return topology.ns_name(self.name, host)

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        names = ", ".join(h.name for h in self.hosts) or "none: is the lab up?"
        raise LanonError(f"lab {self.name!r} has no host {name!r} (hosts: {names})")

    @property
    def members(self) -> list[Host]:
        return [h for h in self.hosts if h.kind == "member"]

    @property
    def gateways(self) -> list[Host]:
        return [h for h in self.hosts if h.kind == "gateway"]

    def socket_path(self, host: str) -> Path:
        return self.run_dir / f"{host}.sock"

    @property
    def run_dir(self) -> Path:
        """The control sockets' directory: the units' /run/lanon (RuntimeDirectory=lanon)."""
        return self.dir / "run"

    def log_path(self, host: str) -> Path:
        return self.dir / "logs" / f"{host}.log"

    @property
    def www(self) -> Path:
        return self.dir / "www"

    @property
    def http_log(self) -> Path:
        return self.dir / "internet-http.log"

    @property
    def resolver_log(self) -> Path:
        """The router's resolver's log: every query with the address it came from."""
        return self.dir / "router-dns.log"

    def is_up(self) -> bool:
        return bool(topology.lab_namespaces(self.name))

    def _save(self) -> None:
        data = {
            "spec": asdict(self.spec),
            "hosts": [asdict(h) for h in self.hosts],
            "pids": self.pids,
        }
        (self.dir / "lab.json").write_text(json.dumps(data, indent=1))

    # --- up ---------------------------------------------------------------------------------

    def up(self, spec: LabSpec, progress: Any = None) -> None:
        say = progress or (lambda msg: None)
        check_prerequisites()
        if not 3 <= spec.members <= topology.MAX_MEMBERS:
            raise LanonError(
                f"--members {spec.members}: expected 3 to {topology.MAX_MEMBERS} (a lanon needs 3)"
            )
        if not 1 <= spec.gateways <= topology.MAX_GATEWAYS:
            raise LanonError(f"--gateways {spec.gateways}: expected 1 to {topology.MAX_GATEWAYS}")
        names = [f"member{i}" for i in range(1, spec.members + 1)]
        if spec.jammer is not None and spec.jammer not in names:
            raise LanonError(f"--jammer {spec.jammer}: expected one of {', '.join(names)}")
        served = served_ports(spec.serve, names)
        if spec.providers and spec.gateways < 2:
            raise LanonError("--providers: expected --gateways 2 or more (two operators compete)")
        if self.is_up():
            raise LanonError(
                f"lab {self.name!r} is already up: 'lanon lab down --name {self.name}' first"
            )
        self.spec = spec
        if self.dir.exists():
            shutil.rmtree(self.dir)
        (self.dir / "logs").mkdir(parents=True, mode=0o700)
        self.run_dir.mkdir(mode=0o750)
        try:
            if spec.unprivileged:
                owner = daemon_user()
                os.chown(self.run_dir, owner.pw_uid, owner.pw_gid)  # as RuntimeDirectory= does
            say(
                f"building the network ({spec.members} members, {spec.gateways} gateway(s), router, internet)"
            )
            self.hosts = topology.build(self.name, spec.members, spec.gateways)
            self._save()
            self._write_configs()
            self._start_internet()
            for member, port in served:
                self._offer(member, port)
            if spec.prometheus:
                say(f"starting Prometheus at http://{MONITOR_ADDRESS}:9090 (on the switch)")
                self._start_prometheus()
            say("starting gateways and members")
            for g in self.gateways:
                self.start_daemon(g.name)
            for m in self.members:
                self.start_daemon(m.name)
            self.wait_ready(say)
            for member, port in served:  # on the TUN address: its daemon made the device
                self._serve(member, port)
        except BaseException:
            self.down()
            raise

    def _daemon_values(self, role: str, host: str) -> dict[str, Any]:
        own: dict[str, Any] = {}
        if role == "member":
            own["wallet"] = str(self.run_dir / f"{host}-wallet.json")
            if self.spec.filter_inbound:
                own["filter_inbound"] = True
        else:
            own["sequence_file"] = str(self.run_dir / f"{host}-sequence")
        return {
            "metrics": f":{DAEMON_PORT}",  # as the templates: the address of `interface`
            "control_socket": str(self.socket_path(host)),
            **own,
        }

    @property
    def admin_key_path(self) -> Path:
        return self.dir / "keys" / "admin.key"

    def _write_configs(self) -> None:
        """Keys and files from the shipped templates, as an operator would make them."""
        (self.dir / "keys").mkdir(parents=True, mode=0o700, exist_ok=True)
        admin_key = HostKey.generate()  # the lab's administrator (lanon lab join, leave)
        write_private_key(self.admin_key_path, admin_key, f"administrator of lab {self.name}")
        router = ipaddress.IPv4Address(topology.ROUTER_LAN)
        router_shared = any(
            router in ipaddress.IPv4Network(p)
            for share in self.spec.shares
            for p in share.split(",")
        )
        write_coalition(
            self.dir,
            self.name,
            str(topology.LAN),
            [
                (
                    g.name,
                    self.spec.shares[g.index - 1] if self.spec.shares else topology.share(g.index),
                )
                for g in self.gateways
            ],
            [m.name for m in self.members],
            sections={
                # a versioned coalition: members join and leave by signed versions (lab join)
                "coalition": {
                    "min_members": self.spec.min_members,
                    "version": 1,
                    **({"mode": self.spec.mode} if self.spec.mode != "dcnet" else {}),
                    **(
                        {"inbound_cipher": self.spec.inbound_cipher}
                        if self.spec.inbound_cipher
                        else {}
                    ),
                },
                "admin": {"keys": [encode_key(admin_key.public)]},
                "rounds": {
                    **(
                        {"idle_interval": self.spec.idle_interval}
                        if self.spec.idle_interval is not None
                        else {}
                    ),
                    **(
                        {"answer_delay": self.spec.answer_delay}
                        if self.spec.answer_delay is not None
                        else {}
                    ),
                    "busy_interval": min(
                        self.spec.busy_interval
                        if self.spec.busy_interval is not None
                        else shared_cpu_busy_interval(self.spec.members),
                        self.spec.idle_interval or RoundSection.idle_interval,
                    ),
                    "deadline": self.spec.deadline,
                    "epoch_seconds": self.spec.epoch_seconds,
                    "schedule": self.spec.schedule,
                    "clock_tolerance": 0.5,  # the lab's hosts share one clock
                },
                "key_graph": {"kind": self.spec.key_graph, "degree": 4},
                **({"providers": providers.COALITION} if self.spec.providers else {}),
                # the router's resolver, which members reach through the lanon (unless a test
                # puts the router in a share on purpose)
                "lan_services": {
                    "anonymous": [f"{topology.ROUTER_LAN}:53"] if not router_shared else []
                },
            },
            daemon=self._daemon_values,
            operators=providers.operators(self.gateways) if self.spec.providers else None,
        )
        if self.spec.providers:
            providers.write_configs(self.dir, self.run_dir, self.gateways, self.members)
        path = self.dir / "coalition.toml"
        path.write_text(admin.sign(path.read_text(), path, admin_key))
        if (
            self.spec.unprivileged
        ):  # the keys belong to the daemons' user, as `lanon keygen` makes them
            owner = daemon_user()
            for path in [self.dir / "keys", *(self.dir / "keys").iterdir()]:
                if path != self.admin_key_path:
                    os.chown(path, owner.pw_uid, owner.pw_gid)
        for m in self.members:
            self._resolver(m.name)

    def slow(self, gateway: str, delay_ms: float) -> None:
        """What `gateway` emits reaches the Internet `delay_ms` later (0: at once again): the
        router holds it (lab/delay.py: this kernel has no netem)."""
        h = self.host(gateway)
        if h.kind != "gateway":
            raise LanonError(f"{gateway}: expected a gateway of lab {self.name!r}")
        label = f"router-slow-{gateway}"
        queue = providers.SLOW_QUEUE + h.index
        share = self.spec.shares[h.index - 1] if self.spec.shares else topology.share(h.index)
        for prefix in share.split(","):
            rule = ["FORWARD", "-i", "eth0", "-s", prefix, "-j", "NFQUEUE"]
            rule += ["--queue-num", str(queue)]
            self.run("router", ["iptables", "-D", *rule])  # (if it was there)
            if delay_ms > 0:
                self.run("router", ["iptables", "-I", *rule], check=True)
        if label in self.pids:
            self.stop_daemon(label)
        if delay_ms > 0:
            argv = [sys.executable, "-m", "lanon.lab.delay", "--queue", str(queue)]
            self._spawn("router", label, [*argv, "--delay-ms", str(delay_ms)])

    def service_root(self, member: str, port: int) -> Path:
        return self.dir / f"www-{member}-{port}"

    def _offer(self, member: str, port: int) -> None:
        """A web service of `member` at `port`, offered at an anonymous endpoint: [[services]]
        in its file (before its daemon starts). Its page names no member: only a random mark
        that a test can check."""
        root = self.service_root(member, port)
        root.mkdir()
        (root / "index.html").write_text(
            "<html><body><h1>Served by a member of the lanon</h1>"
            f"<p>mark {os.urandom(8).hex()}</p></body></html>\n"
        )
        with (self.dir / f"{member}.toml").open("a") as f:
            f.write(f'\n[[services]]\nname = "web-{port}"\nport = {port}\n')

    def _serve(self, member: str, port: int) -> None:
        """The web server of `_offer`, on the member's TUN address only (as the deploy guide
        asks: on the LAN address, any LAN host could find which member serves it)."""
        root = self.service_root(member, port)
        self._spawn(
            member,
            f"{member}-web-{port}",
            [
                sys.executable,
                "-m",
                "lanon.lab.internet",
                "--address",
                TUN_ADDRESS,
                "--port",
                str(port),
                "--no-echo",
                "--root",
                str(root),
                "--log",
                str(root.with_suffix(".log")),
            ],
        )

    def _resolver(self, member: str) -> None:
        """Members resolve names through the lanon too."""
        etc = NETNS_ETC / self.ns(member)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {topology.ROUTER_LAN}\n")

    # --- members come and go (coalition versions) ----------------------------------------

    def join(self, name: str, progress: Any = None, timeout: float = 30.0) -> int:
        """A new member host, as a real one joins: it gets the coalition file (as it is now)
        and its own key, its daemon asks to join, the administrator approves on gateway1, and
        the new version reaches every host. Returns the new daemon's pid."""
        say = progress or (lambda msg: None)
        if not self.is_up():
            raise LanonError(f"lab {self.name!r} is not up")
        if not name.startswith("member") or not name[6:].isdigit():
            raise LanonError(f"{name!r}: expected member<N>, e.g. member4")
        if name in {h.name for h in self.hosts}:
            raise LanonError(f"lab {self.name!r} has a host {name!r} already")
        host = topology.add_member(self.name, int(name[6:]))
        self.hosts.insert(len(self.hosts) - 1, host)  # before the Internet host
        self._save()
        key = HostKey.generate()
        write_private_key(self.dir / "keys" / f"{name}.key", key, f"{name} of lab {self.name}")
        own = {"coalition": "coalition.toml", "name": name, "private_key": f"keys/{name}.key"}
        (self.dir / f"{name}.toml").write_text(
            daemon_file("member", {**own, **self._daemon_values("member", name)})
        )
        if self.spec.unprivileged:
            owner = daemon_user()
            os.chown(self.dir / "keys" / f"{name}.key", owner.pw_uid, owner.pw_gid)
        self._resolver(name)
        say(f"{name}: plugged in; its daemon asks to join")
        pid = self.start_daemon(name)
        gateway = self.socket_path(self.gateways[0].name)
        end = time.monotonic() + timeout
        while not any(r["name"] == name for r in admin_client.pending(gateway)):
            self._still_running(name, end)
        c = admin_client.approve(
            gateway, name, read_private_key(self.admin_key_path), address=host.address
        )
        say(f"approved on {self.gateways[0].name}: coalition version {c.version}")
        while self.status(name).get("state") != "running":
            self._still_running(name, end)
        return pid

    def leave(self, name: str, progress: Any = None, timeout: float = 20.0) -> int:
        """Remove a member by a version (its daemon runs on, out of the coalition)."""
        say = progress or (lambda msg: None)
        self.host(name)
        gateway = self.socket_path(self.gateways[0].name)
        c = admin_client.remove(gateway, name, read_private_key(self.admin_key_path))
        say(f"removed on {self.gateways[0].name}: coalition version {c.version}")
        end = time.monotonic() + timeout
        while self.status(name).get("state") != "removed":
            self._still_running(name, end)
        return c.version

    def _still_running(self, name: str, end: float) -> None:
        if not _alive(self.pids.get(name, -1)):
            raise LanonError(f"{name} exited:\n{self.tail(name)}")
        if time.monotonic() > end:
            raise LanonError(
                f"{name}: not done in time; status {self.status(name).get('condition')}\n"
                + "\n".join(self.tail(h.name) for h in [*self.gateways, self.host(name)])
            )
        time.sleep(0.1)

    def _start_internet(self) -> None:
        self.www.mkdir()
        (self.www / "index.html").write_text(
            "<html><body><h1>Hello from the lab Internet</h1>"
            "<p>You reached 203.0.113.10 through the lanon.</p></body></html>\n"
        )
        with (self.www / "5mb.bin").open("wb") as f:
            f.write(os.urandom(5 * 1024 * 1024))
        self.http_log.touch()
        self._spawn(
            "internet",
            "internet-http",
            [
                sys.executable,
                "-m",
                "lanon.lab.internet",
                "--address",
                topology.INTERNET_HOST,
                "--root",
                str(self.www),
                "--log",
                str(self.http_log),
            ],
        )
        if shutil.which("dnsmasq"):
            self._spawn_dns(
                "internet",
                topology.INTERNET_HOST,
                f"--address=/{DNS_NAME}/{topology.INTERNET_HOST}",
                "--log-facility=-",
            )
            # The router's resolver, as on most LANs: members' queries reach it through the
            # lanon (from anonymous addresses); it logs every query with its client.
            self._spawn_dns(
                "router",
                topology.ROUTER_LAN,
                f"--server={topology.INTERNET_HOST}",
                "--log-queries=extra",
                f"--log-facility={self.resolver_log}",
            )
        if shutil.which("iperf3"):
            self._spawn(
                "internet",
                "internet-iperf3",
                ["iperf3", "--server", "--bind", topology.INTERNET_HOST],
            )

    def _spawn_dns(self, host: str, address: str, *options: str) -> None:
        """dnsmasq on `host`, answering on `address` only, with nothing of this machine's own
        configuration (no resolv.conf, no hosts file)."""
        self._spawn(
            host,
            f"{host}-dns",
            [
                "dnsmasq",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
                f"--listen-address={address}",
                "--user=root",
                f"--pid-file={self.dir / f'{host}-dnsmasq.pid'}",
                *options,
            ],
        )

    def _start_prometheus(self) -> None:
        binary = shutil.which(
            "prometheus",
            path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        )
        if binary is None:
            raise PrerequisiteError(
                "prometheus is missing: './run test' unpacks Debian's package into .venv"
            )
        pdir = self.dir / "prometheus"
        (pdir / "targets").mkdir(parents=True)
        (pdir / "prometheus.yml").write_text(
            deploy_path("prometheus", "prometheus.yml").read_text()
        )
        targets = [
            {"targets": [f"{h.address}:{DAEMON_PORT}"], "labels": {"role": h.kind, "host": h.name}}
            for h in self.gateways + self.members
        ]
        (pdir / "targets" / "lab.json").write_text(json.dumps(targets, indent=1))
        with IPRoute(netns=self.ns("lan")) as ipr:  # the switch's management address
            br = ipr.link_lookup(ifname="br0")[0]
            ipr.addr("add", index=br, address=MONITOR_ADDRESS, prefixlen=topology.LAN.prefixlen)
        self._spawn(
            "lan",
            "prometheus",
            [
                binary,
                f"--config.file={pdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={pdir / 'data'}",
                f"--web.listen-address={MONITOR_ADDRESS}:9090",
                "--log.level=warn",
            ],
        )

    def prometheus_query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query to the lab's Prometheus; its result vector."""
        url = f"http://{MONITOR_ADDRESS}:9090/api/v1/query"
        r = self.run(
            "lan",
            ["curl", "-sS", "--max-time", "10", "--get", url, "--data-urlencode", f"query={expr}"],
        )
        if r.returncode != 0:
            raise LanonError(f"Prometheus query failed: {r.stderr.strip()}")
        answer = json.loads(r.stdout)
        if answer.get("status") != "success":
            raise LanonError(f"Prometheus refused {expr!r}: {answer.get('error')}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def _spawn(self, host: str, label: str, argv: list[str]) -> int:
        log = self.log_path(label).open("ab")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(host), *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.dir,
        )
        log.close()
        self._procs[label] = proc
        self.pids[label] = proc.pid
        self._save()
        return proc.pid

    def start_daemon(self, host: str) -> int:
        h = self.host(host)
        config = self.dir / f"{h.name}.toml"
        argv = [sys.executable, "-m", "lanon.cli", h.kind, "--config", str(config)]
        if h.name == self.spec.jammer:
            argv = [sys.executable, "-m", "lanon.lab.jammer", "--config", str(config)]
        elif self.spec.unprivileged:
            self.pre_start(h)
            user = daemon_user()
            argv = unprivileged(user, [*lanon_command(user), h.kind, "--config", str(config)])
            if h.kind == "member":  # the unit's LimitRTPRIO= and LimitRTTIME=: the pacer's
                argv = [*pacer_limits(), *argv]
        return self._spawn(h.name, h.name, argv)

    def pre_start(self, h: Host) -> None:
        """What the unit runs as root before the daemon (ExecStartPre=+): its sysctl file,
        then `lanon prepare`."""
        sysctl_file = deploy_path("sysctl.d", f"90-lanon-{h.kind}.conf")
        steps = [
            ["sysctl", "-q", "-p", str(sysctl_file)],
            [
                *(sys.executable, "-m", "lanon.cli", "prepare", h.kind),
                *("--user", DAEMON_USER, "--config", str(self.dir / f"{h.name}.toml")),
            ],
        ]
        with self.log_path(h.name).open("ab") as log:
            for step in steps:
                r = subprocess.run(
                    self.argv(h.name, step), stdout=log, stderr=subprocess.STDOUT, timeout=60
                )
                if r.returncode != 0:
                    raise LanonError(
                        f"{h.name}: pre-start step failed: {quote(step)}\n{self.tail(h.name)}"
                    )

    def stop_daemon(self, host: str, sig: int = signal.SIGTERM, wait: float = 5.0) -> None:
        pid = self.pids.pop(host, None)
        self._save()
        if pid is not None:
            _kill_group(pid, sig, wait)
        self._reap(host)

    def _reap(self, label: str) -> None:
        proc = self._procs.pop(label, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def wait_ready(self, say: Any = None, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """Wait until every gateway is up, every anonymous address is held, and the leading
        gateway runs rounds with every member of the lab."""
        want = {m.name for m in self.members}
        addresses = {str(a) for a in load_coalition(self.dir / "coalition.toml").anonymous}
        end = time.monotonic() + timeout
        last: dict[str, Any] = {}
        first_round = None
        while time.monotonic() < end:
            for label, pid in self.pids.items():
                if not _alive(pid):
                    raise LanonError(f"{label} exited during start-up:\n{self.tail(label)}")
            held: set[str] = set()
            refused: set[str] = set()  # addresses a gateway will not claim (in use, its own...)
            for g in self.gateways:
                with contextlib.suppress(LanonError):
                    st = control.query(self.socket_path(g.name))
                    held |= set(st.get("held", ()))
                    refused |= set(st.get("refused", ()))
                    if st.get("leading"):
                        last = st
            gateways_up = len(last.get("gateways_alive", ())) == len(self.gateways)
            if (
                last
                and gateways_up
                and held == addresses - refused
                and set(last.get("members_present", ())) == want
            ):
                if first_round is None:
                    first_round = last["rounds_completed"]
                elif last["rounds_completed"] >= first_round + 3:
                    if say:
                        say(
                            f"lanon running: {len(want)} members, {last['rounds_completed']} rounds so far"
                        )
                    return last
            time.sleep(0.1)
        logs = "\n".join(self.tail(h.name) for h in self.gateways + self.members)
        raise LanonError(
            f"the lanon did not start within {timeout:.0f} s; last gateway status: {last}\n{logs}"
        )

    def tail(self, label: str, lines: int = 15) -> str:
        try:
            text = self.log_path(label).read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"--- {label}: no log"
        return f"--- {label} (last {len(text)} lines of {self.log_path(label)}):\n" + "\n".join(
            text
        )

    # --- use --------------------------------------------------------------------------------

    def argv(self, host: str, command: list[str]) -> list[str]:
        """A command in a lab host, or in "lan": the switch, where whoever runs it watches."""
        if host != "lan":
            self.host(host)
        elif not self.hosts:
            raise LanonError(f"lab {self.name!r} is not up")
        return ["ip", "netns", "exec", self.ns(host), *command]

    def run(
        self, host: str, command: list[str], timeout: float = 120, check: bool = False, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(host, command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            **kw,
        )

    def popen(self, host: str, command: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(host, command), **kw)

    def status(self, host: str) -> dict[str, Any]:
        return control.query(self.socket_path(host))

    def leader_status(self) -> dict[str, Any]:
        for g in self.gateways:
            with contextlib.suppress(LanonError):
                st = control.query(self.socket_path(g.name))
                if st.get("leading"):
                    return st
        raise LanonError(f"no gateway of lab {self.name!r} leads rounds")

    def http_clients(self) -> list[str]:
        """Client addresses in the Internet host's HTTP log, one per request."""
        return [line.split()[0] for line in self.http_log.read_text().splitlines() if line.strip()]

    # --- down -------------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop everything in the lab's namespaces and remove them; returns what was removed."""
        for label in list(self.pids):
            _kill_group(self.pids[label], signal.SIGTERM, wait=0)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in self.pids.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.pids.values():
            _kill_group(pid, signal.SIGKILL, wait=0)
        for label in list(self._procs):
            self._reap(label)
        # whatever else still runs in the lab's namespaces (a crashed lab, a test's tcpdump)
        prefix = f"lanon-{self.name}-"
        strays = [
            pid for ns, pids in netns.ns_pids().items() if ns.startswith(prefix) for pid in pids
        ]
        for pid in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in strays) and time.monotonic() < deadline:
            time.sleep(0.02)
        removed = topology.destroy(self.name)
        for h in self.hosts or [Host(n[len(prefix) :], "", 0, "", "") for n in removed]:
            with contextlib.suppress(OSError):
                shutil.rmtree(NETNS_ETC / self.ns(h.name))
        for etc in NETNS_ETC.glob(f"{prefix}*") if NETNS_ETC.exists() else []:
            shutil.rmtree(etc, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.pids = {}
        return removed


def served_ports(serve: tuple[str, ...], members: list[str]) -> list[tuple[str, int]]:
    """--serve MEMBER:PORT items, checked."""
    out = []
    for item in serve:
        member, _, port = item.partition(":")
        if member not in members or not port.isdigit() or not 0 < int(port) < 65536:
            raise LanonError(
                f"--serve {item}: expected MEMBER:PORT with MEMBER one of {', '.join(members)}"
            )
        out.append((member, int(port)))
    if len(set(out)) != len(out):
        raise LanonError(f"--serve {', '.join(serve)}: a service twice")
    return out


def daemon_user() -> pwd.struct_passwd:
    """The units' user, made from the shipped sysusers.d file if this machine lacks it."""
    try:
        return pwd.getpwnam(DAEMON_USER)
    except KeyError:
        pass
    conf = deploy_path("sysusers.d", "lanon.conf")
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is not None:
        subprocess.run([sysusers, str(conf)], check=False, capture_output=True, timeout=60)
    else:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(
            [
                *(useradd, "--system", "--no-create-home", "--home-dir", "/var/lib/lanon"),
                *("--shell", "/usr/sbin/nologin", DAEMON_USER),
            ],
            check=False,
            capture_output=True,
            timeout=60,
        )
    try:
        return pwd.getpwnam(DAEMON_USER)
    except KeyError:
        raise PrerequisiteError(
            f"user {DAEMON_USER} is missing and could not be made (systemd-sysusers {conf})"
        ) from None


@functools.cache
def lanon_command(user: pwd.struct_passwd) -> tuple[str, ...]:
    """How `user` runs this environment's `lanon`: with its Python, or, where the user may not
    run that (a virtual environment made from a Python under /root), with the system's Python
    of the same version and this environment's packages."""
    probe = unprivileged(user, [sys.executable, "-c", "import lanon.cli"])
    if subprocess.run(probe, capture_output=True, timeout=60, cwd="/").returncode == 0:
        return (sys.executable, "-m", "lanon.cli")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/usr/local/bin:/bin")
    boot = (
        "import runpy, site, sys\n"
        f"for d in {site.getsitepackages()!r}: site.addsitedir(d)\n"
        "runpy.run_module('lanon.cli', run_name='__main__', alter_sys=True)\n"
    )
    if system is not None:
        probe = unprivileged(user, [system, "-c", boot, "--version"])
        if subprocess.run(probe, capture_output=True, timeout=60, cwd="/").returncode == 0:
            return (system, "-c", boot)
    raise PrerequisiteError(
        f"user {user.pw_name} can run neither {sys.executable} nor a system {version}: make the "
        "virtual environment from a Python that every user may run (e.g. /usr/bin/python3)"
    )


def pacer_limits() -> tuple[str, ...]:
    """prlimit with the member unit's limits, if this machine lets root raise them (it needs
    CAP_SYS_RESOURCE, which some containers and VMs do not give): else nothing, and the
    member's pacer runs at normal priority (`lanon status`: paced process)."""
    try:
        r = subprocess.run([*PACER_LIMITS, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return PACER_LIMITS if r.returncode == 0 else ()


def unprivileged(user: pwd.struct_passwd, argv: list[str]) -> list[str]:
    """`argv` as the units run it: as `user`, with only CAP_NET_ADMIN and CAP_NET_RAW (ambient,
    so that iptables-restore has them too), no supplementary groups, no new privileges."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise PrerequisiteError("setpriv is missing (apt-get install util-linux)")
    return [
        setpriv,
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        f"--inh-caps=-all,+{CAPABILITIES.replace(',', ',+')}",
        f"--ambient-caps=-all,+{CAPABILITIES.replace(',', ',+')}",
        f"--bounding-set=-all,+{CAPABILITIES.replace(',', ',+')}",
        "--no-new-privs",
        "--",
        "env",
        f"HOME={user.pw_dir}",
        f"USER={user.pw_name}",
        *argv,
    ]


def all_labs() -> list[str]:
    names = set()
    for ns in netns.listnetns():
        if ns.startswith("lanon-") and ns.endswith("-lan"):
            names.add(ns[len("lanon-") : -len("-lan")])
    if STATE_ROOT.exists():
        names |= {p.name for p in STATE_ROOT.iterdir() if p.is_dir()}
    return sorted(names)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        waited = 0
    if waited == pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie that is not our child
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _kill_group(pid: int, sig: int, wait: float) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    end = time.monotonic() + wait
    while wait and _alive(pid) and time.monotonic() < end:
        time.sleep(0.05)
    if wait and _alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def quote(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
