#!/usr/bin/env python3
"""One long-lived TCP connection to a probe server's echo port.

Run inside a pod's netns: connects once, then every --interval sends a
numbered line and waits up to --timeout for its echo, printing one JSON line
per round trip: {"t": <CLOCK_MONOTONIC seconds>, "ok": true, "n": N} or, on
the first failure, {"t": ..., "ok": false, "error": "..."} and exits 1. The
clock is the system-wide monotonic clock, comparable with the test's.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=0.5)
    args = parser.parse_args()

    def report(**fields) -> None:
        print(json.dumps({"t": time.monotonic(), **fields}), flush=True)

    try:
        conn = socket.create_connection((args.host, args.port), timeout=2.0)
    except OSError as error:
        report(ok=False, error=f"connect: {error}")
        return 1
    conn.settimeout(args.timeout)
    n = 0
    while True:
        n += 1
        message = f"{n:08d}\n".encode()
        try:
            conn.sendall(message)
            received = b""
            while len(received) < len(message):
                chunk = conn.recv(len(message) - len(received))
                if not chunk:
                    raise OSError("connection closed by the peer")
                received += chunk
            if received != message:
                raise OSError(f"echo mismatch: {received!r}")
        except OSError as error:
            report(ok=False, n=n, error=str(error) or type(error).__name__)
            return 1
        report(ok=True, n=n)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
