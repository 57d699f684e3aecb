"""Running iptables: restore a ruleset into our own chains, add or remove the jumps to them, and
check that both are still there.

There is no netlink library for xtables rules (pyroute2 speaks nftables, whose `queue`
statement this kernel lacks), so the iptables tools are run; their output is never parsed.
A check is one `iptables-restore --noflush` of `-C` lines, the ruleset's own rules and jumps:
its exit status says whether every one of them is in the kernel (a few milliseconds, cheap
enough to run every second).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from lanon.common.errors import PrerequisiteError

log = logging.getLogger("lanon.rules")


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise PrerequisiteError(f"{name} is missing: install the 'iptables' package")
    return path


def run(args: list[str], stdin: str | None = None, check: bool = True) -> bool:
    try:
        proc = subprocess.run(args, input=stdin, text=True, capture_output=True, timeout=30)
    except FileNotFoundError as exc:
        raise PrerequisiteError(f"{args[0]} is missing: {exc}") from None
    if check and proc.returncode != 0:
        raise PrerequisiteError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.returncode == 0


def _restore_tool(family: int) -> str:
    return tool("iptables-restore" if family == 4 else "ip6tables-restore")


def _ipt(family: int) -> str:
    return tool("iptables" if family == 4 else "ip6tables")


def restore(family: int, ruleset: str) -> None:
    """Load a ruleset without flushing anything but the chains it declares (atomically per
    table: a chain is never seen empty)."""
    run([_restore_tool(family), "-w", "--noflush"], ruleset)


class Jump(NamedTuple):
    """A jump from a built-in chain into one of ours, inserted first in it."""

    table: str
    builtin: str
    chain: str

    def __str__(self) -> str:
        return f"{self.table} {self.builtin} -> {self.chain}"


def ensure_jump(family: int, table: str, builtin: str, chain: str) -> bool:
    """Insert the jump first in `builtin` unless it is there; True if it had to be inserted."""
    ipt = _ipt(family)
    if run([ipt, "-w", "-t", table, "-C", builtin, "-j", chain], check=False):
        return False
    run([ipt, "-w", "-t", table, "-I", builtin, "1", "-j", chain])
    return True


def remove_chain(family: int, table: str, builtin: str, chain: str) -> None:
    ipt = _ipt(family)
    while run([ipt, "-w", "-t", table, "-D", builtin, "-j", chain], check=False):
        pass
    run([ipt, "-w", "-t", table, "-F", chain], check=False)
    run([ipt, "-w", "-t", table, "-X", chain], check=False)


def has_jump(family: int, table: str, builtin: str, chain: str) -> bool:
    return run([_ipt(family), "-w", "-t", table, "-C", builtin, "-j", chain], check=False)


@dataclass(frozen=True)
class RuleSet:
    """One address family's rules: a ruleset (iptables-restore --noflush format) that declares
    our chains and fills them, and the jumps into them."""

    family: int
    text: str
    jumps: tuple[Jump, ...]

    def checks(self) -> str:
        """The ruleset as `-C` lines, jumps first: restored with --noflush, it changes nothing
        and fails unless every rule and jump is in place. (Chain declarations are left out:
        with --noflush they would empty our chains.)"""
        tables: dict[str, list[str]] = {}
        for j in self.jumps:
            tables.setdefault(j.table, []).append(f"-C {j.builtin} -j {j.chain}")
        table = ""
        for line in self.text.splitlines():
            if line.startswith("*"):
                table = line[1:].strip()
                tables.setdefault(table, [])
            elif line.startswith("-A "):
                tables[table].append("-C " + line[3:])
        return "".join(
            f"*{t}\n" + "".join(c + "\n" for c in checks) + "COMMIT\n"
            for t, checks in tables.items()
            if checks
        )

    def install(self) -> list[Jump]:
        """Put the chains' rules in place, then any missing jump; returns the jumps inserted."""
        restore(self.family, self.text)
        return [j for j in self.jumps if ensure_jump(self.family, *j)]

    def intact(self) -> bool:
        """Whether every rule and jump of the set is in the kernel (one tool run)."""
        args = [_restore_tool(self.family), "-w", "--noflush"]
        if not nft_backend(self.family):
            # The legacy backend would write every table back at COMMIT: --test evaluates the
            # checks against the kernel's tables and commits nothing. (The nf_tables backend
            # skips the checks under --test, and commits nothing when only checking.)
            args.append("--test")
        return run(args, self.checks(), check=False)

    def remove(self) -> None:
        for j in self.jumps:
            remove_chain(self.family, *j)


def install(rulesets: Iterable[RuleSet]) -> list[Jump]:
    return [j for rs in rulesets for j in rs.install()]


