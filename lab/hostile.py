"""A hostile Internet server: answers connections with packets crafted to break a lanon.

Run in the lab's Internet host as

    python -m lanon.lab.hostile --port 8081 --seconds 20

For every SYN to `--port` it answers with:
- SYN-ACKs whose TCP header claims more option bytes than the packet has, options whose
  length is 0 or runs past the header, and an MSS option cut in half;
- IPv4 fragments whose reassembled length would exceed 65,535 bytes, overlapping fragments,
  and a flood of first fragments that never complete;
- an ICMP error that quotes a truncated packet.
It never answers properly, so the client's connection fails; the lanon must go on. With
`--flood N` it also sends N UDP datagrams to random ports of `--flood-to` addresses (the
coalition's anonymous ones). Lab use only: it answers only the peers that reach it and stops
after `--seconds`. It prints what it sent as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import time

from lanon.common.packet import checksum

ME = "203.0.113.10"


def ip_header(src: bytes, dst: bytes, proto: int, payload_len: int, ident: int, frag: int) -> bytes:
    h = bytearray(
        struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, ident, frag, 64, proto, 0, src, dst)
    )
    h[10:12] = struct.pack("!H", checksum(h))
    return bytes(h)


def tcp_segment(
    src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, doff: int, options: bytes
) -> bytes:
    header = (
        struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, 0x12, 65535, 0, 0) + options
    )
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(header))
    csum = checksum(pseudo + header)
    return header[:16] + struct.pack("!H", csum) + header[18:]


def malformed_syn_acks(src: bytes, dst: bytes, sport: int, dport: int, seq: int) -> list[bytes]:
    out = []
    for doff, options in (
        (15, b"\x01\x01\x01\x01"),  # claims 40 option bytes, has 4
        (6, b"\x03\x00\x01\x01"),  # an option of length 0
        (6, b"\x02\xff\x05\xb4"),  # an MSS option of length 255
        (6, b"\x01\x01\x01\x02"),  # an MSS option cut in half by the header's end
        (15, b"\x02\x04"),  # both at once
    ):
        seg = tcp_segment(src, dst, sport, dport, 0x1000, seq + 1, doff, options)
        out.append(ip_header(src, dst, 6, len(seg), random.getrandbits(16), 0) + seg)
    return out


def bad_fragments(src: bytes, dst: bytes, dport: int) -> list[bytes]:
    out = []
    ident = random.getrandbits(16)
    udp = struct.pack("!HHHH", 8081, dport, 8 + 1400, 0) + b"x" * 1400
    out.append(ip_header(src, dst, 17, len(udp), ident, 0x2000) + udp)  # first, more to come
    last = b"y" * 400  # ends beyond 65,535 bytes
    out.append(ip_header(src, dst, 17, len(last), ident, 8184) + last)
    middle = b"z" * 64  # overlaps the first
    out.append(ip_header(src, dst, 17, len(middle), ident, 0x2000 | 100) + middle)
    for _ in range(300):  # first fragments that never complete
        first = struct.pack("!HHHH", 8081, dport, 8 + 64, 0) + b"w" * 64
        out.append(ip_header(src, dst, 17, len(first), random.getrandbits(16), 0x2000) + first)
    return out


def truncated_icmp_error(src: bytes, dst: bytes) -> bytes:
    quoted = ip_header(dst, src, 6, 20, 1, 0)[:24]  # the quoted packet is cut inside its ports
    icmp = bytearray(struct.pack("!BBHI", 3, 3, 0, 0) + quoted)
    icmp[2:4] = struct.pack("!H", checksum(icmp))
    return ip_header(src, dst, 1, len(icmp), random.getrandbits(16), 0) + bytes(icmp)


def serve(port: int, seconds: float, flood: int, flood_to: list[str]) -> dict[str, int]:
    listen = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    listen.settimeout(0.1)
    send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    me = socket.inet_aton(ME)
    sent = {"syns": 0, "crafted": 0, "flood": 0, "errors": 0}

    def emit(packet: bytes) -> None:
        try:
            send.sendto(packet, (socket.inet_ntoa(packet[16:20]), 0))
            sent["crafted"] += 1
        except OSError:
            sent["errors"] += 1

    end = time.monotonic() + seconds
    rng = random.Random(5)
    targets = [socket.inet_aton(a) for a in flood_to]
    flooded = 0
    while time.monotonic() < end:
        if flooded < flood and targets:
            for _ in range(min(500, flood - flooded)):
                udp = struct.pack("!HHHH", rng.randrange(1, 65536), rng.randrange(1, 65536), 16, 0)
                dst = rng.choice(targets)
                try:
                    send.sendto(
                        ip_header(me, dst, 17, 16, rng.getrandbits(16), 0) + udp + b"flood!!!",
                        (socket.inet_ntoa(dst), 0),
                    )
                    sent["flood"] += 1
                except OSError:
                    sent["errors"] += 1
                flooded += 1
        try:
            data = listen.recv(65536)
        except TimeoutError:
            continue
        ihl = (data[0] & 0x0F) * 4
        if len(data) < ihl + 20:
            continue
        sport, dport, seq = struct.unpack_from("!HHI", data, ihl)
        flags = data[ihl + 13]
        if dport != port or flags & 0x12 != 0x02:  # only SYNs to our port
            continue
        sent["syns"] += 1
        client = data[12:16]
        for packet in malformed_syn_acks(me, client, dport, sport, seq):
            emit(packet)
        for packet in bad_fragments(me, client, sport):
            emit(packet)
        emit(truncated_icmp_error(me, client))
    listen.close()
    send.close()
    return sent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--flood", type=int, default=0, help="UDP datagrams to the anonymous addresses")
    p.add_argument("--flood-to", nargs="*", default=[])
    a = p.parse_args()
    print(json.dumps(serve(a.port, a.seconds, a.flood, a.flood_to)), flush=True)


if __name__ == "__main__":
    main()
