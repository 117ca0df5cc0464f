"""Durability of what the agent reports: nothing is reported finished before it would
survive a power cut, and a Move whose source deletion failed is never a failed copy.

A power cut loses every byte not fsynced and every name (creation, rename, link,
removal) whose directory was not fsynced afterwards. The first tests run the agent in
this process with ``os.fsync`` recorded: when a task record saying "finished" is
published, every file and directory the task wrote must have been fsynced after its
last change (its mtime), and the fsyncs must come in the order data, LEGAL metadata,
directories, task record. The last tests kill a real agent process at each point of a
Move and check what the restarted agent reports and what is on disk.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agenttools import AgentProcess, Pool, new_id

from movedisk.agent import COPY, MOVE, SimControl, StorageClient
from movedisk.agent.server import DIE_EXIT_CODE, Agent

MiB = 1 << 20


class FsyncRecorder:
    """Wraps os.fsync and os.replace: which paths were fsynced, when, in what order."""

    def __init__(self) -> None:
        self.real_fsync = os.fsync
        self.real_replace = os.replace
        self.synced: dict[tuple[int, int], int] = {}  # inode -> time_ns of its last fsync
        self.events: list[tuple[str, str]] = []  # (kind, detail) in order
        self.checks: list[str] = []  # what was checked at each publication
        self.failures: list[str] = []

    def fsync(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        self.real_fsync(fd)
        st = os.fstat(fd)
        self.synced[(st.st_dev, st.st_ino)] = time.time_ns()
        if os.path.isdir(path):
            self.events.append(("dir", path))
        elif path.endswith(".tmp"):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            self.events.append(("json", f"{data.get('legality') or data.get('state')}:{path}"))
        else:
            self.events.append(("data", path))

    def durable(self, path: Path) -> bool:
        """Fsynced after its last change (the mtime of a file: data; of a directory: names)."""
        st = path.stat()
        return self.synced.get((st.st_dev, st.st_ino), 0) > st.st_mtime_ns

    def undurable(self, top: Path) -> list[str]:
        """Every file and directory under ``top`` (top included) not durable now."""
        out = [str(top)] if not self.durable(top) else []
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                if not self.durable(path):
                    out.append(str(path))
        return out


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> FsyncRecorder:
    rec = FsyncRecorder()
    monkeypatch.setattr(os, "fsync", rec.fsync)
    return rec


@pytest.fixture
def local_agent(tmp_path: Path) -> Iterator[Agent]:
    """The agent's verbs in this process (so that os.fsync can be watched)."""
    yield Agent(tmp_path / "root")


