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
    img, base, leaf = new_id(), new_id(), new_id()
    sim.create_image(pool.src, img, [
        {"volUUID": base, "size": 1 << 20, "extents": [(0, 8192)], "format": "raw"},
        {"volUUID": leaf, "size": 1 << 20, "extents": [(65536, 65536)], "seed": 5}])
    client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, img, COPY))
    agent.stop()
    code, out, _ = run(capsys, "agent", "ls", "--root", str(agent_root), "--json", "--verify")
    assert code == 0
    listing = {d["sdUUID"]: d for d in json.loads(out)}
    assert set(listing) == {pool.src, pool.dst}
    for sd in (pool.src, pool.dst):
        (image,) = listing[sd]["images"]
        b, v = image["volumes"]
        assert (image["imgUUID"], b["volUUID"], v["volUUID"]) == (img, base, leaf)
        assert (b["verify"]["format"], b["verify"]["virtual_size"], b["verify"]["backing_file"],
                b["verify"]["check"], b["truesize"]) == ("raw", 1 << 20, None, "-", 8192)
        assert (v["verify"]["format"], v["verify"]["virtual_size"], v["verify"]["backing_file"],
                v["verify"]["check"]) == ("qcow2", 1 << 20, base, "ok")
        assert 65536 < v["verify"]["actual_size"] < 1 << 20
        assert all(x["checksum_ok"] and x["verify"]["ok"] and x["legality"] == "LEGAL"
                   for x in (b, v))
    code, out, _ = run(capsys, "agent", "ls", "--root", str(agent_root), "--domain", pool.dst)
    assert code == 0 and img in out and pool.src not in out
    # a damaged data cluster shows up with --verify (checksum), and the exit code says so
    leaf_file = volume_path(agent_root, pool.dst, img, leaf)
    (extent,) = [e for e in json.loads(subprocess.run(
        ["qemu-img", "map", "--output=json", str(leaf_file)], capture_output=True, text=True,
        check=True, cwd=leaf_file.parent).stdout) if e["data"] and e["depth"] == 0]
    with open(leaf_file, "r+b") as f:
        f.seek(extent["offset"] + 100)
        f.write(b"X")
    code, out, _ = run(capsys, "agent", "ls", "--root", str(agent_root), "--verify")
    assert code == 1 and "CHECKSUM MISMATCH" in out and "PROBLEM: checksum mismatch" in out
    # a broken qcow2 header: qemu-img cannot even open it; said in one line, exit 1
    with open(leaf_file, "r+b") as f:
        f.write(b"XXXX")
    code, out, _ = run(capsys, "agent", "ls", "--root", str(agent_root), "--verify",
                       "--domain", pool.dst)
    assert code == 1 and "PROBLEM: the file is raw, its metadata says COW" in out


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


def test_agent_without_qemu_img_says_what_to_install(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": str(tmp_path)}  # no qemu-img there
    res = subprocess.run([sys.executable, "-m", "movedisk.agent.server", "--root",
                          str(tmp_path / "root")], capture_output=True, text=True, env=env,
                         timeout=30)
    assert res.returncode == 18
    assert res.stderr.strip().splitlines() == [
        "agent: QemuToolMissing: qemu-img not found: install qemu-utils (apt-get install "
        "qemu-utils; `make test` does it as root)"]
