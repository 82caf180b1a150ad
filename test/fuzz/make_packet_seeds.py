#!/usr/bin/python3
"""Writes the seed frames of fuzz_packet into corpus/packet/ (run once; the
seeds are committed). Each file: one selector byte (bit 0: 0 from_pod, 1
to_pod; bits 1-2: the endpoint configuration, see fuzz_packet.cc), then an
Ethernet frame. Needs python3-scapy."""
import os
import sys

from scapy.all import (ARP, GRE, ICMP, IP, SCTP, TCP, UDP, Dot1Q, Ether, ICMPv6DestUnreach, ICMPv6EchoRequest,
                       ICMPv6ND_NS, ICMPv6PacketTooBig, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                       IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPerror, TCPerror, raw)

POD, PEER = "10.244.1.10", "10.244.2.20"
POD6, PEER6 = "fd00:10:244:1::a", "fd00:10:244:2::14"
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")

# (name, from_pod?, frame)
FRAMES = [
    ("tcp-syn", True, ETH / IP(src=POD, dst=PEER) / TCP(sport=40000, dport=80, flags="S", options=[("MSS", 1460), ("WScale", 7)])),
    ("tcp-synack-in", False, ETH / IP(src=PEER, dst=POD) / TCP(sport=80, dport=40000, flags="SA", seq=5, ack=1)),
    ("tcp-data-in", False, ETH / IP(src=PEER, dst=POD) / TCP(sport=80, dport=40000, flags="PA") / (b"x" * 40)),
    ("udp-dns", True, ETH / IP(src=POD, dst=PEER) / UDP(sport=5353, dport=53) / (b"q" * 12)),
    ("ip-options", False, ETH / IP(src=PEER, dst=POD, options=[b"\x94\x04\x00\x00"]) / UDP(sport=1, dport=2)),
    ("ipv4-first-fragment", False, ETH / IP(src=PEER, dst=POD, flags="MF", id=7) / UDP(sport=53, dport=5353) / (b"a" * 24)),
    ("ipv4-later-fragment", False, ETH / IP(src=PEER, dst=POD, frag=3, id=7, proto=17) / (b"b" * 24)),
    ("icmp-echo", True, ETH / IP(src=POD, dst=PEER) / ICMP(type=8, id=9)),
    ("icmp-frag-needed", False, ETH / IP(src="10.244.0.1", dst=POD) / ICMP(type=3, code=4) / IPerror(src=POD, dst=PEER) / TCPerror(sport=40000, dport=80)),
    ("sctp", False, ETH / IP(src=PEER, dst=POD) / SCTP(sport=3868, dport=3868)),
    ("gre", True, ETH / IP(src=POD, dst=PEER) / GRE() / IP(src="10.244.9.1", dst="10.244.9.2")),
    ("arp", True, ETH / ARP(psrc=POD, pdst=PEER)),
    ("vlan", False, ETH / Dot1Q(vlan=5) / IP(src=PEER, dst=POD) / UDP(sport=1, dport=2)),
    ("tcp6-syn", True, ETH / IPv6(src=POD6, dst=PEER6) / TCP(sport=40000, dport=80, flags="S")),
    ("tcp6-ext-chain", False, ETH / IPv6(src=PEER6, dst=POD6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt() / TCP(sport=80, dport=40000, flags="S")),
    ("ipv6-first-fragment", False, ETH / IPv6(src=PEER6, dst=POD6) / IPv6ExtHdrFragment(m=1, id=3) / UDP(sport=53, dport=5353) / (b"c" * 24)),
    ("ipv6-later-fragment", False, ETH / IPv6(src=PEER6, dst=POD6) / IPv6ExtHdrFragment(offset=3, id=3, nh=17) / (b"d" * 24)),
    ("icmpv6-echo", True, ETH / IPv6(src=POD6, dst=PEER6) / ICMPv6EchoRequest(id=4)),
    ("icmpv6-ns-dad", True, ETH / IPv6(src="::", dst="ff02::1:ff00:a", hlim=255) / ICMPv6ND_NS(tgt=POD6)),
    ("icmpv6-packet-too-big", False, ETH / IPv6(src="fd00:10:244::1", dst=POD6) / ICMPv6PacketTooBig(mtu=1280) / IPv6(src=POD6, dst=PEER6) / IPv6ExtHdrFragment(m=1) / TCP(sport=40000, dport=80)),
    ("icmpv6-unreachable", False, ETH / IPv6(src=PEER6, dst=POD6) / ICMPv6DestUnreach() / IPv6(src=POD6, dst=PEER6) / UDP(sport=5353, dport=53)),
]


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "packet")
    os.makedirs(out, exist_ok=True)
    for name, from_pod, frame in FRAMES:
        for config in range(4):
            selector = (0 if from_pod else 1) | (config << 1)
            with open(os.path.join(out, f"{name}-c{config}"), "wb") as f:
                f.write(bytes([selector]) + raw(frame))
    print(f"{len(FRAMES) * 4} seeds in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
