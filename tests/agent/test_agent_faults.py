"""Faults, crashes and concurrency: the agent as a real process that can be killed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from agenttools import REPO, AgentProcess, Pool, new_id, volume_path

from movedisk.agent import COPY, MOVE, SimControl, StorageClient
from movedisk.agent import errors as E
from movedisk.agent.server import DIE_EXIT_CODE
from movedisk.cli import main as movedisk

MiB = 1 << 20


def make_image(sim: SimControl, sd: str, mib: int = 4, vols: int = 1, seed: int = 0) -> tuple[str, list[str]]:
    img, ids = new_id(), [new_id() for _ in range(vols)]
    sim.create_image(sd, img, [{"volUUID": v, "size": mib * MiB, "extents": [(0, mib * MiB)],
                                "seed": seed + i} for i, v in enumerate(ids)])
    return img, ids


def wait_for(pred: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def qemu_img_processes(word: str) -> list[int]:
    """Pids of live qemu-img processes whose command line mentions ``word``."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if argv and argv[0].endswith(b"qemu-img") and state != "Z" and \
                any(word.encode() in a for a in argv):
            out.append(int(proc.name))
    return out


def ls_json(root: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert movedisk(["agent", "ls", "--root", str(root), "--json", *extra]) in (0, 1)
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def image_on(listing: list[dict[str, Any]], sd: str, img: str) -> dict[str, Any] | None:
    for d in listing:
        if d["sdUUID"] == sd:
            for i in d["images"]:
                if i["imgUUID"] == img:
                    return i
    return None


def test_copy_failing_after_n_bytes_fails_the_task_and_leaves_the_partial_copy(
    client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    img, vols = make_image(sim, pool.src, mib=2, vols=2)
    sim.add_fault("copy_fail_after", imgUUID=img, bytes=3 * MiB)
    st = client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, img, MOVE))
    assert (st["taskResult"], st["code"]) == ("cleanFailure", 261)
    # qemu-img is stopped once its progress passes the fault's 3 MiB (it reports per step)
    assert 3 * MiB <= st["progress"]["bytes_done"] <= 4 * MiB
    # the source is intact, the partial copy stays on the destination, marked ILLEGAL (a
    # volume turns LEGAL only once the whole chain is copied and verified)
    assert client.get_volumes(pool.sp, pool.src, img) == vols
    partial = image_on(ls_json(agent_root, capsys), pool.dst, img)
    assert partial is not None
    assert [v["legality"] for v in partial["volumes"]] == ["ILLEGAL", "ILLEGAL"]
    # the fault was for one task: a retry with force replaces the partial copy
    st = client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, img, COPY, force=True))
    assert st["taskResult"] == "success"
    assert all(v["checksum_ok"] for v in image_on(ls_json(agent_root, capsys, "--verify"),
                                                  pool.dst, img)["volumes"])


