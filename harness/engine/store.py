"""The engine's data access: one typed method per stored function, returning dataclasses.

Every method is one statement, ``SELECT * FROM fn(%s, ...)`` through :func:`movedisk.db.call`,
on an autocommit connection: one round trip, one transaction (each phase and its stage change
commit together because one function does both). When a crash point inside a transaction is
armed, the call runs in an explicit transaction and the process dies before COMMIT.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg

from ..db import call, function_query, user_errors
from . import retry
from .crashpoints import armed, crash_point
from .states import Stage

T = TypeVar("T")


_FIELDS: dict[type, frozenset[str]] = {}


def _row(cls: type[T], row: dict[str, Any]) -> T:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = frozenset(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    return cls(**{k: v for k, v in row.items() if k in names})


@dataclass(frozen=True)
class MoveCommand:
    command_id: uuid.UUID
    image_group_id: uuid.UUID
    src_storage: uuid.UUID
    dest_storage: uuid.UUID
    storage_pool_id: uuid.UUID
    temporary_disk_id: uuid.UUID
    wipe_after_delete: bool
    stage: str
    copy_task_id: uuid.UUID | None
    delete_task_id: uuid.UUID | None
    lease_owner: str | None
    lease_expires: datetime | None
    last_error: str | None
    recovered: bool
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None

    @property
    def stage_(self) -> Stage:
        return Stage(self.stage)

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, (uuid.UUID, datetime)) else v)
                for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class StorageDeletion:
    """A pending storage deletion (image_groups_to_be_deleted): MOVE_FAILED, the partial copy
    of a failed move on its destination; SOURCE_AFTER_MOVE, a moved disk's refused source."""

    image_group_id: uuid.UUID
    storage_domain_id: uuid.UUID
    storage_pool_id: uuid.UUID | None
    reason: str
    temporary_disk_id: uuid.UUID | None
    wipe_after_delete: bool
    attempts: int
    last_error: str | None

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, (uuid.UUID, datetime)) else v)
                for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class Placement:
    image_guid: uuid.UUID
    parentid: uuid.UUID | None
    imagestatus: int
    storage_domain_id: uuid.UUID | None


