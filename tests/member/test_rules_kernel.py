"""The rules in a real kernel: `lanon rules`, the check, a flush and the watch, in a scratch
network namespace (root; nothing else lives there, and it goes away after each test)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lanon.common.templates import write_coalition

pytestmark = pytest.mark.root

LANON = [sys.executable, "-m", "lanon.cli"]


@pytest.fixture()
def ns() -> Iterator[str]:
    if os.environ.get("LANON_SKIP_ROOT_TESTS") == "1":
        pytest.skip("LANON_SKIP_ROOT_TESTS=1: root tests skipped on request")
    if os.geteuid() != 0:
        pytest.fail("the rules tests need root (a network namespace): run 'sudo ./run test'")
    from pyroute2 import netns

    name = f"lanonrules-{os.getpid()}"
    netns.create(name)
    try:
        yield name
    finally:
        netns.remove(name)


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    write_coalition(
        tmp_path, "office", "198.18.0.0/24", [("gw1", "198.18.0.192/30")], ["a", "b", "c"]
    )
    return tmp_path


def run(ns: str, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], input=stdin, capture_output=True, text=True, timeout=60
    )


def lanon(ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return run(ns, *LANON, *argv)


def saved(ns: str) -> str:
    return run(ns, "iptables-save").stdout + run(ns, "ip6tables-save").stdout


def test_install_check_flush_and_the_watch_puts_everything_back(ns: str, files: Path) -> None:
    config = str(files / "a.toml")
    r = lanon(ns, "rules", "install", "member", "--config", config)
    assert r.returncode == 0 and "rules installed" in r.stdout, r.stdout + r.stderr
    assert lanon(ns, "rules", "check", "member", "--config", config).returncode == 0
    for flush in (
        ["iptables", "-F"],  # the filter table: the usual mistake
        ["iptables", "-t", "mangle", "-F"],
        ["iptables", "-t", "raw", "-F"],
        ["ip6tables", "-F"],
        ["sh", "-c", "for t in raw mangle filter; do iptables -t $t -F; iptables -t $t -X; done"],
        ["iptables", "-F", "LANON_OUT"],  # our chain emptied, the jump left
    ):
        assert run(ns, *flush).returncode == 0
        r = lanon(ns, "rules", "check", "member", "--config", config)
        assert r.returncode == 1 and "MISSING" in r.stdout, (flush, r.stdout)
        watch = (
            "from pathlib import Path; from lanon.common import iptables; "
            "from lanon.member import rules; "
            f"own, _ = rules.from_config(Path({config!r})); told = []; "
            "w = iptables.Watch(own.rulesets(), told.append); "
            "print(w.check(), len(told), w.check())"
        )
        r = run(ns, sys.executable, "-c", watch)
        assert r.stdout.split() == ["False", "1", "True"], (flush, r.stdout + r.stderr)
        assert lanon(ns, "rules", "check", "member", "--config", config).returncode == 0, flush


def test_only_remove_rules_opens_the_host(ns: str, files: Path) -> None:
    config = str(files / "a.toml")
    assert lanon(ns, "rules", "install", "member", "--config", config).returncode == 0
    assert lanon(ns, "rules", "install", "member", "--config", config).returncode == 0  # again
    text = saved(ns)
    for chain in ("LANON_OUT", "LANON_FWD", "LANON_IN", "LANON_POST", "LANON_RAW", "LANON_OUT6"):
        assert f"-j {chain}\n" in text, chain
    assert text.count("-A OUTPUT -j LANON_OUT\n") == 1  # installing twice adds nothing
    r = lanon(ns, "member", "--remove-rules")
    assert r.returncode == 0 and "LANON" not in saved(ns), saved(ns)


def test_an_unreadable_configuration_gets_the_closed_rules_then_the_full_ones(
    ns: str, files: Path
) -> None:
    (files / "coalition.toml").rename(files / "elsewhere.toml")
    config = str(files / "a.toml")
    r = lanon(ns, "rules", "install", "member", "--config", config)
    assert r.returncode == 2 and "installed the closed rules" in r.stdout, r.stdout + r.stderr
    assert lanon(ns, "rules", "check", "member", "--closed").returncode == 0
    assert "NFQUEUE" not in saved(ns) and "-A LANON_POST -j DROP" in saved(ns)
    # a member daemon that cannot read its file either leaves them as they are
    r = lanon(ns, "member", "--config", config)
    assert r.returncode == 2 and "the lanon rules in place stay" in r.stderr, r.stderr
    assert lanon(ns, "rules", "check", "member", "--closed").returncode == 0
    (files / "elsewhere.toml").rename(files / "coalition.toml")
    assert lanon(ns, "rules", "install", "member", "--config", config).returncode == 0
    assert lanon(ns, "rules", "check", "member", "--config", config).returncode == 0
    assert lanon(ns, "rules", "check", "member", "--closed").returncode == 1
    assert saved(ns).count("-A OUTPUT -j LANON_OUT\n") == 1


def test_a_member_daemon_puts_its_rules_in_before_it_reads_its_key(ns: str, files: Path) -> None:
    (files / "keys" / "a.key").unlink()
    config = str(files / "a.toml")
    r = lanon(ns, "member", "--config", config)
    assert r.returncode == 2 and "a.key" in r.stderr, r.stderr
    assert lanon(ns, "rules", "check", "member", "--config", config).returncode == 0


def test_the_gateway_rules_from_its_coalition_file(ns: str, files: Path) -> None:
    config = str(files / "gw1.toml")
    r = lanon(ns, "rules", "install", "gateway", "--config", config)
    assert r.returncode == 0 and "4 anonymous addresses" in r.stdout, r.stdout + r.stderr
    assert "-A LANON_GW_IN -d 198.18.0.193/32 -j DROP" in saved(ns)
    assert run(ns, "iptables", "-t", "raw", "-F").returncode == 0
    assert lanon(ns, "rules", "check", "gateway", "--config", config).returncode == 1
    (files / "keys" / "gw1.key").unlink()  # a gateway daemon, too, installs them first
    r = lanon(ns, "gateway", "--config", config)
    assert r.returncode == 2 and "gw1.key" in r.stderr, r.stderr
    assert lanon(ns, "rules", "check", "gateway", "--config", config).returncode == 0


WATCHER = """
import sys, time
from pathlib import Path
from lanon.common import iptables
from lanon.member import rules
own, _ = rules.from_config(Path(sys.argv[1]))
rules.install(own)
watch = iptables.Watch(own.rulesets(), lambda jumps: print("restored", flush=True), interval=60)
watch.start()
print("watching", flush=True)
sys.stdin.read()
watch.stop()
"""


def test_on_nf_tables_a_flush_is_repaired_at_once_not_at_the_next_period(
    ns: str, files: Path
) -> None:
    import time

    from lanon.common import iptables

    if not iptables.nft_backend():
        pytest.skip("the legacy xtables backend reports no changes: the watch polls every second")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", WATCHER, str(files / "a.toml")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "watching\n"
        took = []
        for _ in range(5):
            start = time.monotonic()
            assert run(ns, "iptables", "-F").returncode == 0
            while run(ns, "iptables", "-C", "OUTPUT", "-j", "LANON_OUT").returncode != 0:
                assert time.monotonic() - start < 5, "not repaired (the period is 60 s)"
            took.append(time.monotonic() - start)
            assert proc.stdout.readline() == "restored\n"
        print(f"\nrepaired after {[round(t * 1000) for t in took]} ms")
        assert max(took) < 1.0, took  # typically ~50 ms: the kernel reports the flush
    finally:
        proc.communicate("", timeout=30)
