"""The ends of a move: with success (the source deleted), with a leftover (the deletion
refused or failed: the temporary disk stays ILLEGAL as its record), with failure (before
phase 3: the original unlocked, the destination's partial copy to delete)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..agent import errors as agent_errors
from . import cleanup
from .crashpoints import crash_point
from .store import MoveCommand

if TYPE_CHECKING:
    from .move import Engine


def start_source_deletion(engine: Engine, cmd: MoveCommand) -> MoveCommand:
    """Ask the agent to delete the image group on S (postZero = wipe after delete) and record
    the task; a refusal at once ends the move with a leftover."""
    try:
        task_id = engine.agent.delete_image(str(cmd.storage_pool_id), str(cmd.src_storage),
                                            str(cmd.image_group_id), postZero=cmd.wipe_after_delete,
                                            tag=str(cmd.command_id))
    except agent_errors.ImageDoesNotExistInSD:
        return with_success(engine, cmd)
    except (agent_errors.CannotDeleteSharedVolume, agent_errors.ImageDeleteError) as exc:
        return with_leftover(engine, cmd, exc.message)
    crash_point("after_source_delete_accepted")
    cmd = engine.store.record_delete_task(cmd.command_id, engine.owner, engine.lease_seconds, task_id)
    engine.emit("phase", cmd, "deleting the disk on the source domain")
    return cmd


def with_success(engine: Engine, cmd: MoveCommand) -> MoveCommand:
    crash_point("after_source_delete_before_rows")
    task = cmd.delete_task_id
    cmd = engine.store.end_success(cmd.command_id, engine.owner)
    engine.emit("phase", cmd, "moved: the source is deleted and the temporary disk removed")
    engine._clear(task)
    return cmd


def with_leftover(engine: Engine, cmd: MoveCommand, reason: str) -> MoveCommand:
    task = cmd.delete_task_id
    cmd = engine.store.end_leftover(cmd.command_id, engine.owner, reason)
    engine.emit("warning", cmd, f"moved, but the source could not be deleted ({reason}); "
                f"temporary disk {cmd.temporary_disk_id} stays ILLEGAL as the record of the "
                "leftover until cleanup or remove deletes it")
    engine._clear(task)
    return cmd


def with_failure(engine: Engine, cmd: MoveCommand, reason: str, copy_task: Any = None) -> MoveCommand:
    """End before phase 3: the original unlocked, the temporary disk ILLEGAL, and what the copy
    may have written on D deleted now (recorded first, so cleanup retries it if this fails)."""
    cmd = engine.store.end_failure(cmd.command_id, engine.owner, reason)
    crash_point("after_end_failure_commit")
    engine.emit("warning", cmd, f"the move failed ({reason}); the disk stays on its source domain")
    engine._clear(copy_task or cmd.copy_task_id)
    for d in engine.store.claim_deletions(engine.owner, engine.lease_seconds, 1, due_only=False,
                                          image_group_id=cmd.image_group_id,
                                          storage_domain_id=cmd.dest_storage):
        cleanup.execute(engine, d)
    return cmd