def test_agent_sigkilled_mid_copy_reports_the_task_failed_after_restart(
    agent: AgentProcess, client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    done_img, done_vols = make_image(sim, pool.src, mib=1, seed=9)
    done = client.move_image(pool.sp, pool.src, pool.dst, done_img, COPY, tag="before")
    client.wait_task(done)
    img, vols = make_image(sim, pool.src, mib=4)
    sim.add_fault("copy_delay", imgUUID=img, bytes_per_second=8 * MiB)
    task = client.move_image(pool.sp, pool.src, pool.dst, img, COPY, tag="cmd-crash")
    wait_for(lambda: client.get_task_status(task)["progress"]["bytes_done"] >= MiB, what="progress")
    assert qemu_img_processes(img), "the copy runs in qemu-img"
    assert agent.kill() == -9
    wait_for(lambda: not qemu_img_processes(img), timeout=5, what="qemu-img to die with the agent")
    with pytest.raises(E.AgentUnavailable):
        client.get_task_status(task)
    # while the agent is down, ls reads the files: the partial copy is there
    partial = image_on(ls_json(agent_root, capsys), pool.dst, img)
    assert partial is not None and partial["volumes"][0]["legality"] == "ILLEGAL"
    assert partial["volumes"][0]["truesize"] < 4 * MiB  # qemu-img died with the agent
    agent.start()
    st = client.get_task_status(task)
    assert (st["taskState"], st["taskResult"], st["code"]) == ("finished", "cleanFailure", 411)
    assert st["result"]["interrupted"] is True and st["tag"] == "cmd-crash"
    assert [s["taskID"] for s in client.tasks_by_tag("cmd-crash")] == [task]
    before = client.get_task_status(done)
    assert (before["taskResult"], before["result"]["copied"]) == ("success", done_vols)
    assert image_on(ls_json(agent_root, capsys), pool.dst, img) is not None  # still visible
    assert client.get_volumes(pool.sp, pool.src, img) == vols


def test_die_fault_exits_the_agent_mid_copy(
    agent: AgentProcess, client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path
) -> None:
    img, vols = make_image(sim, pool.src, mib=3)
    sim.add_fault("copy_die_after", sdUUID=pool.dst, bytes=MiB + 4096)
    task = client.move_image(pool.sp, pool.src, pool.dst, img, COPY)
    assert agent.wait_exit() == DIE_EXIT_CODE
    dst = volume_path(agent_root, pool.dst, img, vols[0])
    assert dst.exists() and json.loads(dst.with_name(f"{vols[0]}.meta").read_text())[
        "legality"] == "ILLEGAL"
    agent.start()
    st = client.get_task_status(task)
    assert (st["taskResult"], st["code"]) == ("cleanFailure", 411)
    # progress is saved at most once a second: what was recorded, never more than was copied
    assert st["progress"]["bytes_total"] == 3 * MiB
    assert st["progress"]["bytes_done"] < 3 * MiB
    assert sim.list_faults() == []  # faults live in the process; a new agent has none


def test_two_tasks_on_different_image_groups_run_at_once(
    client: StorageClient, sim: SimControl, pool: Pool
) -> None:
    # qemu-img's rate limit (-r) moves in steps of its 2 MiB buffer: 6 MiB at 8 MiB/s
    imgs = [make_image(sim, pool.src, mib=6, seed=s)[0] for s in (1, 2)]
    for img in imgs:
        sim.add_fault("copy_delay", imgUUID=img, bytes_per_second=8 * MiB)
    tasks = [client.move_image(pool.sp, pool.src, pool.dst, img, COPY) for img in imgs]

    def both_in_progress() -> bool:
        sts = [client.get_task_status(t) for t in tasks]
        return all(s["taskState"] == "running" and 0 < s["progress"]["bytes_done"] < 6 * MiB
                   for s in sts)

    wait_for(both_in_progress, what="both tasks in progress at the same time")
    for t in tasks:
        assert client.wait_task(t)["taskResult"] == "success"


def test_second_task_on_a_busy_image_group_is_refused(
    client: StorageClient, sim: SimControl, pool: Pool
) -> None:
    img, _ = make_image(sim, pool.src, mib=2)
    sim.add_fault("copy_delay", imgUUID=img, bytes_per_second=8 * MiB)
    task = client.move_image(pool.sp, pool.src, pool.dst, img, COPY)
    with pytest.raises(E.ImageLocked) as exc:
        client.delete_image(pool.sp, pool.src, img)
    assert exc.value.details["taskID"] == task
    with pytest.raises(E.ImageLocked):
        client.move_image(pool.sp, pool.src, pool.dst, img, COPY, force=True)
    assert list(client.get_all_tasks_statuses()) == [task]  # the refusals left no task behind
    client.stop_task(task)
    client.wait_task(task)
    assert client.wait_task(client.delete_image(pool.sp, pool.src, img))["taskResult"] == "success"


def test_task_completes_after_its_caller_is_killed(
    agent: AgentProcess, client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path
) -> None:
    img, vols = make_image(sim, pool.src, mib=2)
    sim.add_fault("copy_delay", imgUUID=img, bytes_per_second=8 * MiB)
    caller = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from movedisk.agent import StorageClient, COPY\n"
         f"c = StorageClient({agent.socket!r})\n"
         f"print(c.move_image({pool.sp!r}, {pool.src!r}, {pool.dst!r}, {img!r}, COPY,"
         " tag='orphan'), flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert caller.stdout is not None
    task = caller.stdout.readline().decode().strip()
    caller.kill()
    assert caller.wait() == -9
    assert client.get_task_status(task)["taskState"] == "running"
    st = client.wait_task(task)
    assert st["taskResult"] == "success" and st["tag"] == "orphan"
    assert volume_path(agent_root, pool.dst, img, vols[0]).read_bytes() == \
        volume_path(agent_root, pool.src, img, vols[0]).read_bytes()


def test_deletion_fault_and_crash_mid_deletion(
    agent: AgentProcess, client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    img, _ = make_image(sim, pool.src, mib=1)
    sim.add_fault("delete_fail", imgUUID=img)
    st = client.wait_task(client.delete_image(pool.sp, pool.src, img))
    assert (st["taskResult"], st["code"]) == ("cleanFailure", 256)
    assert client.get_images(pool.sp, pool.src) == [img]
    sim.add_fault("delete_die", sdUUID=pool.src)
    try:
        client.delete_image(pool.sp, pool.src, img, tag="cmd-del")
    except E.AgentUnavailable:
        pass  # the agent may die before it answers: the tag finds the task again
    assert agent.wait_exit() == DIE_EXIT_CODE
    listing = ls_json(agent_root, capsys)
    src = next(d for d in listing if d["sdUUID"] == pool.src)
    assert src["images"] == [] and src["removing"] == [img]
    agent.start()
    (st,) = client.tasks_by_tag("cmd-del")
    assert (st["verb"], st["taskResult"], st["code"]) == ("Image.delete", "cleanFailure", 411)
    assert client.get_domain_info(pool.sp, pool.src)["removing"] == [img]
    # retrying the deletion finishes it
    assert client.wait_task(client.delete_image(pool.sp, pool.src, img))["taskResult"] == "success"
    assert client.get_domain_info(pool.sp, pool.src)["removing"] == []
    assert not any((agent_root / "domains" / pool.src / "images").iterdir())


def test_a_restarted_agent_reports_every_task_it_had(
    restart_agent: Any, client: StorageClient, sim: SimControl, pool: Pool
) -> None:
    ok_img, _ = make_image(sim, pool.src, mib=1, seed=1)
    bad_img, _ = make_image(sim, pool.src, mib=1, seed=2)
    sim.add_fault("copy_fail_after", imgUUID=bad_img, bytes=4096)
    ok = client.move_image(pool.sp, pool.src, pool.dst, ok_img, MOVE, tag="a")
    bad = client.move_image(pool.sp, pool.src, pool.dst, bad_img, COPY, tag="b")
    before = {t: client.wait_task(t) for t in (ok, bad)}
    old_pid = client.ping()["pid"]
    restart_agent()
    assert client.ping()["pid"] != old_pid
    after = client.get_all_tasks_statuses()
    assert set(after) == {ok, bad}
    for t in (ok, bad):
        assert {k: after[t][k] for k in ("taskResult", "code", "message", "tag", "result", "progress")} \
            == {k: before[t][k] for k in ("taskResult", "code", "message", "tag", "result", "progress")}
    assert after[ok]["result"]["source_deleted"] is True and after[bad]["code"] == 261
    client.clear_task(ok)
    restart_agent()
    assert list(client.get_all_tasks_statuses()) == [bad]


def test_faults_last_for_their_count_or_until_cleared(
    client: StorageClient, sim: SimControl, pool: Pool
) -> None:
    imgs = [make_image(sim, pool.src, mib=1, seed=s)[0] for s in range(4)]
    once = sim.add_fault("copy_fail_after", imgUUID=imgs[0], bytes=0)
    always = sim.add_fault("copy_fail_after", sdUUID=pool.dst, bytes=0, count=0, imgUUID=imgs[1])
    assert [f["faultID"] for f in sim.list_faults()] == [once, always]

    def copy(img: str) -> int:
        return int(client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, img, COPY,
                                                      force=True))["code"])

    assert copy(imgs[0]) == 261 and copy(imgs[0]) == 0  # once: the retry works
    assert copy(imgs[1]) == 261 and copy(imgs[1]) == 261  # until cleared
    assert copy(imgs[2]) == 0  # other image groups are not affected
    assert [f["faultID"] for f in sim.list_faults()] == [always]
    assert sim.clear_faults() == 1 and sim.list_faults() == []
    assert copy(imgs[1]) == 0
    with pytest.raises(E.InvalidParameter):
        sim.add_fault("explode")


def test_a_slow_copy_reports_its_progress_at_its_pace(
    client: StorageClient, sim: SimControl, pool: Pool
) -> None:
    """Even a volume qemu-img copies in one step shows its progress moving at the pace."""
    img, _ = make_image(sim, pool.src, mib=1)
    sim.add_fault("copy_delay", imgUUID=img, bytes_per_second=2 * MiB)
    task = client.move_image(pool.sp, pool.src, pool.dst, img, COPY)
    seen = set()
    t0 = time.monotonic()
    while (st := client.get_task_status(task))["taskState"] == "running":
        seen.add(st["progress"]["bytes_done"])
        time.sleep(0.02)
    assert st["taskResult"] == "success" and time.monotonic() - t0 >= 0.45
    assert len({b for b in seen if 0 < b < MiB}) >= 3  # several steps between 0 and the end