class Store:
    """The stored functions the engine calls, on one autocommit connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        if not conn.autocommit:
            conn.autocommit = True
        self.conn = conn
        self.calls: Counter[str] = Counter()  # stored functions called, by name
        self.round_trips = 0  # statements or pipelines sent, each waited for

    # --- plumbing ------------------------------------------------------------------------

    def _call(self, function: str, *args: Any, crash: str | None = None) -> list[dict[str, Any]]:
        self.calls[function] += 1
        self.round_trips += 1
        if crash and armed(crash):
            with self.conn.transaction():
                rows = call(self.conn, function, *args)
                crash_point(crash)
            return rows
        return call(self.conn, function, *args)

    def _moves(self, function: str, *args: Any, crash: str | None = None) -> list[MoveCommand]:
        return [_row(MoveCommand, r) for r in self._call(function, *args, crash=crash)]

    def _one(self, function: str, *args: Any, crash: str | None = None) -> MoveCommand:
        rows = self._moves(function, *args, crash=crash)
        assert len(rows) == 1, (function, rows)
        return rows[0]

    # --- moves ---------------------------------------------------------------------------

    def start_move(self, command_id: uuid.UUID, disk_id: uuid.UUID, dest: uuid.UUID, owner: str,
                   lease: int) -> MoveCommand:
        return self._one("StartMoveDiskCommand", command_id, disk_id, dest, owner, lease, None,
                         crash="inside_phase1_before_commit")

    def start_move_with_placement(self, command_id: uuid.UUID, disk_id: uuid.UUID,
                                  dest: uuid.UUID, owner: str,
                                  lease: int) -> tuple[MoveCommand, list[Placement]]:
        """start_move and the disk's placement in one round trip (a pipeline: one implicit
        transaction, phase 1 then the read; an error in phase 1 raises and reads nothing)."""
        if armed("inside_phase1_before_commit"):
            return self.start_move(command_id, disk_id, dest, owner, lease), self.placement(disk_id)
        self.calls["StartMoveDiskCommand"] += 1
        self.calls["GetImageGroupPlacement"] += 1
        self.round_trips += 1
        start = function_query(self.conn, "StartMoveDiskCommand", 6)
        where = function_query(self.conn, "GetImageGroupPlacement", 1)
        with user_errors():
            with self.conn.pipeline():
                moved = self.conn.execute(start, (command_id, disk_id, dest, owner, lease, None))
                placed = self.conn.execute(where, (disk_id,))
            rows = moved.fetchall()
            volumes = placed.fetchall()
        assert len(rows) == 1, ("StartMoveDiskCommand", rows)
        return _row(MoveCommand, rows[0]), [_row(Placement, r) for r in volumes]

    def get_move(self, command_id: uuid.UUID) -> MoveCommand | None:
        rows = self._moves("GetMoveDiskCommand", command_id)
        return rows[0] if rows else None

    def unfinished_moves(self) -> list[MoveCommand]:
        return self._moves("GetUnfinishedMoveDiskCommands")

    def moves_of_disk(self, disk_id: uuid.UUID) -> list[MoveCommand]:
        return self._moves("GetMoveDiskCommandsByImageGroupId", disk_id)

    def claim_move(self, command_id: uuid.UUID, owner: str, lease: int,
                   dead_owner: str | None = None) -> MoveCommand | None:
        rows = self._moves("ClaimMoveDiskCommand", command_id, owner, lease, dead_owner)
        return rows[0] if rows else None

    def renew_lease(self, command_id: uuid.UUID, owner: str, lease: int) -> MoveCommand:
        return self._one("RenewMoveDiskCommandLease", command_id, owner, lease)

    def release_lease(self, command_id: uuid.UUID, owner: str, error: str | None = None) -> bool:
        return bool(self._call("ReleaseMoveDiskCommandLease", command_id, owner, error)[0][
            "releasemovediskcommandlease"])

    def record_copy_task(self, command_id: uuid.UUID, owner: str, lease: int,
                         task_id: str) -> MoveCommand:
        return self._one("RecordMoveDiskCopyTask", command_id, owner, lease, uuid.UUID(task_id))

    def switch(self, command_id: uuid.UUID, owner: str, lease: int) -> MoveCommand:
        return self._one("SwitchMoveDiskCommand", command_id, owner, lease,
                         crash="inside_phase3_before_commit")

    def record_delete_task(self, command_id: uuid.UUID, owner: str, lease: int,
                           task_id: str) -> MoveCommand:
        return self._one("RecordMoveDiskDeleteTask", command_id, owner, lease, uuid.UUID(task_id))

    def end_success(self, command_id: uuid.UUID, owner: str) -> MoveCommand:
        return self._one("EndMoveDiskCommandWithSuccess", command_id, owner,
                         crash="inside_end_success_before_commit")

    def end_leftover(self, command_id: uuid.UUID, owner: str, error: str) -> MoveCommand:
        return self._one("EndMoveDiskCommandWithLeftover", command_id, owner, error,
                         crash="inside_end_leftover_before_commit")

    def end_failure(self, command_id: uuid.UUID, owner: str, error: str) -> MoveCommand:
        return self._one("EndMoveDiskCommandWithFailure", command_id, owner, error,
                         crash="inside_end_failure_before_commit")

    def placement(self, disk_id: uuid.UUID) -> list[Placement]:
        return [_row(Placement, r) for r in self._call("GetImageGroupPlacement", disk_id)]

    # --- deletions -----------------------------------------------------------------------

    def deletions(self) -> list[StorageDeletion]:
        return [_row(StorageDeletion, r) for r in self._call("GetAllImageGroupsToBeDeleted")]

    def deletion_lease_owners(self) -> list[str]:
        return [r["lease_owner"] for r in self._call("GetImageGroupDeletionLeases")]

    def claim_deletions(self, owner: str, lease: int, limit: int, due_only: bool = True,
                        image_group_id: uuid.UUID | None = None,
                        dead_owners: list[str] | None = None,
                        storage_domain_id: uuid.UUID | None = None) -> list[StorageDeletion]:
        return [_row(StorageDeletion, r) for r in self._call(
            "ClaimImageGroupsToBeDeleted", owner, lease, limit, due_only, retry.base_seconds(),
            retry.CAP_SECONDS, image_group_id, dead_owners, storage_domain_id)]

    def prepare_removal(self, disk_id: uuid.UUID, owner: str, lease: int) -> StorageDeletion | None:
        rows = self._call("PrepareTemporaryDiskRemoval", disk_id, owner, lease)
        return _row(StorageDeletion, rows[0]) if rows else None

    def confirm_deletion(self, d: StorageDeletion, owner: str) -> bool:
        return bool(self._call("ConfirmStorageDeletion", d.image_group_id, d.storage_domain_id,
                               owner)[0]["confirmstoragedeletion"])

    def deletion_failed(self, d: StorageDeletion, owner: str, error: str) -> int:
        row = self._call("RecordStorageDeletionFailure", d.image_group_id, d.storage_domain_id,
                         owner, error)[0]
        return int(row["recordstoragedeletionfailure"] or 0)

    # --- lookups used to resolve what a user typed ----------------------------------------

    def disks_by_alias(self, alias: str) -> list[dict[str, Any]]:
        return self._call("GetBaseDisksByAlias", alias)

    def domain_by_name(self, name: str) -> list[dict[str, Any]]:
        return self._call("Getstorage_domain_staticByName", name)

    def temporary_disks(self) -> list[dict[str, Any]]:
        return self._call("GetAllTemporaryDisks")