def wait_done(agent: Agent, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = agent.task_get_status(task_id)
        if st["taskState"] == "finished":
            return st
        time.sleep(0.01)
    raise AssertionError(f"task {task_id} did not finish")


def local_pool(agent: Agent) -> Pool:
    p = Pool(new_id(), new_id(), new_id())
    agent.sim_create_domain(p.src, p.sp, 1 << 30)
    agent.sim_create_domain(p.dst, p.sp, 1 << 30)
    return p


def watch_publication(monkeypatch: pytest.MonkeyPatch, rec: FsyncRecorder, agent: Agent,
                      must_be_durable: list[Path]) -> None:
    """At the rename that publishes a finished task record, check ``must_be_durable``."""

    def replace(src: Any, dst: Any) -> None:
        rec.real_replace(src, dst)
        dst = Path(dst)
        if dst.parent == agent.root.tasks:
            state = json.loads(dst.read_text())["state"]
            rec.events.append(("record", state))
            if state in ("finished", "failed"):
                for top in must_be_durable:
                    if top.exists():
                        rec.failures += rec.undurable(top)
                rec.checks.append(state)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("op", [COPY, MOVE])
def test_copy_is_durable_before_its_task_says_finished(
    local_agent: Agent, recorder: FsyncRecorder, monkeypatch: pytest.MonkeyPatch, op: int
) -> None:
    agent, rec = local_agent, recorder
    pool = local_pool(agent)
    img, vols = new_id(), [new_id(), new_id()]
    agent.sim_create_image(pool.src, img, [
        {"volUUID": vols[0], "size": 2 * MiB, "extents": [[0, MiB]], "seed": 1},
        {"volUUID": vols[1], "size": 2 * MiB, "extents": [[MiB, 65536]], "seed": 2}])
    dst_images = agent.root.images_dir(pool.dst)
    src_images = agent.root.images_dir(pool.src)
    watch_publication(monkeypatch, rec, agent, [dst_images] + ([src_images] if op == MOVE else []))
    rec.events.clear()
    task = agent.image_move(pool.sp, pool.src, pool.dst, img, op)
    st = wait_done(agent, task)
    assert (st["taskResult"], st["code"]) == ("success", 0)
    assert rec.checks == ["finished"] and rec.failures == []
    # the record itself: its file was fsynced before the rename, its directory after
    assert rec.durable(agent.root.tasks / f"{task}.json") and rec.durable(agent.root.tasks)
    # the order: every volume's data, then (the chain verified) their LEGAL metadata; then
    # the directories; then the finished record (for a Move, the source's removal before it)
    dst_dir = dst_images / img
    order = [(k, d) for k, d in rec.events if k in ("data", "dir", "record")
             or (k == "json" and d.startswith("LEGAL:"))]
    expect = [("data", str(dst_dir / v)) for v in vols]
    expect += [("json", f"LEGAL:{dst_dir}/.{v}.meta") for v in vols]
    expect += [("dir", str(dst_dir)), ("dir", str(dst_images))]
    got = [(k, d.rsplit(".", 3)[0] if k == "json" else d) for k, d in order
           if k != "record" and not (k == "dir" and d == str(agent.root.tasks))]
    if op == MOVE:
        expect += [("dir", str(src_images)), ("dir", str(src_images))]  # renamed, then removed
    assert got == expect
    records = [d for k, d in order if k == "record"]
    assert records[-1] == "finished" and records.count("finished") == 1
    assert not (src_images / img).exists() if op == MOVE else (src_images / img).exists()


def test_deletion_is_durable_before_its_task_says_finished(
    local_agent: Agent, recorder: FsyncRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, rec = local_agent, recorder
    pool = local_pool(agent)
    img = new_id()
    agent.sim_create_image(pool.src, img, [{"volUUID": new_id(), "size": MiB,
                                            "extents": [[0, MiB]]}])
    images = agent.root.images_dir(pool.src)
    watch_publication(monkeypatch, rec, agent, [images])
    st = wait_done(agent, agent.image_delete(pool.sp, pool.src, img, postZero=True))
    assert st["taskResult"] == "success" and rec.checks == ["finished"]
    assert rec.failures == [] and list(images.iterdir()) == []


def test_the_recorder_sees_a_missing_fsync(
    local_agent: Agent, recorder: FsyncRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above can fail: without the directory fsyncs it reports the new names."""
    from movedisk.agent import server

    monkeypatch.setattr(server, "fsync_dir", lambda path: None)
    agent, rec = local_agent, recorder
    pool = local_pool(agent)
    img = new_id()
    agent.sim_create_image(pool.src, img, [{"volUUID": new_id(), "size": MiB,
                                            "extents": [[0, 4096]]}])
    watch_publication(monkeypatch, rec, agent, [agent.root.images_dir(pool.dst)])
    wait_done(agent, agent.image_move(pool.sp, pool.src, pool.dst, img, COPY))
    assert str(agent.root.images_dir(pool.dst) / img) in rec.failures


# --- a real agent killed at each point of a Move ------------------------------------------

POINTS = {
    # point: (taskResult, code, source after restart, source_deleted); the agent's other
    # points (dirs_synced, before_finished) end like their neighbours meta_legal and
    # delete_removed on restart
    "data_synced": ("cleanFailure", 411, "present", None),
    "meta_legal": ("cleanFailure", 411, "present", None),
    "copy_recorded": ("success", 259, "present", False),
    "delete_renamed": ("success", 259, "removing", False),
    "delete_removed": ("success", 0, "gone", True),
}


@pytest.mark.parametrize("point", list(POINTS))
def test_agent_killed_at_each_point_of_a_move(
    agent: AgentProcess, client: StorageClient, sim: SimControl, pool: Pool, point: str
) -> None:
    img, vols = new_id(), [new_id(), new_id()]
    sim.create_image(pool.src, img, [
        {"volUUID": vols[0], "size": MiB, "extents": [(0, MiB)], "seed": 3},
        {"volUUID": vols[1], "size": MiB, "extents": [(0, 8192)], "seed": 4}])
    sums = [v["checksum"] for v in client.volumes_info(pool.sp, pool.src, img)]
    sim.add_fault("die_at", imgUUID=img, point=point)
    try:
        task = client.move_image(pool.sp, pool.src, pool.dst, img, MOVE, tag=f"cmd-{point}")
    except Exception:  # the agent may die before it answers; the tag finds the task
        task = None
    assert agent.wait_exit() == DIE_EXIT_CODE
    agent.start()
    (st,) = client.tasks_by_tag(f"cmd-{point}")
    assert task in (None, st["taskID"])
    result, code, source, deleted = POINTS[point]
    assert (st["taskState"], st["taskResult"], st["code"]) == ("finished", result, code)
    assert st["result"]["interrupted"] is True
    assert st["result"].get("source_deleted") is deleted
    info = client.get_domain_info(pool.sp, pool.src)
    where = ("present" if img in client.get_images(pool.sp, pool.src)
             else "removing" if img in info["removing"] else "gone")
    assert where == source
    if result == "success":  # the destination is complete: LEGAL, same checksums
        dst = client.volumes_info(pool.sp, pool.dst, img)
        assert [v["legality"] for v in dst] == ["LEGAL", "LEGAL"]
        assert [v["checksum"] for v in dst] == sums
    else:  # a failed copy: the source is whole, so the partial copy may go
        assert [v["checksum"] for v in client.volumes_info(pool.sp, pool.src, img)] == sums


def test_move_whose_source_deletion_fails_is_not_a_failed_copy(
    client: StorageClient, sim: SimControl, pool: Pool
) -> None:
    img, vol = new_id(), new_id()
    sim.create_image(pool.src, img, [{"volUUID": vol, "size": MiB, "extents": [(0, MiB)]}])
    sim.add_fault("delete_fail", imgUUID=img, sdUUID=pool.src)
    st = client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, img, MOVE))
    assert (st["taskState"], st["taskResult"], st["code"]) == ("finished", "success", 259)
    assert "SourceImageActionError" in st["message"]
    assert st["result"]["copy_complete"] is True and st["result"]["source_deleted"] is False
    assert st["result"]["source_delete_error"]["code"] == 256
    assert client.get_images(pool.sp, pool.src) == [img]
    (v,) = client.volumes_info(pool.sp, pool.dst, img)
    assert v["legality"] == "LEGAL"
    # and a failed copy keeps its own code
    other = new_id()
    sim.create_image(pool.src, other, [{"volUUID": new_id(), "size": MiB, "extents": [(0, MiB)]}])
    sim.add_fault("copy_fail_after", imgUUID=other, bytes=4096)
    st = client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, other, MOVE))
    assert (st["taskResult"], st["code"]) == ("cleanFailure", 261)
    assert "copy_complete" not in st["result"]
