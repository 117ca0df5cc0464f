"""Who runs a move: ``host:pid:start`` identifies one process (the start time guards
against a reused pid); a lease names its owner, and a process on the same host can tell
that the owner died without waiting for the lease to expire."""

from __future__ import annotations

import os
import socket
import uuid


def _start_time(pid: int) -> str | None:
    """The process start time in clock ticks since boot (/proc/PID/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    rest = data[data.rfind(")") + 2 :].split()
    if not rest or rest[0] in ("Z", "X"):  # a zombie or dead process no longer runs
        return None
    return rest[19] if len(rest) > 19 else None


def me() -> str:
    """This process's owner id."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or uuid.uuid4().hex[:8]}"


def handoff() -> str:
    """An owner id for a lease handed to a process not started yet (never alive)."""
    return f"{socket.gethostname()}:handoff:{uuid.uuid4().hex}"


def is_dead(owner: str | None) -> bool:
    """True when ``owner`` is a process of this host that no longer runs (or a handoff
    token, which is never alive). False when it runs or when it lives on another host."""
    if not owner:
        return False
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return False
    if parts[1] == "handoff":
        return False  # the handed-to process claims it; others wait for the lease to expire
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    return _start_time(pid) != parts[2]
