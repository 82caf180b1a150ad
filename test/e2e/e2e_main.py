"""How every e2e test program runs, so each test file holds only its steps.

Skip (exit 77, "SKIPPED: ...") when the machine cannot run it; otherwise run
the scenario inside the node's context manager, show the agent's log tail and
keep the run's logs (--logs-dir) when a step fails, check that nothing of the
run is left on the host, and exit 0 (pass), 1 (fail) or 130 (interrupted).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from typing import Callable

from expect import ok, require
from node import Node, skip_reason_if_unprivileged

SKIP = 77


def arguments(description: str | None) -> argparse.ArgumentParser:
    """The options every e2e program takes; add a test's own before parse_args()."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--logs-dir", help="where to keep the run's logs when the test fails")
    return parser


def run_e2e(name: str, logs_dir: str | None, make_node: Callable[[], Node], scenario: Callable[[Node], None],
            skip_reason: Callable[[], str | None] = lambda: None,
            on_failure: Callable[[Node], None] = lambda node: None) -> int:
    """Runs `scenario` on the node `make_node` builds; returns the exit code."""
    start = time.monotonic()
    reason = skip_reason_if_unprivileged() or skip_reason()
    if reason:
        print(f"SKIPPED: {reason}")
        return SKIP
    node = make_node()
    try:
        with node:
            try:
                scenario(node)
            except BaseException:
                print("\n--- agent log (tail) ---\n" + node.agent_log_tail(80), file=sys.stderr)
                on_failure(node)
                node.options.keep_logs_dir = logs_dir
                raise
        problems = node.leftovers()
        require(not problems, "\n".join(problems))
        ok("nothing of the run is left on the host (netns, bpffs mount, run dir, agent process)")
    except AssertionError as failure:
        print(f"\nFAIL: {failure}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; cleaned up", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        return 1
    print(f"\n{name}: all steps passed ({time.monotonic() - start:.1f} s)")
    return 0
