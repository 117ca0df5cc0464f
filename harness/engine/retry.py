"""What is retried, and when: a pure policy, no I/O."""

from __future__ import annotations

import os

from ..agent import errors as agent_errors

BASE_SECONDS = 5
CAP_SECONDS = 600


def base_seconds() -> int:
    """The first retry's delay (MOVEDISK_RETRY_BASE_SECONDS, else 5 s)."""
    return int(os.environ.get("MOVEDISK_RETRY_BASE_SECONDS", BASE_SECONDS))


def backoff(attempts: int, base: int | None = None, cap: int = CAP_SECONDS) -> int:
    """Seconds before the next attempt after ``attempts`` failures: base, 2 base, 4 base, ... cap.
    (ClaimImageGroupsToBeDeleted applies the same rule in the database.)"""
    if base is None:
        base = base_seconds()
    if attempts <= 0:
        return 0
    return int(min(cap, base * 2 ** min(attempts - 1, 30)))


def deletion_already_done(exc: BaseException) -> bool:
    """An agent error that means the image group is not there any more: the deletion is done."""
    return isinstance(exc, agent_errors.ImageDoesNotExistInSD)


def deletion_retryable(exc: BaseException) -> bool:
    """Deletion errors worth retrying later: refused while dependents exist, the agent busy or
    away, a failed task. Anything else is retried too (the record is never dropped), but these
    are the expected ones."""
    return isinstance(
        exc,
        (
            agent_errors.CannotDeleteSharedVolume,
            agent_errors.ImageLocked,
            agent_errors.AgentUnavailable,
            agent_errors.ImageDeleteError,
            agent_errors.TaskAborted,
        ),
    )