def intact(rulesets: Iterable[RuleSet]) -> bool:
    return all(rs.intact() for rs in rulesets)


# nf_tables tells listeners of every ruleset change (the iptables-nft backend included)
NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1


def nft_backend(family: int = 4) -> bool:
    """Whether the iptables tools here are the nf_tables ones (else legacy xtables)."""
    return "nft" in os.path.basename(os.path.realpath(_restore_tool(family)))


def ruleset_events() -> socket.socket | None:
    """A socket that turns readable whenever the nf_tables ruleset changes (needs
    CAP_NET_ADMIN), or None where there is none. Only the fact counts: the messages are read and
    thrown away, never parsed."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError:
        return None
    try:
        sock.bind((0, 0))
        sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
        sock.setblocking(False)
    except OSError:
        sock.close()
        return None
    return sock


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:  # ENOBUFS: events were lost while we were away; a check follows
            continue


RETRY = 0.1  # seconds before a failed check is tried again


BACKSTOP = 10  # times the interval between timed looks when changes are notified


class Watch:
    """Checks rule sets from a thread of its own (the daemon's loop never waits for iptables)
    and puts back whatever is missing: after a firewall reload, an `iptables -F` or `-X`.

    On the nf_tables backend it checks as soon as the kernel reports a ruleset change, so a
    flush is repaired within milliseconds; and every `interval` seconds whatever the backend
    (legacy xtables reports nothing). `restored(inserted_jumps)` is called from that thread
    after each repair; it must be thread-safe (logging and prometheus_client are)."""

    def __init__(
        self,
        rulesets: Sequence[RuleSet],
        restored: Callable[[list[Jump]], None],
        interval: float = 1.0,
        events: bool = True,
    ) -> None:
        self.rulesets = tuple(rulesets)
        self.restored = restored
        self.interval = interval
        self.events = events
        self.failures = 0
        self._stop = threading.Event()
        self._wake: tuple[socket.socket, socket.socket] | None = None  # made by start()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """One look; True if everything was in place, False if something was put back."""
        broken = [rs for rs in self.rulesets if not rs.intact()]
        if not broken:
            return True
        self.restored(install(broken))
        return False

    def _run(self, wake: socket.socket) -> None:
        try:
            events = ruleset_events() if self.events and nft_backend() else None
        except PrerequisiteError:
            events = None  # no iptables here: every check fails, and says so
        watched = [wake] + ([events] if events is not None else [])
        failing = 0  # checks that failed in a row (e.g. a chain deleted under our restore)
        try:
            while True:
                # With nf_tables notifications every change wakes us at once: the timed look
                # is only a backstop (each look forks iptables, which costs the daemon CPU).
                wait = RETRY if failing else self.interval * (1 if events is None else BACKSTOP)
                readable, _, _ = select.select(watched, [], [], wait)
                if self._stop.is_set():
                    return
                if events is not None and events in readable:
                    _drain(events)
                try:
                    self.check()
                except Exception as exc:  # a failing iptables must not end the watch
                    failing += 1
                    self.failures += 1
                    if failing in (3, 30) or failing % 300 == 0:
                        log.error("checking the lanon rules failed %d times: %s", failing, exc)
                else:
                    failing = 0
        finally:
            if events is not None:
                events.close()

    def start(self) -> None:
        self._wake = socket.socketpair()
        self._thread = threading.Thread(
            target=self._run, args=(self._wake[0],), name="lanon-rules-watch", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._wake is None or self._thread is None:
            return
        with contextlib.suppress(OSError):
            self._wake[1].send(b"\0")
        self._thread.join(timeout=5)
        for sock in self._wake:
            sock.close()


def shipped_rules(
    name: str, values: dict[str, str], repeat: dict[str, list[str]] | None = None
) -> str:
    """A rules file of deploy/iptables with @NAME@ placeholders filled; a line holding a
    placeholder of `repeat` is written once for each of its values (none: left out). Comment
    lines stay as they are."""
    from lanon.deploy import path as deploy_path

    out = []
    for line in deploy_path("iptables", name).read_text().splitlines():
        if line.startswith("#"):
            out.append(line)
            continue
        rows = [line]
        for key, options in (repeat or {}).items():
            if f"@{key}@" in line:
                rows = [r.replace(f"@{key}@", v) for r in rows for v in options]
        for key, value in values.items():
            rows = [r.replace(f"@{key}@", value) for r in rows]
        out.extend(rows)
    text = "\n".join(out) + "\n"
    if "@" in "".join(line for line in out if not line.startswith("#")):
        raise ValueError(f"{name}: a placeholder was left unfilled")
    return text
