"""Start a move (validation and phase 1) and run it to its end: load, decide, act, save.

Every step is idempotent: the stage the database recorded and the agent's tasks found by the
command's tag decide the next step (:func:`states.next_action`), so running a step twice, or
after a crash anywhere inside it, ends in the same state. A copy is never started twice: the
tag is looked up first.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..agent import COPY, StorageClient
from ..agent import errors as agent_errors
from ..errors import ConnectionFailed, MovediskError
from . import end
from .crashpoints import crash_point
from .events import Event, EventSink, ignore
from .owner import me
from .states import (
    NO_TASK,
    Action,
    MoveView,
    Stage,
    StorageTruth,
    TaskState,
    TaskView,
    needs_truth,
    next_action,
)
from .store import MoveCommand, Store

DEFAULT_LEASE_SECONDS = 30
# Placements kept for moves started by this engine but not run yet (see Engine.start).
MAX_KEPT_PLACEMENTS = 1024
# Reconnections one run may make (each one bounded by db.Backoff) before it gives up.
MAX_RECONNECTS = 5


class MoveStuck(MovediskError):
    """Neither domain holds a complete copy of the disk: the engine touches nothing."""

    code = "MD300"
    exit_code = 27


class MoveRecordLost(MovediskError):
    """A failover lost the move's own record: the storage decides what is left (verify)."""

    code = "MD303"
    exit_code = 15


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is a lost or refused database connection."""
    from ..db import is_transient

    return is_transient(exc) or (exc.__cause__ is not None and is_transient(exc.__cause__))


class LeaseLost(MovediskError):
    """Another process took the move over (this one was too slow to renew its lease)."""

    code = "MD301"
    exit_code = 5


@dataclass
class Engine:
    """What every command needs: the database, the agent, who we are, where events go.

    ``owner`` names the process holding the leases (default: this process, ``host:pid:start``);
    threads of one process that run moves independently must each pass their own."""

    store: Store
    agent: StorageClient
    owner: str = ""
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    on_event: EventSink = ignore
    poll_seconds: float = 0.02
    max_poll_seconds: float = 0.25
    # A new connection to the primary after a lost one (db.PrimarySession.reconnect), or None.
    reconnect: Callable[[], Any] | None = None
    # Why the last re-read of a copy (verify_copy) found it not intact ('' when it was).
    last_verify_error: str = field(default="", repr=False)
    # The disk's own volume ids per move (command id), read with phase 1 (start) or once per
    # run, dropped when the run returns: a moving disk is LOCKED from phase 1 to its end, so
    # its volumes cannot change while the move runs.
    _own: dict[uuid.UUID, frozenset[str]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.owner:
            self.owner = me()

    def emit(self, kind: str, cmd: MoveCommand | str, message: str = "", **kw: Any) -> None:
        cid = str(cmd.command_id) if isinstance(cmd, MoveCommand) else cmd
        stage = cmd.stage if isinstance(cmd, MoveCommand) else ""
        self.on_event(Event(kind, cid, message, stage=kw.pop("stage", stage), **kw))

    # --- starting ------------------------------------------------------------------------

    def start(self, disk_id: uuid.UUID, dest: uuid.UUID, owner: str | None = None,
              command_id: uuid.UUID | None = None) -> MoveCommand:
        """Validation and phase 1 in one transaction; the lease goes to ``owner`` (default: us)."""
        crash_point("before_phase1")
        if owner is None or owner == self.owner:
            # This process runs the move: the disk's volumes come in the same round trip.
            cmd, placement = self.store.start_move_with_placement(
                command_id or uuid.uuid4(), disk_id, dest, self.owner, self.lease_seconds)
            if len(self._own) >= MAX_KEPT_PLACEMENTS:
                self._own.clear()  # moves started here and never run here: forget them
            self._own[cmd.command_id] = frozenset(str(p.image_guid) for p in placement)
        else:
            cmd = self.store.start_move(command_id or uuid.uuid4(), disk_id, dest, owner,
                                        self.lease_seconds)
        crash_point("after_phase1_commit")
        self.emit("phase", cmd, "phase 1 committed: disk locked, temporary disk created")
        return cmd

    # --- running -------------------------------------------------------------------------

    def run(self, cmd: MoveCommand, recovering: bool = False) -> MoveCommand:
        """Drive a move we hold the lease of to a final stage.

        When the database connection is lost (the primary died, a failover) and the engine
        has a ``reconnect``, it reaches the primary again (bounded backoff) and goes on from
        the move as the database then records it, never from the ``cmd`` it had: the last
        commit may not have survived the failover."""
        try:
            return self._run(cmd, recovering)
        finally:
            self._own.pop(cmd.command_id, None)

    def _run(self, cmd: MoveCommand, recovering: bool) -> MoveCommand:
        tag = str(cmd.command_id)
        reconnects = 0
        while True:
            try:
                stage = Stage(cmd.stage)
                if stage.final:
                    return cmd
                copy, delete = self.tasks(tag, cmd)
                view = MoveView(stage, recovering)
                truth = self.truth(cmd) if needs_truth(view, copy, delete) else None
                action = next_action(view, copy, delete, truth)
                if action is Action.VERIFY_COPY:
                    assert truth is not None
                    if not stage.switched:
                        crash_point("after_copy_before_phase3")
                    truth = replace(truth, dst_verified=self.verify_copy(cmd))
                    action = next_action(view, copy, delete, truth)
                cmd = self.act(action, cmd, copy, delete, truth)
            except Exception as exc:
                if self.reconnect is None or not connection_lost(exc):
                    raise
                reconnects += 1
                if reconnects > MAX_RECONNECTS:
                    raise ConnectionFailed(
                        f"lost the database {reconnects} times during the move of disk "
                        f"{cmd.image_group_id}; giving up (movedisk recover finishes it)"
                    ) from exc
                cmd = self._reload_after_reconnect(cmd, exc)
                # What the database now says may be older than what this process did:
                # decide from the storage, as recovery does.
                recovering = True

    def _reload_after_reconnect(self, cmd: MoveCommand, exc: BaseException) -> MoveCommand:
        assert self.reconnect is not None
        self.emit("warning", cmd, f"lost the database ({' '.join(str(exc).split())}); "
                  "reconnecting to the primary")
        self.store.conn = self.reconnect()
        self._own.pop(cmd.command_id, None)
        fresh = self.store.get_move(cmd.command_id)
        if fresh is None:
            raise MoveRecordLost(
                f"the record of move {cmd.command_id} (disk {cmd.image_group_id}) is not on "
                "the primary after a failover (asynchronous replication lost its phase 1); "
                "the storage may hold a copy tagged with that command id"
            )
        if fresh.lease_owner != self.owner:
            raise LeaseLost(f"move {cmd.command_id} is now run by {fresh.lease_owner}")
        self.emit("phase", fresh, f"reconnected: the database records stage {fresh.stage}")
        return fresh

    def tasks(self, tag: str, cmd: MoveCommand) -> tuple[TaskView, TaskView]:
        """The copy and deletion tasks the agent holds for this command (latest of each)."""
        stage = Stage(cmd.stage)
        if stage is Stage.COPYING and cmd.copy_task_id:
            return self._task(str(cmd.copy_task_id)), NO_TASK
        if stage is Stage.DELETING_SOURCE and cmd.delete_task_id:
            return NO_TASK, self._task(str(cmd.delete_task_id))
        copy, delete = NO_TASK, NO_TASK
        for st in self.agent.tasks_by_tag(tag):
            view = _view(st)
            if st.get("verb") == "Image.move":
                copy = view
            elif st.get("verb") == "Image.delete":
                delete = view
        return copy, delete

    def _task(self, task_id: str) -> TaskView:
        try:
            return _view(self.agent.get_task_status(task_id))
        except agent_errors.UnknownTask:
            return NO_TASK

    def truth(self, cmd: MoveCommand) -> StorageTruth:
        """What S and D hold of the disk, compared with the volumes the database knows."""
        own = self.own_volumes(cmd)
        src = self._volumes(cmd, cmd.src_storage)
        dst = self._volumes(cmd, cmd.dest_storage)

        def complete(vols: dict[str, dict[str, Any]] | None) -> bool:
            return vols is not None and all(
                v in vols and vols[v].get("legality") == "LEGAL" for v in own)

        dst_complete = complete(dst) and (src is None or all(
            v not in src or src[v].get("checksum") == dst[v].get("checksum")  # type: ignore[index]
            for v in own))
        return StorageTruth(src_complete=complete(src), src_present=src is not None,
                            dst_complete=dst_complete, dst_present=dst is not None)

    def own_volumes(self, cmd: MoveCommand) -> frozenset[str]:
        """The ids of the disk's own volumes as the database records them (GetImageGroupPlacement),
        read once per run of the move and kept until it ends."""
        own = self._own.get(cmd.command_id)
        if own is None:
            own = frozenset(str(p.image_guid) for p in self.store.placement(cmd.image_group_id))
            self._own[cmd.command_id] = own
        return own

    def verify_copy(self, cmd: MoveCommand) -> bool:
        """Whether D's copy reads back as S recorded it, re-read now (Image.verify), never
        trusting what the copy task checked when it finished: the data may have changed since.
        A difference is reported (a warning event naming the volume) and answers False."""
        why = verify_data(self.agent, cmd.storage_pool_id, cmd.image_group_id, cmd.dest_storage,
                          reference=cmd.src_storage,
                          volumes=set(self.own_volumes(cmd)))
        self.last_verify_error = why
        if why:
            self.emit("warning", cmd, f"the copy on storage domain {cmd.dest_storage} is not "
                      f"intact: {why}")
        return not why

    def _volumes(self, cmd: MoveCommand, sd: Any) -> dict[str, dict[str, Any]] | None:
        """The image group's own volumes on ``sd`` (info by id), or None when it is not there."""
        img = str(cmd.image_group_id)
        try:
            infos = self.agent.volumes_info(str(cmd.storage_pool_id), str(sd), img)
        except (agent_errors.ImageDoesNotExistInSD, agent_errors.StorageDomainDoesNotExist):
            return None
        except agent_errors.VolumeDoesNotExist:
            return {}
        return {i["volUUID"]: i for i in infos if i.get("image", img) == img}

    # --- acting --------------------------------------------------------------------------

    def act(self, action: Action, cmd: MoveCommand, copy: TaskView, delete: TaskView,
            truth: StorageTruth | None) -> MoveCommand:
        s, owner, lease = self.store, self.owner, self.lease_seconds
        cid = cmd.command_id
        if action is Action.START_COPY:
            try:
                task_id = self.agent.move_image(str(cmd.storage_pool_id), str(cmd.src_storage),
                                                str(cmd.dest_storage), str(cmd.image_group_id),
                                                COPY, tag=str(cid))
            except agent_errors.AgentUnavailable:
                raise  # no answer: the copy may have started; its tag tells recovery
            except agent_errors.AgentError as exc:
                # The agent answered with a refusal (e.g. the template is not on the
                # destination): no copy started. End with failure now, not a LOCKED disk.
                return end.with_failure(self, cmd, exc.message)
            crash_point("after_copy_accepted")
            cmd = s.record_copy_task(cid, owner, lease, task_id)
            crash_point("after_copy_recorded")
            self.emit("phase", cmd, "phase 2: the agent is copying the disk")
            return cmd
        if action is Action.RECORD_COPY:
            cmd = s.record_copy_task(cid, owner, lease, str(copy.task_id))
            self.emit("phase", cmd, "phase 2: found the agent's copy task")
            return cmd
        if action is Action.WAIT_COPY:
            self.wait(cmd, str(copy.task_id), copying=True)
            return cmd
        if action is Action.SWITCH:
            cmd = s.switch(cid, owner, lease)
            crash_point("after_phase3_commit")
            self.emit("phase", cmd, "phase 3 committed: the disk is on the destination")
            self._clear(cmd.copy_task_id or copy.task_id)
            return cmd
        if action in (Action.END_FAILURE, Action.COMPENSATE):
            if truth is not None and truth.dst_verified is False:
                reason = (f"the copy on storage domain {cmd.dest_storage} does not read back as "
                          f"the source recorded it: {self.last_verify_error}")
            else:
                reason = copy.message or ("the copy never started" if action is Action.COMPENSATE
                                          else "the copy did not complete")
            return end.with_failure(self, cmd, reason, copy_task=copy.task_id)
        if action is Action.START_DELETE:
            return end.start_source_deletion(self, cmd)
        if action is Action.RECORD_DELETE:
            cmd = s.record_delete_task(cid, owner, lease, str(delete.task_id))
            return cmd
        if action is Action.WAIT_DELETE:
            self.wait(cmd, str(delete.task_id), copying=False)
            return cmd
        if action is Action.END_SUCCESS:
            return end.with_success(self, cmd)
        if action is Action.END_LEFTOVER:
            return end.with_leftover(self, cmd, delete.message or "the source deletion failed")
        if action is Action.STUCK and truth is not None and truth.dst_verified is False:
            why = (f"the copy on storage domain {cmd.dest_storage} does not read back as the source "
                   f"recorded it (corrupt: {self.last_verify_error}); both copies are kept")
            s.release_lease(cid, owner, why)
            raise MoveStuck(f"move {cid} of disk {cmd.image_group_id}: {why}; nothing was deleted "
                            "(see movedisk verify)")
        if action is Action.STUCK:
            s.release_lease(cid, owner, "no domain holds a complete copy; nothing was touched")
            raise MoveStuck(f"move {cid} of disk {cmd.image_group_id}: neither domain holds a "
                            "complete copy of the disk; nothing was touched (see movedisk verify)")
        raise AssertionError(action)

    def wait(self, cmd: MoveCommand, task_id: str, copying: bool) -> None:
        """Poll the task until it finishes; progress events and lease renewals meanwhile."""
        started = time.monotonic()
        renewed = started
        interval = self.poll_seconds
        first = True
        while True:
            st = self.agent.get_task_status(task_id)
            if copying:
                prog = st.get("progress") or {}
                self.emit("progress", cmd, stage=cmd.stage, bytes_done=int(prog.get("bytes_done", 0)),
                          bytes_total=int(prog.get("bytes_total", 0)),
                          seconds=time.monotonic() - started)
                if first:
                    crash_point("during_copy")
            elif first:
                crash_point("during_source_delete")
            first = False
            if st.get("taskState") == "finished":
                return
            now = time.monotonic()
            if now - renewed > self.lease_seconds / 3:
                try:
                    self.store.renew_lease(cmd.command_id, self.owner, self.lease_seconds)
                except MovediskError as exc:
                    raise LeaseLost(str(exc)) from exc
                renewed = now
            time.sleep(interval)
            interval = min(self.max_poll_seconds, interval * 1.5)

    def _clear(self, task_id: Any) -> None:
        """Forget a finished task at the agent (best effort: the database already moved on)."""
        if not task_id:
            return
        try:
            self.agent.clear_task(str(task_id))
        except agent_errors.AgentError:
            pass


