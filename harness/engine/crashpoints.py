"""Named crash points: a test-only switch that SIGKILLs the process at a chosen place.

``MOVEDISK_CRASH_AT=after_phase1_commit movedisk move ...`` kills the process (SIGKILL, no
cleanup, no flush) the first time it reaches ``crash_point("after_phase1_commit")``. Several
names may be given, comma-separated. Without the variable a crash point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "MOVEDISK_CRASH_AT"

# Every point the engine passes, in the order a move meets them (issue 11 item 1).
POINTS: dict[str, str] = {
    "before_phase1": "the move is validated by nobody yet: nothing written",
    "inside_phase1_before_commit": "phase 1 ran, its transaction not committed",
    "after_phase1_commit": "phase 1 committed, no copy asked of the agent",
    "after_copy_accepted": "the agent accepted the copy; the task is not recorded",
    "after_copy_recorded": "the copy task recorded (stage COPYING)",
    "during_copy": "the copy is running at the agent",
    "after_copy_before_phase3": "the copy succeeded; D not yet re-read, phase 3 not started",
    "inside_phase3_before_commit": "phase 3 ran, its transaction not committed",
    "after_phase3_commit": "phase 3 committed; the source deletion not started",
    "after_source_delete_accepted": "the agent accepted the source deletion; not recorded",
    "during_source_delete": "the source deletion recorded, running at the agent",
    "after_source_delete_before_rows": "the source is deleted; the temporary disk not removed",
    "inside_end_success_before_commit": "the end with success ran, not committed",
    "inside_end_leftover_before_commit": "the end with a leftover ran, not committed",
    "inside_end_failure_before_commit": "the end with failure ran, not committed",
    "after_end_failure_commit": "the end with failure committed; the partial copy not deleted",
    "removal_after_agent_delete": "a deletion (removal, cleanup) done by the agent; rows not removed",
    "inside_recover": "recovery claimed a stale move and has not acted on it",
    "inside_cleanup": "cleanup claimed a deletion and has not asked the agent",
}


def armed(name: str) -> bool:
    """Whether the switch names this point (callers may then open an explicit transaction)."""
    value = os.environ.get(ENV)
    return bool(value) and name in value.split(",")


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if MOVEDISK_CRASH_AT names ``name``."""
    if name not in POINTS:
        raise ValueError(f"unknown crash point {name!r}")
    if armed(name):
        os.kill(os.getpid(), signal.SIGKILL)
