"""Recovery: every unfinished move whose process is gone (its lease expired, or its owner,
a process of this host, no longer runs) is claimed and finished from the storage truth
(DESIGN.md, Recovery): compensate, end with failure, or roll forward. A live process's move is
never taken.

At scale (thousands of moves left by a crash) the work per move is what the move itself needs:
the unfinished moves are listed in one query, whether their owners still run is read once per
owner, the claims go to the database a batch at a time in one round trip (a pipeline of
ClaimMoveDiskCommand calls), the agent's tasks of a batch are read in one call (BatchTasks),
and with ``workers`` > 1 (and ``connect``, which opens one
database connection per worker, never one per move) the claimed moves are finished by that many
threads at once. What each move's recovery decides is unchanged: ``Engine.run`` with
``recovering=True`` on the move as its claim returned it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..agent import errors as agent_errors
from ..db import function_query, user_errors
from ..errors import MovediskError
from .crashpoints import crash_point
from .owner import is_dead
from .store import MoveCommand, Store, _row

if TYPE_CHECKING:
    from .move import Engine

# Claims sent in one round trip. Small enough that a batch is claimed just before it is worked
# on (a claimed move waits for the others of its batch, never for the whole recovery).
CLAIM_BATCH = 50


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


def stale(cmd: MoveCommand, now: datetime | None = None,
          dead: Callable[[str | None], bool] = is_dead) -> bool:
    """Whether nobody live runs this move."""
    now = now or datetime.now(timezone.utc)
    return (cmd.lease_owner is None or cmd.lease_expires is None or cmd.lease_expires < now
            or dead(cmd.lease_owner))


class _Owners:
    """is_dead, read once per owner (thousands of moves of one crashed process share it)."""

    def __init__(self) -> None:
        self.known: dict[str | None, bool] = {}

    def __call__(self, owner: str | None) -> bool:
        if owner not in self.known:
            self.known[owner] = is_dead(owner)
        return self.known[owner]


def claim_batch(store: Store, moves: list[tuple[MoveCommand, str | None]], owner: str,
                lease: int) -> list[MoveCommand | None]:
    """ClaimMoveDiskCommand for each (move, its dead owner or None), pipelined: one round trip
    and one transaction for the batch, each claim deciding as when sent alone (it skips a move
    another process holds or is claiming). The claimed moves, None where another process holds
    or took it."""
    if not moves:
        return []
    store.calls["ClaimMoveDiskCommand"] += len(moves)
    conn = store.conn
    out: list[MoveCommand | None] = []
    with user_errors(), conn.cursor() as cur:
        cur.executemany(function_query(conn, "ClaimMoveDiskCommand", 4),
                        [(c.command_id, owner, lease, dead) for c, dead in moves],
                        returning=True)
        while True:
            rows = cur.fetchall()
            out.append(_row(MoveCommand, rows[0]) if rows else None)
            if not cur.nextset():
                break
    assert len(out) == len(moves), (len(out), len(moves))
    return out


class BatchTasks:
    """The agent as the engine sees it while recovering one batch of claimed moves: the tasks
    tagged with those moves' command ids read in one call (Host.getAllTasksStatuses with their
    tags) instead of one call per move. A task that was not finished then is read again
    (Task.getStatus) when asked for, one this process clears is left out; a tag this process
    starts a task of is asked of the agent itself from then on. Every other verb goes to the
    agent unchanged."""

    def __init__(self, agent: Any, tags: set[str]) -> None:
        self._agent = agent
        self._tags = tags
        self._changed: set[str] = set()
        self._tag_of: dict[str, str] = {}
        self._by_tag: dict[str, list[dict[str, Any]]] | None = None
        try:
            every = agent.get_all_tasks_statuses(tags=sorted(tags))
        except agent_errors.AgentError:
            return  # each move asks the agent itself, and meets the error there
        self._by_tag = {}
        for st in every.values():
            tag = str(st.get("tag"))
            if tag in tags:
                self._by_tag.setdefault(tag, []).append(st)
                self._tag_of[str(st.get("taskID"))] = tag
        for found in self._by_tag.values():
            found.sort(key=lambda st: st.get("created") or 0)

    def tasks_by_tag(self, tag: str) -> list[dict[str, Any]]:
        if self._by_tag is None or tag not in self._tags or tag in self._changed:
            return self._agent.tasks_by_tag(tag)  # type: ignore[no-any-return]
        out = []
        for st in self._by_tag.get(tag, []):
            if st.get("taskState") != "finished":
                try:
                    st = self._agent.get_task_status(str(st["taskID"]))
                except agent_errors.UnknownTask:
                    continue  # gone since the listing
            out.append(st)
        return out

    def move_image(self, *args: Any, **kw: Any) -> Any:
        self._changed.add(str(kw.get("tag")))
        return self._agent.move_image(*args, **kw)

    def delete_image(self, *args: Any, **kw: Any) -> Any:
        self._changed.add(str(kw.get("tag")))
        return self._agent.delete_image(*args, **kw)

    def clear_task(self, task_id: str) -> Any:
        done = self._agent.clear_task(task_id)
        tag = self._tag_of.pop(task_id, None)
        if tag is not None and self._by_tag is not None:  # the agent lists it no more
            self._by_tag[tag] = [st for st in self._by_tag.get(tag, [])
                                 if str(st.get("taskID")) != task_id]
        return done

    def __getattr__(self, name: str) -> Any:
        return getattr(self._agent, name)


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def recover(engine: Engine, workers: int = 1,
            connect: Callable[[], Any] | None = None) -> RecoveryReport:
    """Finish every stale move. ``workers`` > 1 needs ``connect`` (a new autocommit-able
    database connection, one per extra worker, closed at the end)."""
    report = RecoveryReport()
    dead_owner = _Owners()
    now = datetime.now(timezone.utc)
    todo: list[tuple[MoveCommand, str | None]] = []
    for cmd in engine.store.unfinished_moves():
        if cmd.lease_owner == engine.owner:
            continue
        if not stale(cmd, now, dead_owner):
            report.skipped.append(cmd)
            continue
        todo.append((cmd, cmd.lease_owner if dead_owner(cmd.lease_owner) else None))
    if not todo:
        return report
    lock = threading.Lock()
    batches = iter(list(_batches(todo, CLAIM_BATCH)))

    def work(base: Engine) -> None:
        eng = base
        while True:
            with lock:
                batch = next(batches, None)
            if batch is None:
                return
            claimed_at = time.monotonic()
            claims = claim_batch(eng.store, batch, eng.owner, eng.lease_seconds)
            tags = {str(c.command_id) for c in claims if c is not None}
            eng = replace(base, agent=BatchTasks(base.agent, tags)) if tags else base
            for (cmd, dead), claimed in zip(batch, claims):
                if claimed is not None and time.monotonic() - claimed_at > eng.lease_seconds / 3:
                    # The moves before it took a while (a copy waited for): claim it again, so
                    # that it is run only under a lease as fresh as a claim made just now.
                    claimed = eng.store.claim_move(cmd.command_id, eng.owner, eng.lease_seconds,
                                                   dead)
                if claimed is None:
                    with lock:
                        report.skipped.append(cmd)  # another process claimed it first
                    continue
                crash_point("inside_recover")
                eng.emit("phase", claimed, f"recovering the move of disk "
                         f"{claimed.image_group_id} (stage {claimed.stage}, was run by "
                         f"{cmd.lease_owner})")
                try:
                    done = eng.run(claimed, recovering=True)
                except MovediskError as exc:
                    eng.store.release_lease(claimed.command_id, eng.owner, exc.message)
                    with lock:
                        report.errors.append((claimed, exc.message))
                    continue
                with lock:
                    report.finished.append(done)

    n = max(1, min(workers, (len(todo) + CLAIM_BATCH - 1) // CLAIM_BATCH))
    if n == 1 or connect is None:
        work(engine)
        return report
    # Each extra worker: its own connection and Store, the same owner (the moves it claims
    # are its own; a lease names the process, and this process runs them all).
    conns = [connect() for _ in range(n - 1)]
    engines = [replace(engine, store=Store(c), reconnect=None) for c in conns]
    failures: list[BaseException] = []

    def guarded(eng: Engine) -> None:
        try:
            work(eng)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(e,), daemon=True) for e in engines]
    try:
        for t in threads:
            t.start()
        guarded(engine)
        for t in threads:
            t.join()
    finally:
        for c in conns:
            c.close()
    if failures:
        raise failures[0]
    return report