def verify_data(agent: StorageClient, pool: Any, disk: Any, sd: Any, reference: Any = None,
                volumes: set[Any] | None = None) -> str:
    """Why the copy of ``disk`` on ``sd`` cannot be trusted ('' when its data re-read now
    matches): each of its own volumes (those of ``volumes`` when given) is re-read by the
    agent and compared with the checksums ``reference`` (another domain's copy, e.g. the
    source) recorded, or with its own recorded ones when ``reference`` holds nothing."""
    expected: dict[str, str] | None = None
    if reference is not None:
        try:
            infos = agent.volumes_info(str(pool), str(reference), str(disk))
        except (agent_errors.ImageDoesNotExistInSD, agent_errors.VolumeDoesNotExist,
                agent_errors.StorageDomainDoesNotExist):
            infos = []
        wanted = {str(v) for v in volumes} if volumes is not None else None
        expected = {i["volUUID"]: i["checksum"] for i in infos
                    if i.get("image", str(disk)) == str(disk) and i.get("checksum")
                    and (wanted is None or i["volUUID"] in wanted)} or None
    try:
        agent.verify_image(str(pool), str(sd), str(disk), expected)
    except (agent_errors.ImageVerificationError, agent_errors.ImageDoesNotExistInSD,
            agent_errors.VolumeDoesNotExist) as exc:
        return exc.message
    return ""


def _view(st: dict[str, Any]) -> TaskView:
    if st.get("taskState") != "finished":
        state = TaskState.RUNNING
    elif st.get("taskResult") == "success":
        state = TaskState.SUCCEEDED
    else:
        state = TaskState.FAILED
    return TaskView(state, st.get("taskID"), int(st.get("code") or 0), str(st.get("message") or ""))
