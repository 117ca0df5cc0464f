"""Deletions the storage still owes: the partial copy of a failed move on its destination,
the leftover of a finished move on its source. Each is recorded (storage_deletions) until the
agent confirms it; a failed attempt is retried with backoff (:mod:`.retry`). Never deletes the
only complete copy of a disk."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..agent import errors as agent_errors
from ..errors import MovediskError
from . import retry
from .crashpoints import crash_point
from .owner import is_dead
from .store import StorageDeletion

if TYPE_CHECKING:
    from .move import Engine


@dataclass
class Outcome:
    deletion: StorageDeletion
    done: bool
    error: str = ""
    attempts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"deletion": self.deletion.to_json(), "done": self.done, "error": self.error,
                "attempts": self.attempts}


@dataclass
class CleanupReport:
    done: list[Outcome] = field(default_factory=list)
    failed: list[Outcome] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"deleted": [o.to_json() for o in self.done],
                "failed": [o.to_json() for o in self.failed]}


def safe_to_delete(engine: Engine, d: StorageDeletion) -> str:
    """Why deleting ``d`` would lose data ('' when it would not): the disk's volumes must be
    mapped by the database on another domain, complete and legal there, and read back intact
    now (Image.verify against the checksums recorded with the copy being deleted)."""
    from .move import verify_data
    placement = engine.store.placement(d.image_group_id)
    if not placement:
        if d.reason == "MOVE_FAILED":
            return ""  # the disk is gone from the database: nothing of it is live
        return f"disk {d.image_group_id} has no volumes in the database"
    domains = {p.storage_domain_id for p in placement}
    if d.storage_domain_id in domains:
        return (f"the database maps disk {d.image_group_id} on storage domain "
                f"{d.storage_domain_id}: it is the live disk there")
    own = {str(p.image_guid) for p in placement}
    for sd in domains:
        if sd is None:
            return f"a volume of disk {d.image_group_id} is on no domain in the database"
        try:
            infos = engine.agent.volumes_info(str(d.storage_pool_id), str(sd), str(d.image_group_id))
        except agent_errors.AgentError as exc:
            return f"cannot confirm the copy of disk {d.image_group_id} on {sd}: {exc.message}"
        legal = {i["volUUID"] for i in infos if i.get("legality") == "LEGAL"}
        if not own <= legal:
            return (f"storage domain {sd} does not hold a complete copy of disk "
                    f"{d.image_group_id}; its other copy is kept")
        # The data itself, re-read now: a copy corrupted since it was written is no copy.
        try:
            why = verify_data(engine.agent, d.storage_pool_id, d.image_group_id, sd,
                              reference=d.storage_domain_id, volumes=own)
        except agent_errors.AgentError as exc:
            return f"cannot verify the copy of disk {d.image_group_id} on {sd}: {exc.message}"
        if why:
            return (f"the copy of disk {d.image_group_id} on storage domain {sd} is not intact "
                    f"({why}); its other copy is kept")
    return ""


def execute(engine: Engine, d: StorageDeletion) -> Outcome:
    """Delete one claimed image group at the agent and confirm it, or record the failure."""
    crash_point("inside_cleanup")
    s = engine.store
    reason = safe_to_delete(engine, d)
    if not reason:
        try:
            tag = f"deletion:{d.image_group_id}:{d.storage_domain_id}"
            running = [t for t in engine.agent.tasks_by_tag(tag) if t.get("taskState") != "finished"]
            if running:
                task_id = running[-1]["taskID"]
            else:
                task_id = engine.agent.delete_image(str(d.storage_pool_id), str(d.storage_domain_id),
                                                    str(d.image_group_id), postZero=d.wipe_after_delete,
                                                    tag=tag)
            st = engine.agent.wait_task(task_id, timeout=max(60.0, engine.lease_seconds))
            if st.get("taskResult") != "success":
                reason = str(st.get("message") or "the deletion task failed")
            engine._clear(task_id)
        except agent_errors.AgentError as exc:
            if not retry.deletion_already_done(exc):
                reason = exc.message
    if not reason:
        crash_point("removal_after_agent_delete")
        s.confirm_deletion(d, engine.owner)
        engine.emit("info", str(d.temporary_disk_id or d.image_group_id),
                    f"deleted image group {d.image_group_id} on storage domain {d.storage_domain_id}")
        return Outcome(d, True, attempts=d.attempts)
    attempts = s.deletion_failed(d, engine.owner, reason)
    engine.emit("warning", str(d.temporary_disk_id or d.image_group_id),
                f"could not delete image group {d.image_group_id} on storage domain "
                f"{d.storage_domain_id}: {reason}")
    return Outcome(d, False, reason, attempts or d.attempts + 1)


def run(engine: Engine, due_only: bool = True, batch: int = 20) -> CleanupReport:
    """Every due deletion once: claimed a batch at a time (other processes skip them)."""
    report = CleanupReport()
    seen: set[Any] = set()
    # Deletions held by a process of this host that died are taken at once (not at lease expiry).
    dead = sorted({o for o in engine.store.deletion_lease_owners() if is_dead(o)}) or None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        claimed = [d for d in engine.store.claim_deletions(engine.owner, engine.lease_seconds, batch,
                                                           due_only, dead_owners=dead)
                   if (d.image_group_id, d.storage_domain_id) not in seen]
        if not claimed:
            break
        for d in claimed:
            seen.add((d.image_group_id, d.storage_domain_id))
            try:
                out = execute(engine, d)
            except MovediskError as exc:  # e.g. the database refused: keep going with the rest
                out = Outcome(d, False, exc.message)
            (report.done if out.done else report.failed).append(out)
    return report

