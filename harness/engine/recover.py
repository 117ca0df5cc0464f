"""Recovery: every unfinished move whose process is gone (its lease expired, or its owner,
a process of this host, no longer runs) is claimed and finished from the storage truth
(DESIGN.md, Recovery): compensate, end with failure, or roll forward. A live process's move is
never taken."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import MovediskError
from .crashpoints import crash_point
from .owner import is_dead
from .store import MoveCommand

if TYPE_CHECKING:
    from .move import Engine


@dataclass
class RecoveryReport:
    finished: list[MoveCommand] = field(default_factory=list)
    skipped: list[MoveCommand] = field(default_factory=list)  # a live process runs them
    errors: list[tuple[MoveCommand, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "finished": [{"command_id": str(c.command_id), "disk_id": str(c.image_group_id),
                          "stage": c.stage} for c in self.finished],
            "skipped": [{"command_id": str(c.command_id), "owner": c.lease_owner,
                         "stage": c.stage} for c in self.skipped],
            "errors": [{"command_id": str(c.command_id), "error": e} for c, e in self.errors],
        }


def stale(cmd: MoveCommand, now: datetime | None = None) -> bool:
    """Whether nobody live runs this move."""
    now = now or datetime.now(timezone.utc)
    return (cmd.lease_owner is None or cmd.lease_expires is None or cmd.lease_expires < now
            or is_dead(cmd.lease_owner))


def recover(engine: Engine) -> RecoveryReport:
    report = RecoveryReport()
    for cmd in engine.store.unfinished_moves():
        if cmd.lease_owner == engine.owner:
            continue
        if not stale(cmd):
            report.skipped.append(cmd)
            continue
        dead = cmd.lease_owner if is_dead(cmd.lease_owner) else None
        claimed = engine.store.claim_move(cmd.command_id, engine.owner, engine.lease_seconds, dead)
        if claimed is None:
            report.skipped.append(cmd)  # another process claimed it first
            continue
        crash_point("inside_recover")
        engine.emit("phase", claimed, f"recovering the move of disk {claimed.image_group_id} "
                    f"(stage {claimed.stage}, was run by {cmd.lease_owner})")
        try:
            report.finished.append(engine.run(claimed, recovering=True))
        except MovediskError as exc:
            engine.store.release_lease(claimed.command_id, engine.owner, exc.message)
            report.errors.append((claimed, exc.message))
    return report
