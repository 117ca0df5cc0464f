"""Removing an ILLEGAL temporary disk, as the removal plan says: DB_ONLY (the original is
still on the source domain: only rows go) or STORAGE_AND_DB (the agent deletes the source
image group first; the rows go only once it confirmed)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import DeletionBlocked
from . import cleanup

if TYPE_CHECKING:
    from .move import Engine


@dataclass
class Removal:
    disk_id: uuid.UUID
    plan: str  # DB_ONLY or STORAGE_AND_DB
    storage_domain_id: uuid.UUID | None = None
    image_group_id: uuid.UUID | None = None

    def to_json(self) -> dict[str, Any]:
        return {"disk_id": str(self.disk_id), "plan": self.plan,
                "storage_domain_id": str(self.storage_domain_id) if self.storage_domain_id else None,
                "deleted_image_group_id": str(self.image_group_id) if self.image_group_id else None}


def remove(engine: Engine, disk_id: uuid.UUID) -> Removal:
    """Remove temporary disk ``disk_id``; DeletionBlocked (it stays ILLEGAL) when the agent
    refuses or fails to delete the leftover."""
    deletion = engine.store.prepare_removal(disk_id, engine.owner, engine.lease_seconds)
    if deletion is None:
        engine.emit("info", str(disk_id), "removed: the source data is the live disk, only "
                    "the temporary disk's rows went")
        return Removal(disk_id, "DB_ONLY")
    out = cleanup.execute(engine, deletion)
    if not out.done:
        raise DeletionBlocked(
            f"temporary disk {disk_id} stays ILLEGAL: its leftover (image group "
            f"{deletion.image_group_id} on storage domain {deletion.storage_domain_id}) could not "
            f"be deleted: {out.error}", attempts=out.attempts)
    return Removal(disk_id, "STORAGE_AND_DB", deletion.storage_domain_id, deletion.image_group_id)
