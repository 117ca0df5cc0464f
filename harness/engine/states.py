"""The stages of a move, the transitions between them, and the one decision the engine
makes at each step: ``next_action(move, task, truth)``, pure (no I/O), so that recovery's
decisions (DESIGN.md, Recovery) can be tested exhaustively.

A move's stage is what the database recorded last (move_disk_commands.stage):

    TEMPORARY_CREATED -> COPYING -> SWITCHED -> DELETING_SOURCE -> ENDED_SUCCESS
          |                 |           |               |-> ENDED_WITH_LEFTOVER
          +-----------------+---> ENDED_FAILURE          (SWITCHED -> ENDED_WITH_LEFTOVER too)

The agent's truth decides what happens next: the task found by the command's tag and
which domains hold a complete copy of the disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Stage(str, Enum):
    TEMPORARY_CREATED = "TEMPORARY_CREATED"  # phase 1 committed
    COPYING = "COPYING"  # the copy task recorded
    SWITCHED = "SWITCHED"  # phase 3 committed: the destination holds the disk
    DELETING_SOURCE = "DELETING_SOURCE"  # the source deletion task recorded
    ENDED_SUCCESS = "ENDED_SUCCESS"
    ENDED_WITH_LEFTOVER = "ENDED_WITH_LEFTOVER"
    ENDED_FAILURE = "ENDED_FAILURE"

    @property
    def final(self) -> bool:
        return self in FINAL

    @property
    def switched(self) -> bool:
        """Phase 3 committed (the database maps the disk on the destination)."""
        return self in (Stage.SWITCHED, Stage.DELETING_SOURCE, Stage.ENDED_SUCCESS,
                        Stage.ENDED_WITH_LEFTOVER)


FINAL = frozenset({Stage.ENDED_SUCCESS, Stage.ENDED_WITH_LEFTOVER, Stage.ENDED_FAILURE})

TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.TEMPORARY_CREATED: frozenset({Stage.COPYING, Stage.SWITCHED, Stage.ENDED_FAILURE}),
    Stage.COPYING: frozenset({Stage.SWITCHED, Stage.ENDED_FAILURE}),
    Stage.SWITCHED: frozenset({Stage.DELETING_SOURCE, Stage.ENDED_SUCCESS, Stage.ENDED_WITH_LEFTOVER}),
    Stage.DELETING_SOURCE: frozenset({Stage.DELETING_SOURCE, Stage.ENDED_SUCCESS,
                                      Stage.ENDED_WITH_LEFTOVER}),
    Stage.ENDED_SUCCESS: frozenset(),
    Stage.ENDED_WITH_LEFTOVER: frozenset(),
    Stage.ENDED_FAILURE: frozenset(),
}


def allowed(src: Stage, dst: Stage) -> bool:
    return dst in TRANSITIONS[src]


class TaskState(str, Enum):
    NONE = "NONE"  # no task of that kind carries the command's tag
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class TaskView:
    """The agent's word on one task of the move (copy or source deletion)."""

    state: TaskState = TaskState.NONE
    task_id: str | None = None
    code: int = 0
    message: str = ""


NO_TASK = TaskView()


@dataclass(frozen=True)
class StorageTruth:
    """What the domains hold of the disk (None: not looked at)."""

    src_complete: bool | None = None  # every volume of the disk on S, legal
    src_present: bool | None = None  # anything of the image group on S
    dst_complete: bool | None = None  # every volume on D, legal, same checksums as S
    dst_present: bool | None = None  # anything of the image group on D
    # D's data re-read now (Image.verify: qemu-img check, layer checksums recomputed and
    # compared with S's recorded ones): True matches, False corrupt, None not re-read yet.
    dst_verified: bool | None = None


@dataclass(frozen=True)
class MoveView:
    stage: Stage
    recovering: bool = False  # another process started it; its own process is gone


class Action(str, Enum):
    START_COPY = "START_COPY"
    RECORD_COPY = "RECORD_COPY"
    WAIT_COPY = "WAIT_COPY"
    SWITCH = "SWITCH"  # phase 3
    END_FAILURE = "END_FAILURE"  # temporary disk ILLEGAL, original unlocked, D's copy to delete
    COMPENSATE = "COMPENSATE"  # END_FAILURE with nothing written on D
    START_DELETE = "START_DELETE"
    RECORD_DELETE = "RECORD_DELETE"
    WAIT_DELETE = "WAIT_DELETE"
    END_SUCCESS = "END_SUCCESS"
    END_LEFTOVER = "END_LEFTOVER"
    STUCK = "STUCK"  # neither domain holds a complete copy: touch nothing, tell a human
    VERIFY_COPY = "VERIFY_COPY"  # re-read D's data, then decide again (before a switch or a delete)
    DONE = "DONE"


