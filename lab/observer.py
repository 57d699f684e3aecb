"""The switch observer (issue: sender anonymity against timing): watches every member's answers
on the LAN and guesses which member is busy.

It captures OPEN and CONTRIB frames on the lab's switch (tcpdump on the bridge, nanosecond
stamps) while one member at a time runs a download loop, each member in turn. Per window of
`window` rounds it measures each member's answer delays (OPEN to its first CONTRIB), frame
counts and sizes, and guesses the busy member: the one whose median delay in the window stands
highest above its own median over the whole capture (an observer that has learnt each host's
usual pace), or any member whose counts or sizes differ from the others'. Chance is one in
the number of members; a lanon that answers at a moment fixed by the round stays near it.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import statistics
import struct
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lanon.common import wire
from lanon.member.pacer import REPORT_EVERY

URL = "http://203.0.113.10/5mb.bin"
# Ethernet header 14 bytes, then the lanon header: version, type (offset 15), coalition,
# sender (offset 20); OPEN and CONTRIB bodies start with their round (offset 22).
EDGE = 5  # rounds left out at each end of a capture
FILTER = f"ether proto {wire.ETHERTYPE:#06x} and (ether[15] = 1 or ether[15] = 2)"


@dataclass
class Answers:
    """One phase of the capture: rounds -> OPEN time, and per member its CONTRIB frames."""

    busy: int  # member index
    opens: dict[int, float] = field(default_factory=dict)
    contribs: dict[int, dict[int, list[tuple[float, int]]]] = field(
        default_factory=lambda: defaultdict(dict)
    )  # round -> member -> [(time, size)]


@dataclass(frozen=True)
class Verdict:
    windows: int
    correct: int
    members: int
    uneven_rounds: int  # rounds where the members' frame counts or sizes differ
    delays_us: dict[int, tuple[float, float]]  # member -> (median busy, median idle)
    late: float = 0.0  # the share of answers the members themselves counted as late

    @property
    def accuracy(self) -> float:
        return self.correct / self.windows if self.windows else float("nan")

    @property
    def chance(self) -> float:
        return 1 / self.members

    @property
    def noise(self) -> float:
        """One standard deviation of a guesser at chance, over this many windows."""
        p = self.chance
        return math.sqrt(p * (1 - p) / max(1, self.windows))


def read_pcap(path: Path) -> list[tuple[float, bytes]]:
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    scale = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    record = struct.Struct(endian + "IIII")
    out, at = [], 24
    while at + 16 <= len(data):
        sec, frac, incl, _orig = record.unpack_from(data, at)
        at += 16
        out.append((sec + frac * scale, data[at : at + incl]))
        at += incl
    return out


def parse(frames: list[tuple[float, bytes]], busy: int) -> Answers:
    answers = Answers(busy)
    for t, f in frames:
        if len(f) < 30:
            continue
        kind, sender, rnd = (
            f[15],
            struct.unpack_from("!H", f, 20)[0],
            struct.unpack_from("!Q", f, 22)[0],
        )
        if kind == wire.MsgType.OPEN:
            answers.opens.setdefault(rnd, t)
        elif kind == wire.MsgType.CONTRIB:
            answers.contribs[rnd].setdefault(sender, []).append((t, len(f)))
    return answers


def tcpdump(lab: Any, host: str, out: Path, *args: str) -> subprocess.Popen[bytes]:
    """tcpdump in a lab namespace writing every frame to `out` as it comes, once it listens.
    -Z root: Debian's tcpdump otherwise drops to a user that cannot write to pytest's tmp."""
    argv = ["tcpdump", "--immediate-mode", "-B", "32768", "-Z", "root", "-U", "-n", "-w"]
    cap: subprocess.Popen[bytes] = lab.popen(
        host, [*argv, str(out), *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    said = b""
    while cap.stderr is not None and b"listening" not in said:
        line = cap.stderr.readline()
        if not line:
            cap.kill()
            raise RuntimeError(f"tcpdump did not start: {(said + line).decode(errors='replace')}")
        said += line
    return cap


def capture_phase(lab: Any, busy: str, index: int, seconds: float, out: Path) -> Answers:
    """Capture while member `busy` downloads in a loop."""
    cap = tcpdump(lab, "lan", out, "-i", "br0", "--time-stamp-precision=nano", FILTER)
    try:
        loop = f"while :; do curl -s -m 30 -o /dev/null {URL}; done"
        load = lab.popen(
            busy,
            ["timeout", str(seconds + 1), "sh", "-c", loop],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # the download is under way
        time.sleep(seconds)
        load.kill()
        load.wait()
    finally:
        time.sleep(0.2)
        cap.send_signal(signal.SIGINT)
        cap.communicate(timeout=10)
    return parse(read_pcap(out), index)


def judge(phases: list[Answers], members: int, window: int = 25) -> Verdict:
    delays: dict[int, list[float]] = defaultdict(list)
    per_phase: list[list[dict[int, float]]] = []  # phase -> rounds -> member -> delay
    uneven = 0
    for ph in phases:
        rounds = []
        # The capture's first and last rounds may be cut short by its start and stop.
        for rnd in sorted(ph.contribs)[EDGE:-EDGE]:
            opened = ph.opens.get(rnd)
            got = ph.contribs[rnd]
            if opened is None or len(got) != members:
                continue  # the capture's edges, or a round aborted
            shapes = {tuple(sorted(size for _t, size in frames)) for frames in got.values()}
            uneven += len(shapes) > 1
            row = {m: min(t for t, _s in frames) - opened for m, frames in got.items()}
            for m, d in row.items():
                delays[m].append(d)
            rounds.append(row)
        per_phase.append(rounds)
    baseline = {m: statistics.median(d) for m, d in delays.items()}
    windows = correct = 0
    busy_delays: dict[int, list[float]] = defaultdict(list)
    idle_delays: dict[int, list[float]] = defaultdict(list)
    for ph, rounds in zip(phases, per_phase, strict=True):
        for row in rounds:
            for m, d in row.items():
                (busy_delays if m == ph.busy else idle_delays)[m].append(d)
        for start in range(0, len(rounds) - window + 1, window):
            chunk = rounds[start : start + window]
            score = {m: statistics.median(r[m] for r in chunk) - baseline[m] for m in baseline}
            guess = max(score, key=lambda m: score[m])
            windows += 1
            correct += guess == ph.busy
    summary = {
        m: (
            statistics.median(busy_delays[m]) * 1e6 if busy_delays[m] else float("nan"),
            statistics.median(idle_delays[m]) * 1e6 if idle_delays[m] else float("nan"),
        )
        for m in sorted(baseline)
    }
    return Verdict(windows, correct, members, uneven, summary)


def observe(
    lab: Any,
    seconds_each: float,
    workdir: Path,
    window: int = 25,
    min_windows: int = 0,
    max_seconds: float = 60.0,
) -> Verdict:
    """Each member busy in turn for `seconds_each`; the observer's verdict over all. Until the
    verdict covers `min_windows` windows (or each member was busy for `max_seconds`), again,
    for as long as the round rate seen so far says it takes."""
    members = [h.name for h in lab.members]
    phases: list[Answers] = []
    before = answers_late(lab)
    seconds, spent = seconds_each, 0.0
    while True:
        for i, name in enumerate(members):
            out = workdir / f"observer-{name}-{len(phases)}.pcap"
            phases.append(capture_phase(lab, name, i, seconds, out))
        spent += seconds
        verdict = judge(phases, len(members), window)
        if verdict.windows >= min_windows or spent >= max_seconds:
            break
        per_second = max(verdict.windows / spent, 0.1)
        seconds = 1.2 * (min_windows - verdict.windows) / per_second
        seconds = min(max(seconds, 2.0), max_seconds - spent)
    time.sleep(REPORT_EVERY + 0.3)  # the pacers' last counts of late answers, read
    after = answers_late(lab)
    answered, late = (after[k] - before[k] for k in (0, 1))
    return dataclasses.replace(verdict, late=late / answered if answered else 0.0)


def answers_late(lab: Any) -> tuple[float, float]:
    """Every member's (answers, late answers) so far, from their own counters."""
    answered = late = 0.0
    for m in lab.members:
        st = lab.status(m.name)
        answered += st["answers"]["sent"]
        late += st["answers"]["late"]
    return answered, late
