"""`lanon lab demo`: a lab comes up, every member fetches a page, the server tells what it saw."""

from __future__ import annotations

import shutil

from lanon.lab import topology
from lanon.lab.lab import DNS_NAME, Lab, LabSpec

NAME = "demo"


def run_demo(members: int = 3, gateways: int = 1) -> int:
    lab = Lab(NAME)
    if lab.is_up():
        print(f"lab {NAME} was left up by an earlier run: removing it")
        lab.down()
    print(
        f"== lanon demo: {members} members and {gateways} gateway(s) on a bridge, a router, an Internet host"
    )
    lab.up(LabSpec(NAME, members, gateways), progress=lambda m: print(f"   {m}"))
    ok = True
    try:
        real = {m.address: m.name for m in lab.members}
        print("\n== every member fetches http://203.0.113.10/ and asks the server who it is")
        for m in lab.members:
            fetch = lab.run(
                m.name,
                [
                    "curl",
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{size_download}B %{time_total}s",
                    "--max-time",
                    "20",
                    "http://203.0.113.10/",
                ],
            )
            who = lab.run(m.name, ["curl", "-sS", "--max-time", "20", "http://203.0.113.10/whoami"])
            seen = who.stdout.strip() or who.stderr.strip()
            print(
                f"   {m.name} ({m.address}): GET / -> {fetch.stdout or fetch.stderr.strip()}; server saw {seen}"
            )
            ok &= fetch.returncode == 0 and who.returncode == 0
        print("\n== member1 pings the Internet host")
        ping = lab.run(
            "member1", ["ping", "-c", "3", "-i", "0.2", "-W", "5", topology.INTERNET_HOST]
        )
        print(
            "   "
            + (ping.stdout.strip().splitlines()[-1] if ping.stdout.strip() else ping.stderr.strip())
        )
        ok &= ping.returncode == 0
        if shutil.which("dig") and shutil.which("dnsmasq"):
            print(f"\n== member2 resolves www.{DNS_NAME} (a DNS query over UDP, through the lanon)")
            dig = lab.run("member2", ["dig", "+short", "+time=5", "+tries=2", f"www.{DNS_NAME}"])
            print(f"   www.{DNS_NAME} -> {dig.stdout.strip() or dig.stderr.strip()}")
            ok &= dig.returncode == 0 and bool(dig.stdout.strip())
        clients = lab.http_clients()
        anon = sorted(set(clients))
        leaked = sorted(a for a in anon if a in real)
        print(f"\n== the Internet host's HTTP log: {len(clients)} requests from {', '.join(anon)}")
        print(
            "   (anonymous addresses of the coalition; "
            + (
                f"LEAK: member addresses {leaked}!)"
                if leaked
                else "no member's own address appears)"
            )
        )
        ok &= not leaked
        st = lab.leader_status()
        print(
            f"\n== gateway: {st['rounds_completed']} rounds, {st['round_rate']}/s, members "
            f"{', '.join(st['members_present'])}, k = {st['k']}, {st['flows']} flows, "
            f"{st['emitted_packets']} packets out, {st['inbound_packets']} in"
        )
    finally:
        print("\n== tearing the lab down")
        removed = lab.down()
        print(f"   removed {len(removed)} namespaces")
    print("\n== demo " + ("succeeded" if ok else "FAILED"))
    return 0 if ok else 1
