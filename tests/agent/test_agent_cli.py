"""``movedisk agent ...``: ls (with the agent up or down), tasks, ping, serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from agenttools import REPO, AgentProcess, Pool, new_id, volume_path

from movedisk.agent import COPY, SimControl, StorageClient
from movedisk.cli import main as movedisk


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = movedisk(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ls_shows_what_the_domains_hold_even_with_the_agent_down(
    agent: AgentProcess, client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    img, vol = new_id(), new_id()
    sim.create_image(pool.src, img, [{"volUUID": vol, "size": 1 << 20, "extents": [(0, 8192)]}])
    client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, img, COPY))
    agent.stop()
    code, out, _ = run(capsys, "agent", "ls", "--root", str(agent_root), "--json", "--verify")
    assert code == 0
    listing = {d["sdUUID"]: d for d in json.loads(out)}
    assert set(listing) == {pool.src, pool.dst}
    for sd in (pool.src, pool.dst):
        (image,) = listing[sd]["images"]
        (v,) = image["volumes"]
        assert (image["imgUUID"], v["volUUID"], v["capacity"], v["truesize"]) == (img, vol, 1 << 20, 8192)
        assert v["checksum_ok"] is True and v["legality"] == "LEGAL"
    code, out, _ = run(capsys, "agent", "ls", "--root", str(agent_root), "--domain", pool.dst)
    assert code == 0 and img in out and pool.src not in out
    # a damaged copy shows up with --verify, and the exit code says so
    with open(volume_path(agent_root, pool.dst, img, vol), "r+b") as f:
        f.write(b"X")
    code, out, _ = run(capsys, "agent", "ls", "--root", str(agent_root), "--verify")
    assert code == 1 and "CHECKSUM MISMATCH" in out


def test_ls_of_an_unknown_domain_is_a_typed_error(
    agent_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "agent", "ls", "--root", str(agent_root), "--domain", new_id())
    assert code != 0 and "StorageDomainDoesNotExist" in err
    code, out, _ = run(capsys, "agent", "ls", "--root", str(agent_root), "--domain", new_id(), "--json")
    assert json.loads(out)["vdsm_code"] == 358


def test_tasks_lists_from_the_agent_and_from_records_when_it_is_down(
    agent: AgentProcess, client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    img = new_id()
    sim.create_image(pool.src, img, [{"volUUID": new_id(), "size": 65536, "extents": [(0, 4096)]}])
    task = client.move_image(pool.sp, pool.src, pool.dst, img, COPY, tag="cmd-7")
    client.wait_task(task)
    args = ("agent", "tasks", "--root", str(agent_root), "--socket", agent.socket, "--json")
    code, out, _ = run(capsys, *args, "--tag", "cmd-7")
    assert code == 0 and [t["taskID"] for t in json.loads(out)] == [task]
    agent.kill()
    code, out, _ = run(capsys, *args)
    (st,) = json.loads(out)
    assert (st["taskID"], st["taskResult"], st["tag"]) == (task, "success", "cmd-7")
    code, _, err = run(capsys, "agent", "ping", "--socket", agent.socket)
    assert code == 14 and "AgentUnavailable" in err


def test_movedisk_agent_serve_runs_the_simulator_and_refuses_a_second_one(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    movedisk_bin = Path(sys.executable).with_name("movedisk")
    cmd = [str(movedisk_bin)] if movedisk_bin.exists() else [sys.executable, "-m", "movedisk.cli"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen([*cmd, "agent", "serve", "--root", str(root)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        assert first.stdout is not None
        line = first.stdout.readline().decode()
        assert line == f"ready {root / 'agent.sock'}\n"
        assert StorageClient(root / "agent.sock").ping()["pid"] == first.pid
        second = subprocess.run([*cmd, "agent", "serve", "--root", str(root)], capture_output=True,
                                text=True, env=env, timeout=30)
        assert second.returncode != 0 and "AgentAlreadyRunning" in second.stderr
        first.terminate()
        assert first.wait(timeout=10) == 0
        assert not (root / "agent.sock").exists()
    finally:
        if first.poll() is None:
            first.kill()
