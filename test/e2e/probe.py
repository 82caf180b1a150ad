#!/usr/bin/env python3
"""TCP/UDP reachability probes, run inside a pod's network namespace.

  probe.py serve --tcp 8080,5432 --udp 5353
      Echo servers on every given port (all addresses). Prints "ready" on
      stdout once every socket is bound, then serves until killed.

  probe.py check --timeout 0.6 tcp:10.244.7.2:8080 udp:10.244.7.3:5353 ...
      Runs every probe in parallel and prints one JSON object per line:
      {"target": "tcp:10.244.7.2:8080", "result": "ok" | "timeout" | "refused" | "error: ..."}.
      A probe is "ok" only when the echo comes back byte for byte, so a
      half-open path (request through, reply dropped) is not counted as allowed.

Stdlib only; the harness starts it with `ip netns exec <pod netns> python3 probe.py ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor


def parse_ports(text: str) -> list[int]:
    ports = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        port = int(item)
        if not 1 <= port <= 65535:
            raise argparse.ArgumentTypeError(f"port {port} out of range")
        ports.append(port)
    return ports


def serve(tcp_ports: list[int], udp_ports: list[int]) -> None:
    sel = selectors.DefaultSelector()
    for port in tcp_ports:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(128)
        listener.setblocking(False)
        sel.register(listener, selectors.EVENT_READ, "tcp-listen")
    for port in udp_ports:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("0.0.0.0", port))
        udp.setblocking(False)
        sel.register(udp, selectors.EVENT_READ, "udp")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            if key.data == "tcp-listen":
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, "tcp-conn")
            elif key.data == "tcp-conn":
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if data:
                    try:
                        sock.sendall(data)
                    except OSError:
                        data = b""
                if not data:
                    sel.unregister(sock)
                    sock.close()
            else:
                try:
                    data, peer = sock.recvfrom(4096)
                    sock.sendto(data, peer)
                except OSError:
                    pass


def probe_tcp(host: str, port: int, timeout: float, token: bytes) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(token)
            received = b""
            while len(received) < len(token):
                chunk = conn.recv(len(token) - len(received))
                if not chunk:
                    return "error: connection closed before the echo"
                received += chunk
            return "ok" if received == token else "error: wrong echo"
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as error:
        return f"error: {error.strerror or error}"


def probe_udp(host: str, port: int, timeout: float, token: bytes) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(timeout)
        try:
            udp.connect((host, port))
            udp.send(token)
            data = udp.recv(4096)
            return "ok" if data == token else "error: wrong echo"
        except socket.timeout:
            return "timeout"
        except ConnectionRefusedError:  # ICMP port unreachable
            return "refused"
        except OSError as error:
            return f"error: {error.strerror or error}"


def check(targets: list[str], timeout: float) -> int:
    def run(target: str) -> dict:
        try:
            proto, host, port_text = target.split(":")
            port = int(port_text)
        except ValueError:
            return {"target": target, "result": "error: target must be tcp|udp:IPV4:PORT"}
        token = os.urandom(16).hex().encode()
        if proto == "tcp":
            result = probe_tcp(host, port, timeout, token)
        elif proto == "udp":
            result = probe_udp(host, port, timeout, token)
        else:
            result = f"error: unknown protocol '{proto}'"
        return {"target": target, "result": result}

    with ThreadPoolExecutor(max_workers=max(1, min(32, len(targets)))) as pool:
        for outcome in pool.map(run, targets):
            print(json.dumps(outcome), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    serve_parser = sub.add_parser("serve", help="echo servers")
    serve_parser.add_argument("--tcp", type=parse_ports, default=[])
    serve_parser.add_argument("--udp", type=parse_ports, default=[])
    check_parser = sub.add_parser("check", help="parallel probes")
    check_parser.add_argument("--timeout", type=float, default=0.6)
    check_parser.add_argument("targets", nargs="+")
    args = parser.parse_args()
    if args.mode == "serve":
        if not args.tcp and not args.udp:
            parser.error("serve needs --tcp and/or --udp ports")
        try:
            serve(args.tcp, args.udp)
        except KeyboardInterrupt:
            pass
        return 0
    return check(args.targets, args.timeout)


if __name__ == "__main__":
    threading.current_thread().name = "probe"
    sys.exit(main())