def needs_truth(move: MoveView, copy: TaskView, delete: TaskView) -> bool:
    """Whether ``next_action`` needs the storage truth for this state (it costs agent calls)."""
    if move.stage.final:
        return False
    if move.stage in (Stage.TEMPORARY_CREATED, Stage.COPYING):
        return copy.state in (TaskState.SUCCEEDED, TaskState.FAILED) or (
            copy.state is TaskState.NONE and (move.stage is Stage.COPYING or move.recovering))
    if move.stage is Stage.SWITCHED:
        return delete.state is TaskState.NONE
    return delete.state is TaskState.NONE  # DELETING_SOURCE, the agent forgot the task


def next_action(move: MoveView, copy: TaskView, delete: TaskView,
                truth: StorageTruth | None = None) -> Action:
    """What to do next with a move at ``move.stage``, given its copy and deletion tasks as the
    agent reports them and what the domains hold. Never deletes the only complete copy, and
    never switches to, nor deletes S in favour of, a copy on D whose data was not re-read
    (VERIFY_COPY first) or read back corrupt (DESIGN.md: durable before switch, never delete
    the last complete copy)."""
    t = truth or StorageTruth()
    action = _next_action(move, copy, delete, t)
    if action is Action.SWITCH or action is Action.START_DELETE:
        if t.dst_verified is None:
            return Action.VERIFY_COPY
        if t.dst_verified is False:
            if action is Action.SWITCH and t.src_complete is not False:
                return Action.END_FAILURE  # S intact: the corrupt copy on D goes as a failed one
            return Action.STUCK  # after phase 3 (or S incomplete): keep both copies, tell a human
    return action


def _next_action(move: MoveView, copy: TaskView, delete: TaskView, t: StorageTruth) -> Action:
    """next_action before the verification of D's data is taken into account."""
    stage = move.stage
    if stage.final:
        return Action.DONE

    if stage in (Stage.TEMPORARY_CREATED, Stage.COPYING):
        if copy.state is TaskState.RUNNING:
            return Action.RECORD_COPY if stage is Stage.TEMPORARY_CREATED else Action.WAIT_COPY
        if copy.state is TaskState.SUCCEEDED:
            if stage is Stage.TEMPORARY_CREATED:
                return Action.RECORD_COPY
            if t.dst_complete:
                return Action.SWITCH  # durable, verified copy on D: roll forward
            if t.src_complete is False:
                return Action.STUCK  # D incomplete and S incomplete: touch nothing
            return Action.END_FAILURE
        if copy.state is TaskState.FAILED:
            if stage is Stage.TEMPORARY_CREATED:
                return Action.RECORD_COPY
            if t.src_complete is False:
                # The database says S holds the disk, the storage disagrees (a lost commit):
                # D may hold the only copy. Roll forward if it is complete, else stop.
                return Action.SWITCH if t.dst_complete else Action.STUCK
            return Action.END_FAILURE
        # No copy task carries the tag.
        if stage is Stage.TEMPORARY_CREATED:
            if not move.recovering:
                return Action.START_COPY
            if t.src_complete is False:
                return Action.SWITCH if t.dst_complete else Action.STUCK
            return Action.COMPENSATE if not t.dst_present else Action.END_FAILURE
        # COPYING, and the agent does not know the task (lost with its records).
        if t.src_complete is False:
            return Action.SWITCH if t.dst_complete else Action.STUCK
        return Action.END_FAILURE

    # Phase 3 committed: the database maps the disk on D; only the end with success is left.
    if delete.state is TaskState.RUNNING:
        return Action.RECORD_DELETE if stage is Stage.SWITCHED else Action.WAIT_DELETE
    if delete.state is TaskState.SUCCEEDED:
        return Action.RECORD_DELETE if stage is Stage.SWITCHED else Action.END_SUCCESS
    if delete.state is TaskState.FAILED:
        return Action.RECORD_DELETE if stage is Stage.SWITCHED else Action.END_LEFTOVER
    # No deletion task known to the agent.
    if t.src_present is False:
        return Action.END_SUCCESS  # nothing left on S (deleted, its task forgotten)
    if not t.dst_complete:
        return Action.STUCK  # never delete S while D is not a complete copy
    return Action.START_DELETE
