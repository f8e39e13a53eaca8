"""Tiny helpers for the harness self-tests (scripts, not unittest): timestamped notes,
checks that raise, and exit 77 (ctest SKIP_RETURN_CODE) for a missing prerequisite."""
import os
import shutil
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


def need_peers(tools):
    """Root, the given programs and slixmpp, or exit 77."""
    need(os.geteuid() == 0, "must run as root (setpriv, unshare -m)")
    for tool in tools:
        need(shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}"),
             f"{tool} not installed (tools/deps.sh XFED_TEST_PKGS)")
    import peers
    peers.quiet_slixmpp()
    try:
        import slixmpp  # noqa: F401
    except ImportError:
        need(False, "python3-slixmpp not installed; run with /usr/bin/python3")
