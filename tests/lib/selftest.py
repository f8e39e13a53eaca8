"""Tiny helpers for the harness self-tests (scripts, not unittest): timestamped notes,
checks that raise, and exit 77 (ctest SKIP_RETURN_CODE) for a missing prerequisite."""
import sys
import time

T0 = time.monotonic()


def note(msg):
    print(f"[{time.monotonic() - T0:6.2f}s] {msg}", flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)
    note("ok: " + msg)


def need(cond, msg):
    """Missing prerequisite: exit 77 (ctest SKIP_RETURN_CODE)."""
    if not cond:
        print(f"SKIP: {msg}", file=sys.stderr)
        sys.exit(77)
