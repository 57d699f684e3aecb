"""The benchmark's real labs (root): the lanon beside the plain path, in the same run.

For each lab (members, schedule, key graph): the plain path's RTT and download speed (the
gateway's own route to the Internet host), the lanon's (from member1), the added RTT, the
first packet after a quiet spell, another member's RTT while member1 downloads (loaded), the
idle CPU of a member and of the leading gateway, the round rate while busy, and the DC-net
bound of a download. The lab's server sends with CUBIC (lab/internet.py); a few downloads are
made again with it on BBR, which many large servers use and which the lanon's ACKs (one a
round, RFC 3449's filtering) and queues under load slow more. Figures go to a table and, with
matplotlib, to a PNG plot.

The DC-net bound of one download, in the same run: the LAN's frame rate R, divided as the lanon
divides it. Each packet of a download reaches the member in an INBOUND broadcast, which the LAN
delivers to all n members; each round, busy_rate times a second, the LAN delivers the OPEN and
the output to the n members and the n members' contributions (star) or relays' frames (tree)
towards the leader, P parts each (P for the smallest vector, the download's ACKs need little).
So bound = (R - busy_rate * n * (2 + 2P)) / n packets a second, of one cell's payload each.
Every delivery on the lab's bridge costs the same two cores that run every host, so the star
and tree divide it alike here; on a switch the star's leader port would bind first.

R is measured two ways. "bound" (as in every version before): the plain download's TCP
segments a second. That is not the bridge's frame rate: with segmentation offload a veth hands
the bridge 64 KiB packets, one delivery for some 45 segments, and the plain path's speed moves
with the machine's load by a factor of two and more. "raw bound": full-size frames sent from
gateway1 to member1 by one process as fast as it can (lab/blast.py), as member1's interface
counted them: the raw frame rate the issue asks for, or a floor of it (a Python loop of sends
is slower than the bridge).

Each lab also makes one more 5 MB download with the server's TCP traced (bench/serverview.py):
how much of the file the first half of its time delivered, and the second half's rate.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import serverview

URL = "http://203.0.113.10/5mb.bin"
DOWNLOADS = 5  # lanon downloads a lab; the median is reported, and the spread
BBR_DOWNLOADS = 3  # and as many with the server on BBR, where this kernel has it
LONG = "50mb.bin"  # a download past its start: the speed a long transfer keeps
LONG_SIZE = 50 * 1024 * 1024
LONG_DOWNLOADS = 2
INTERNET = "203.0.113.10"
COLD_ECHOES = 8
LOADED_ECHOES = 6  # another member's echoes during a 50 MB download, 20-40 ms apart


@dataclass
class LabFigures:
    members: int
    schedule: str
    key_graph: str
    plain_rtt: float  # ms, median
    lanon_rtt: float  # ms, median, while a conversation goes on
    cold_rtt: float  # ms, median of first packets after a quiet spell
    plain_mbs: float
    lanon_mbs: float  # median of DOWNLOADS downloads
    lanon_spread: tuple[float, float]  # their lowest and highest: a shared machine is noisy
    bbr_mbs: float  # median of BBR_DOWNLOADS with the server on BBR (nan: no BBR)
    long_mbs: float  # median of LONG_DOWNLOADS of 50 MB (the 5 MB are much of them their start)
    failed: int  # downloads that failed, left out of the figures
    member_cpu: float  # share of a core, idle
    leader_cpu: float
    busy_rate: float  # rounds/s during the download
    bound_mbs: float  # the DC-net bound of one download, R from the plain download (module text)
    raw_fps: float  # frames a second the LAN carried from one process (lab/blast.py)
    raw_bound_mbs: float  # the DC-net bound with R = raw_fps
    loaded_rtt: float = float("nan")  # ms, median: member2's echoes while member1 downloads
    server_view: str = ""  # one more 5 MB download, as the server saw it (bench/serverview.py)

    @property
    def added_rtt(self) -> float:
        return self.lanon_rtt - self.plain_rtt


def _cpu_seconds(pid: int) -> float:
    """CPU time of `pid` and of its children (a member's pacer) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(_cpu_seconds(int(c)) for c in children)


def cpu_shares(pids: list[int], seconds: float = 6.0) -> list[float]:
    before = [_cpu_seconds(p) for p in pids]
    time.sleep(seconds)
    return [(_cpu_seconds(p) - b) / seconds for p, b in zip(pids, before, strict=True)]


def rtt_times(
    lab: object, host: str, count: int, low: float, high: float, seed: int = 1
) -> list[float]:
    """RTTs of echoes at random gaps in [low, high] s (lab/rtt.py, its gaps drawn from `seed`):
    at every phase of the rounds, where a ping every T seconds can keep hitting one."""
    argv = [sys.executable, "-m", "lanon.lab.rtt", INTERNET, str(count), str(low), str(high)]
    argv.append(str(seed))
    r = lab.run(host, argv)  # type: ignore[attr-defined]
    return [float(x) for x in r.stdout.split()]


def _curl(url: str, *more: str) -> list[str]:
    """A download of `url` into nothing, failing on an HTTP error, at most 120 s."""
    return ["curl", "-fsS", "-m", "120", "-o", "/dev/null", *more, url]


def download(lab: object, host: str, congestion: str = "", url: str = "") -> float:
    """MB/s of one download of `url` (URL) from `host`; with `congestion`, the server sends
    with that TCP congestion control instead of the lab's (CUBIC: lab/internet.py). NaN if it
    failed."""
    url = url or URL
    url = f"{url}?congestion={congestion}" if congestion else url
    r = lab.run(
        host,
        _curl(url, "-w", "%{speed_download}"),
        check=False,
    )  # type: ignore[attr-defined]
    try:
        return float(r.stdout) / 1e6 if r.returncode == 0 else float("nan")
    except ValueError:
        return float("nan")


def _done(speeds: Iterable[float]) -> list[float]:
    """The downloads that did not fail; [nan] if none."""
    return [s for s in speeds if not math.isnan(s)] or [float("nan")]


def measure(members: int, schedule: str = "star", key_graph: str = "full") -> LabFigures:
    """One lab's figures; `key_graph` 'trusted' runs trusted-gateway mode instead of DC-net
    (it has no key graph), 'filtered' a full key graph with the members' `filter_inbound` on."""
    from lanon.common.coalition import load
    from lanon.lab.lab import Lab, LabSpec

    lab = Lab(f"bench{members}")
    if lab.is_up():
        lab.down()
    trusted = key_graph == "trusted"
    lab.up(
        LabSpec(
            lab.name,
            members=members,
            schedule=schedule,
            key_graph="full" if key_graph in ("trusted", "filtered") else key_graph,
            mode="trusted" if trusted else "dcnet",
            filter_inbound=key_graph == "filtered",
        )
    )
    try:
        time.sleep(3)
        member_cpu, leader_cpu = cpu_shares([lab.pids["member1"], lab.pids["gateway1"]])
        # first packets: the lanon quiet for longer than `linger`, then an echo at a random
        # phase of the idle rounds (a ping 1.5 s after the last one's answer fell just after
        # an idle round each time, and waited a whole `idle_interval`: 46 ms, not about 30)
        c = load(lab.dir / "coalition.toml")
        idle = c.rounds.idle_interval
        cold = rtt_times(
            lab, "member1", COLD_ECHOES, 1.5, 1.5 + 2 * idle, random.randrange(1 << 30)
        )
        plain = rtt_times(lab, "gateway1", 40, 0.015, 0.025)
        lanon = rtt_times(lab, "member1", 150, 0.015, 0.025)  # (a conversation: rounds are busy)
        plain_tried = [download(lab, "gateway1") for _ in range(2)]
        start = lab.leader_status()["rounds_completed"]
        t0 = time.monotonic()
        lanon_tried = [download(lab, "member1") for _ in range(DOWNLOADS)]
        rounds = lab.leader_status()["rounds_completed"] - start
        rate = rounds / (time.monotonic() - t0)
        try:
            traced, view = serverview.record(lambda: download(lab, "member1"))
            seen = serverview.describe(view, traced)
        except OSError as exc:
            seen = f"no server's view: {exc}"
        bbr_tried = [download(lab, "member1", "bbr") for _ in range(BBR_DOWNLOADS)]
        with (lab.www / LONG).open("wb") as f:
            f.write(os.urandom(LONG_SIZE))
        long_url = f"http://{INTERNET}/{LONG}"
        long_tried = [download(lab, "member1", url=long_url) for _ in range(LONG_DOWNLOADS)]
        loaded = loaded_rtt(lab, long_url)
        raw = raw_frame_rate(lab, c.coalition.lan_mtu)
        plain_mbs = statistics.median(_done(plain_tried))
        speeds, bbr, long = _done(lanon_tried), _done(bbr_tried), _done(long_tried)
        return LabFigures(
            members,
            schedule,
            key_graph,
            statistics.median(plain) if plain else float("nan"),
            statistics.median(lanon) if lanon else float("nan"),
            statistics.median(cold) if cold else float("nan"),
            plain_mbs,
            statistics.median(speeds),
            (min(speeds), max(speeds)),
            statistics.median(bbr),
            statistics.median(long),
            sum(math.isnan(t) for t in plain_tried + lanon_tried + bbr_tried + long_tried),
            member_cpu,
            leader_cpu,
            rate,
            dcnet_bound(c, plain_mbs * 1e6 / (c.coalition.lan_mtu - 52), rate),  # TCP segments
            raw,
            dcnet_bound(c, raw, rate),
            loaded,
            seen,
        )
    finally:
        lab.down()


def loaded_rtt(lab: Any, url: str) -> float:
    """Median RTT of another member's echoes (member2's) while member1 downloads `url`: what a
    download costs the others' conversations. Their packets wait for rounds that come slower
    while every host's cores carry the download, and may meet its ACKs in an express slot.
    NaN if the download failed or ended before the echoes did (they would not be loaded), or
    if fewer than half of them came back."""
    dl = lab.popen(
        "member1",
        _curl(url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.1)  # (its start: the connection, the first round trips)
        times = rtt_times(lab, "member2", LOADED_ECHOES, 0.02, 0.04)
        loaded = dl.poll() is None
    finally:
        try:
            dl.wait(timeout=150)
        except subprocess.TimeoutExpired:
            dl.kill()
            dl.wait()
    if not loaded or dl.returncode != 0 or len(times) < LOADED_ECHOES / 2:
        return float("nan")
    return statistics.median(times)


def raw_frame_rate(lab: object, lan_mtu: int, seconds: float = 1.0) -> float:
    """Frames a second the lab's LAN carried from gateway1 to member1, full-size (lab/blast.py),
    as member1's interface counted them over the blaster's time; NaN if it could not be had."""
    from pyroute2 import IPRoute

    lab_: Any = lab
    size = lan_mtu + 14  # (and the Ethernet header)

    def eth0(host: str) -> tuple[str, int]:
        """`host`'s LAN interface: its address and the frames it received."""
        with IPRoute(netns=lab_.ns(host)) as ipr:
            found = ipr.link("get", index=ipr.link_lookup(ifname="eth0")[0])[0]
            return found.get("IFLA_ADDRESS"), found.get("IFLA_STATS64").get("rx_packets")

    try:
        mac, before = eth0("member1")
        argv = [sys.executable, "-m", "lanon.lab.blast", "eth0", mac, str(seconds), str(size)]
        r = lab_.run("gateway1", argv, timeout=30)
        if r.returncode != 0:
            return float("nan")
        took = float(r.stdout.split()[1])
        return (eth0("member1")[1] - before) / took
    except Exception as exc:  # (a figure lost, not the lab's row)
        print(f"  (no raw frame rate: {exc})")
        return float("nan")


def dcnet_bound(c: Any, frames: float, busy_rate: float) -> float:
    """MB/s of one download the LAN of coalition `c` could carry as the lanon divides its
    `frames` a second."""
    from lanon.common.reservation import MIN_ENTRIES

    if math.isnan(frames):
        return float("nan")  # (no plain download or blast: no frame rate)
    n = len(c.members)
    # a download's rounds: its ACKs mostly in the express slot, the area of a quiet round
    parts = len(c.part_lens(c.rounds.express_slots, MIN_ENTRIES))
    left = max(0.0, frames - busy_rate * n * (2 + 2 * parts))
    return left / n * c.receive_mss / 1e6


def table(rows: list[LabFigures]) -> None:
    print(
        f"  {'lab':<22} {'plain RTT':>9} {'lanon RTT':>9} {'added':>7} {'cold':>7} {'loaded':>7} "
        f"{'plain':>8} {'lanon':>8} {'spread':>10} {'BBR':>8} {'50 MB':>8} {'bound':>8} "
        f"{'raw':>8} {'raw bound':>9} "
        f"{'idle member':>11} "
        f"{'idle leader':>11} "
        f"{'busy':>8}"
    )
    print(
        f"  {'':<22} {'ms':>9} {'ms':>9} {'ms':>7} {'ms':>7} {'ms':>7} {'MB/s':>8} {'MB/s':>8} "
        f"{'MB/s':>10} "
        f"{'MB/s':>8} {'MB/s':>8} {'MB/s':>8} {'kframe/s':>8} {'MB/s':>9} "
        f"{'% core':>11} {'% core':>11} {'rounds/s':>8}"
    )
    for f in rows:
        print(
            f"  {f'{f.members} members, {f.schedule}, {f.key_graph}':<22} {f.plain_rtt:9.3f} "
            f"{f.lanon_rtt:9.2f} {f.added_rtt:7.2f} {f.cold_rtt:7.1f} {f.loaded_rtt:7.1f} "
            f"{f.plain_mbs:8.1f} "
            f"{f.lanon_mbs:8.2f} {f'{f.lanon_spread[0]:.1f}-{f.lanon_spread[1]:.1f}':>10} "
            f"{f.bbr_mbs:8.2f} {f.long_mbs:8.2f} {f.bound_mbs:8.1f} {f.raw_fps / 1000:8.0f} "
            f"{f.raw_bound_mbs:9.1f} {f.member_cpu * 100:11.1f} "
            f"{f.leader_cpu * 100:11.1f} "
            f"{f.busy_rate:8.0f}",
            flush=True,
        )
        if f.server_view:
            print(f"    one more 5 MB download, the server's view: {f.server_view}")
        if f.failed:
            print(f"    ({f.failed} downloads of this lab failed: left out of its figures)")


def plot(
    rows: list[LabFigures], simulated: dict[str, list[tuple[int, float, float]]], out: Path
) -> None:
    """Added RTT and goodput against members: the lab's points, the simulated LAN's lines
    (CPU not counted), and the plain path beside them."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  (no plot: matplotlib is not installed; ./run bench installs it)")
        return
    fig, (rtt, put) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, points in simulated.items():
        xs = [p[0] for p in points]
        rtt.plot(xs, [p[1] for p in points], "--", label=f"simulated LAN, {label}")
        put.plot(xs, [p[2] for p in points], "--", label=f"simulated LAN, {label}")
    for key in sorted({(f.schedule, f.key_graph) for f in rows}):
        sel = sorted((f for f in rows if (f.schedule, f.key_graph) == key), key=lambda f: f.members)
        label = f"lab, {key[0]}, {key[1]}"
        rtt.plot([f.members for f in sel], [f.added_rtt for f in sel], "o-", label=label)
        put.plot([f.members for f in sel], [f.lanon_mbs for f in sel], "o-", label=label)
    if rows:
        rtt.axhline(
            statistics.median(f.plain_rtt for f in rows), color="grey", lw=1, label="plain path RTT"
        )
        put.axhline(
            statistics.median(f.plain_mbs for f in rows), color="grey", lw=1, label="plain path"
        )
    rtt.set(xlabel="members", ylabel="added RTT (ms, median)", title="latency")
    put.set(xlabel="members", ylabel="goodput (MB/s)", title="one download", yscale="log")
    for ax in (rtt, put):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"  plot: {out}")


def observer_figures(seconds_each: float = 11.0) -> None:
    """The switch observer of tests/integration/test_timing.py, on a lab of 4 members."""
    import tempfile

    from lanon.lab import observer
    from lanon.lab.lab import Lab, LabSpec

    lab = Lab("benchobs")
    if lab.is_up():
        lab.down()
    lab.up(LabSpec(lab.name, members=4))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            v = observer.observe(lab, seconds_each, Path(tmp))
    finally:
        lab.down()
    delays = ", ".join(
        f"member{m + 1} {busy:.0f}/{idle:.0f}" for m, (busy, idle) in v.delays_us.items()
    )
    print(
        f"  switch observer, 4 members, one busy at a time: right in {v.correct} of {v.windows} "
        f"windows of 25 rounds ({v.accuracy:.0%}; chance {v.chance:.0%} ± {v.noise:.0%}); "
        f"rounds with uneven frames: {v.uneven_rounds}"
    )
    print(f"  median answer delay after OPEN, busy/idle (µs): {delays}")


def blame_figures(runs: int = 3) -> None:
    """Blame in a lab of 4 members whose member4 jams: how long from the first upload to
    member4's exclusion on every gateway, and from the accused round to the verdict."""
    import subprocess

    from lanon.lab.lab import Lab, LabSpec

    lab = Lab("benchjam")
    if lab.is_up():
        lab.down()
    lab.up(LabSpec(lab.name, members=4, gateways=2, jammer="member4"))
    seen, traced = [], []
    try:
        body = lab.dir / "upload.bin"
        body.write_bytes(bytes(range(256)) * 4096)
        for _ in range(runs):
            _readmit(lab, "member4")
            upload = lab.popen(
                "member1",
                [
                    "curl",
                    "-s",
                    "--max-time",
                    "20",
                    "--data-binary",
                    f"@{body}",
                    "http://203.0.113.10/upload",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            start = time.monotonic()
            try:
                while time.monotonic() < start + 20:
                    status = [lab.status(g.name)["blame"] for g in lab.gateways]
                    if all(b["excluded"] for b in status):
                        seen.append(time.monotonic() - start)
                        traced += [b["last_exclusion_ms"] for b in status if b["last_exclusion_ms"]]
                        break
                    time.sleep(0.05)
            finally:
                upload.kill()
                upload.communicate()
    finally:
        lab.down()
    if not seen:
        print("  blame: member4 was not excluded within 20 s")
        return
    print(
        f"  blame, 4 members, member4 jams ({len(seen)} runs): excluded on every gateway "
        f"{statistics.median(seen) * 1000:.0f} ms after the upload began (median; "
        f"{min(seen) * 1000:.0f} to {max(seen) * 1000:.0f} ms, polled every 50 ms); "
        f"from the accused round to the verdict: "
        f"{statistics.median(traced):.0f} ms (median of {len(traced)})"
    )


def _readmit(lab: Any, name: str) -> None:
    """Let `name` back in and wait until no gateway excludes it (it may jam again meanwhile,
    on what traffic is left: then again)."""
    import subprocess

    quiet_since = time.monotonic()
    deadline = quiet_since + 30
    while time.monotonic() < deadline:
        out = [lab.status(g.name)["blame"]["excluded"] for g in lab.gateways]
        if any(out):
            quiet_since = time.monotonic()
            sock = str(lab.socket_path(lab.gateways[0].name))
            readmit = [sys.executable, "-m", "lanon.cli", "readmit", "--socket", sock, name]
            subprocess.run(readmit, capture_output=True)
        elif time.monotonic() - quiet_since > 2.0:
            return
        time.sleep(0.2)
