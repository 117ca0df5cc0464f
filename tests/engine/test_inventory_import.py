"""Existing images recorded by ``movedisk inventory`` (a disk with ``"import": {"dir": ...}``)
and moved like any other disk: a qemu-img-made chain (a raw base and two qcow2 snapshots) in
a directory, adopted by the agent, recorded on the database with the formats, sizes and
parents the agent read, moved with ``movedisk move --wait``, and compared on the destination
with ``qemu-img compare`` against the original files; then the invariants."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from agenttools import AgentProcess
from cli_runner import run_cli
from invariants import check, volume_checksums
from psycopg.rows import dict_row

MIB = 1 << 20


def qemu_img(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-img", *args], cwd=cwd, capture_output=True, text=True,
                          check=False)


def qemu_io(path: Path, command: str, fmt: str = "qcow2") -> None:
    subprocess.run(["qemu-io", "-f", fmt, "-c", command, str(path)], check=True,
                   capture_output=True)


def make_chain(d: Path) -> list[Path]:
    """base.raw <- snap1.qcow2 <- snap2.qcow2 (backing files relative), each with data."""
    d.mkdir()
    base, snap1, snap2 = d / "base.raw", d / "snap1.qcow2", d / "snap2.qcow2"
    assert qemu_img("create", "-q", "-f", "raw", str(base), "8M").returncode == 0
    qemu_io(base, "write -P 0x5a 0 3M", fmt="raw")
    assert qemu_img("create", "-q", "-f", "qcow2", "-b", base.name, "-F", "raw", str(snap1),
                    "8M", cwd=d).returncode == 0
    qemu_io(snap1, "write -P 0x6b 2M 1M")
    assert qemu_img("create", "-q", "-f", "qcow2", "-b", snap1.name, "-F", "qcow2", str(snap2),
                    "8M", cwd=d).returncode == 0
    qemu_io(snap2, "write -P 0x7c 2560K 64K")
    qemu_io(snap2, "write -z 7M 64K")
    return [base, snap1, snap2]


def spec(import_dir: str) -> dict[str, Any]:
    return {"data_centers": [{
        "name": f"dc-{uuid.uuid4().hex[:6]}",
        "domains": [{"name": "S", "capacity": "64M"}, {"name": "D", "capacity": "64M"}],
        "vms": [{"name": "legacy-vm", "disks": [
            {"alias": "legacy-os", "domain": "S", "import": {"dir": import_dir}}]}],
    }]}


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    sockdir = tempfile.mkdtemp(prefix="mdi-", dir="/tmp")
    root = tmp_path / "agent"
    root.mkdir()
    proc = AgentProcess(root, os.path.join(sockdir, "agent.sock")).start()
    try:
        yield proc
    finally:
        proc.kill()
        shutil.rmtree(sockdir, ignore_errors=True)


def test_an_imported_chain_is_recorded_and_moved_byte_for_byte(
    new_db: Callable[..., str], agent: AgentProcess, tmp_path: Path
) -> None:
    originals = make_chain(tmp_path / "images")
    before = {p: p.read_bytes() for p in originals}
    inv = tmp_path / "inventory.json"
    inv.write_text(json.dumps(spec("images")))  # relative to the inventory file
    dsn = new_db()
    env = {"MOVEDISK_DSN": dsn, "MOVEDISK_AGENT_SOCKET": agent.socket}

    res = run_cli("inventory", str(inv), "--json", env=env)
    assert res.returncode == 0, res.stderr
    made = json.loads(res.stdout)["disks"]["legacy-os"]
    disk, src = made["id"], made["domain"]
    vols = made["volumes"]
    assert made["formats"] == ["RAW", "COW", "COW"] and len(vols) == 3

    # the database holds what the images are: format, virtual size, parent, active leaf
    conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
    rows = conn.execute(
        "SELECT image_guid::text AS vol, parentid::text AS parent, volume_format, size, active, "
        "m.storage_domain_id::text AS sd, d.actual_size FROM images i "
        "JOIN image_storage_domain_map m ON m.image_id = i.image_guid "
        "JOIN disk_image_dynamic d ON d.image_id = i.image_guid "
        "WHERE image_group_id = %s ORDER BY sequence_number", (disk,)).fetchall()
    assert [r["vol"] for r in rows] == vols
    assert [r["parent"] for r in rows] == [str(uuid.UUID(int=0)), vols[0], vols[1]]
    assert [r["volume_format"] for r in rows] == [5, 4, 4]  # oVirt RAW, COW
    assert {r["size"] for r in rows} == {8 * MIB} and [r["active"] for r in rows] == [
        False, False, True]
    assert {r["sd"] for r in rows} == {src}
    assert rows[0]["actual_size"] >= 3 * MIB  # the raw base's allocation, read from the file

    expected = volume_checksums(agent.root)
    dst = json.loads(run_cli("domains", "--json", env=env).stdout)
    dst_id = next(d["domain_id"] for d in dst if d["name"] == "D")
    res = run_cli("move", "legacy-os", "--to", "D", "--wait", "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["stage"] == "ENDED_SUCCESS"

    # on the destination: the same chain, each volume's view equal to the original's
    img_dir = agent.root / "domains" / dst_id / "images" / disk
    assert not (agent.root / "domains" / src / "images" / disk).exists()
    for vol, orig in zip(vols, originals):
        info = json.loads(qemu_img("info", "-U", "--output=json", str(img_dir / vol)).stdout)
        assert info["format"] == ("raw" if orig.suffix == ".raw" else "qcow2")
        cmp = qemu_img("compare", "-U", str(img_dir / vol), str(orig))
        assert cmp.returncode == 0, (vol, orig.name, cmp.stdout, cmp.stderr)
    # and compare does see a difference: the top volume differs from its parent
    assert qemu_img("compare", "-U", str(img_dir / vols[2]), str(originals[1])).returncode == 1
    assert {p: p.read_bytes() for p in originals} == before  # the originals untouched
    mapped = conn.execute("SELECT DISTINCT storage_domain_id::text AS sd FROM "
                          "image_storage_domain_map WHERE image_id = ANY(%s::uuid[])",
                          (vols,)).fetchall()
    assert [r["sd"] for r in mapped] == [dst_id]
    check(conn, agent.root, expected)
    conn.close()


def test_a_directory_of_two_chains_is_refused_and_nothing_is_made(
    new_db: Callable[..., str], agent: AgentProcess, tmp_path: Path
) -> None:
    make_chain(tmp_path / "images")
    other = tmp_path / "images" / "other.qcow2"
    assert qemu_img("create", "-q", "-f", "qcow2", str(other), "1M").returncode == 0
    inv = tmp_path / "inventory.json"
    inv.write_text(json.dumps(spec(str(tmp_path / "images"))))
    dsn = new_db()
    env = {"MOVEDISK_DSN": dsn, "MOVEDISK_AGENT_SOCKET": agent.socket}
    counts = "SELECT (SELECT count(*) FROM images), (SELECT count(*) FROM storage_pool), " \
             "(SELECT count(*) FROM base_disks), (SELECT count(*) FROM vm_static)"
    with psycopg.connect(dsn) as conn:
        before = conn.execute(counts).fetchone()
    res = run_cli("inventory", str(inv), env=env)
    assert res.returncode == 16 and "holds 2 chains" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute(counts).fetchone() == before
    assert not list((agent.root / "domains").glob("*"))  # the agent made nothing either
