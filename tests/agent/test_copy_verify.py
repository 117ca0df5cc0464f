"""The copy's own verification (copyverify): what it catches once qemu-img convert has
written a volume and the agent has fsynced it, and when it still asks qemu-img compare."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from agenttools import AgentProcess, Pool, new_id, volume_path

from movedisk.agent import COPY, MOVE, SimControl, StorageClient, images
from movedisk.agent.copyverify import CopyVerifier
from movedisk.agent.errors import ImageVerificationError
from movedisk.agent.layout import BLANK_UUID

MiB = 1 << 20


def qemu(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True, cwd=cwd)


def qemu_io(path: Path, *cmds: str) -> None:
    argv = ["qemu-io", "-f", "qcow2"]
    for c in cmds:
        argv += ["-c", c]
    subprocess.run(argv + [str(path)], check=True, capture_output=True, cwd=path.parent)


def test_a_copy_corrupted_after_its_fsync_is_caught_before_it_is_legal(
    agent: AgentProcess, client: StorageClient, sim: SimControl, pool: Pool,
) -> None:
    """The verification reads the copy after its fsync: a sector changed between the copy
    and the verification (the copy_corrupt fault) fails the move with 484; the source is
    kept and the copy never LEGAL. The same move without the fault succeeds."""
    img, base, top = new_id(), new_id(), new_id()
    sim.create_image(pool.src, img, [{"volUUID": base, "size": 8 * MiB, "extents": [(0, 4 * MiB)]},
                                     {"volUUID": top, "size": 8 * MiB,
                                      "extents": [(2 * MiB, 3 * MiB)], "seed": 1}])
    sums = [v["checksum"] for v in client.volumes_info(pool.sp, pool.src, img)]
    sim.add_fault("copy_corrupt", imgUUID=img)
    st = client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, img, MOVE))
    assert (st["taskResult"], st["code"]) == ("cleanFailure", 484)
    assert base in st["message"] and "checksum" in st["message"]
    assert client.get_images(pool.sp, pool.src) == [img]
    assert all(v["legality"] == "ILLEGAL" for v in client.volumes_info(pool.sp, pool.dst, img))
    assert [v["checksum"] for v in client.volumes_info(pool.sp, pool.src, img)] == sums
    st = client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, img, COPY, force=True))
    assert (st["taskResult"], st["code"]) == ("success", 0)
    assert st["result"]["seconds"]["compare"] == 0  # every shape shown equal: no compare
    assert client.verify_image(pool.sp, pool.dst, img, dict(zip([base, top], sums)))["verified"]


def test_a_chain_in_small_clusters_moves_with_its_checksums(
    agent: AgentProcess, client: StorageClient, sim: SimControl, pool: Pool, tmp_path: Path,
) -> None:
    """A qcow2 chain made with 4 KiB clusters (an adopted image) is copied in 4 KiB clusters:
    in 64 KiB ones the copy's layer would hold its backing's bytes around each 4 KiB write,
    and no layer checksum would match its source's."""
    src = tmp_path / "images"
    src.mkdir()
    qemu("create", "-f", "qcow2", "-o", "cluster_size=4096", str(src / "base"), "4M")
    qemu_io(src / "base", "write -P 0x41 0 2M")
    qemu("create", "-f", "qcow2", "-o", "cluster_size=4096", "-b", "base", "-F", "qcow2",
         str(src / "top"), "4M", cwd=src)
    qemu_io(src / "top", "write -P 0x42 1M 4k", "write -z 8k 4k")
    (group,) = sim.import_images(pool.src, src)
    img = group["imgUUID"]
    st = client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, img, MOVE))
    assert (st["taskResult"], st["code"]) == ("success", 0), st["message"]
    assert st["result"]["seconds"]["compare"] == 0
    leaf = volume_path(agent.root, pool.dst, img, group["volumes"][-1]["volUUID"])
    assert images.cluster_size(leaf) == 4096


def _chain(d: Path) -> dict[str, dict[str, str]]:
    """base (data in its first 2 MiB) and top (a zeroed cluster over the base's data)."""
    d.mkdir()
    qemu("create", "-f", "qcow2", "-o", "compat=1.1", str(d / "base"), "4M")
    qemu_io(d / "base", "write -P 0x61 0 2M")
    qemu("create", "-f", "qcow2", "-o", "compat=1.1", "-b", "base", "-F", "qcow2", str(d / "top"),
         "4M", cwd=d)
    qemu_io(d / "top", "write -P 0x62 1M 64k", "write -z 256k 64k")
    return {v: {"format": images.COW, "parent": parent,
                "checksum": images.layer_checksum(d / v, images.COW)[0]}
            for v, parent in (("base", BLANK_UUID), ("top", "base"))}


def _copy(src: Path, dst: Path) -> None:
    dst.mkdir()
    for vol, parent in (("base", None), ("top", "base")):
        images.convert(src / vol, dst / vol, images.COW, parent, lambda _: None, lambda: False)


def _verify(src: Path, dst: Path, metas: dict[str, dict[str, str]]) -> dict[str, float]:
    with CopyVerifier(src, dst, "D") as verifier:
        for vol, meta in metas.items():
            verifier.add(vol, meta)
        return verifier.wait("top", images.COW)


def _unallocate(path: Path, offset: int) -> None:
    """Clear the L2 entry of the cluster at virtual ``offset``: it reads from the backing."""
    with open(path, "r+b") as f:
        hdr = f.read(48)
        cs = 1 << struct.unpack_from(">I", hdr, 20)[0]
        l1_offset = struct.unpack_from(">Q", hdr, 40)[0]
        f.seek(l1_offset)
        l2_offset = struct.unpack(">Q", f.read(8))[0] & 0x00FFFFFFFFFFFE00
        f.seek(l2_offset + 8 * (offset // cs))
        f.write(bytes(8))


def test_a_zero_cluster_lost_by_the_copy_is_caught_by_compare(tmp_path: Path) -> None:
    """The layer checksums cannot see a zero cluster turned unallocated (both read as zeros
    in the layer), but the guest then sees the backing's bytes: the layer's shape differs
    from its source's, so qemu-img compare runs, and fails the copy."""
    src, dst = tmp_path / "s", tmp_path / "d"
    metas = _chain(src)
    _copy(src, dst)
    assert _verify(src, dst, metas)["compare"] == 0  # a faithful copy: shapes equal
    _unallocate(dst / "top", 256 * 1024)
    assert images.layer_checksum(dst / "top", images.COW)[0] == metas["top"]["checksum"]
    assert images.check(dst / "top")["ok"]
    assert images.same_shape(src / "top", dst / "top", images.COW) is not None
    with pytest.raises(ImageVerificationError, match="qemu-img compare of the chain ending in top"):
        _verify(src, dst, metas)


def test_a_copy_whose_backing_file_differs_is_caught(tmp_path: Path) -> None:
    """A copied layer pointing at another backing file has another shape: compare decides."""
    src, dst = tmp_path / "s", tmp_path / "d"
    metas = _chain(src)
    _copy(src, dst)
    qemu("create", "-f", "qcow2", "-o", "compat=1.1", str(dst / "other"), "4M")
    images.rebase_unsafe(dst / "top", "other", images.COW)
    assert "backing file other" in (images.same_shape(src / "top", dst / "top", images.COW) or "")
    with pytest.raises(ImageVerificationError, match="qemu-img compare"):
        _verify(src, dst, metas)


def test_a_layer_not_above_the_volume_its_metadata_names_is_not_taken_as_shown(
    tmp_path: Path
) -> None:
    """Equal shapes prove equal guest content only from the base up: a layer whose metadata
    names another parent than its backing file leaves the decision to qemu-img compare."""
    src, dst = tmp_path / "s", tmp_path / "d"
    metas = _chain(src)
    _copy(src, dst)
    assert images.same_shape(src / "top", dst / "top", images.COW, "base") is None
    assert "backing file base" in (images.same_shape(src / "top", dst / "top", images.COW,
                                                     "elsewhere") or "")
    metas["top"]["parent"] = "elsewhere"
    assert _verify(src, dst, metas)["compare"] > 0  # the chains are the same: compare says so


def test_a_copy_with_a_changed_sector_fails_on_its_checksum(tmp_path: Path) -> None:
    src, dst = tmp_path / "s", tmp_path / "d"
    metas = _chain(src)
    _copy(src, dst)
    images.overwrite_sector(dst / "base", images.COW)
    with pytest.raises(ImageVerificationError, match="volume base copied to D has checksum"):
        _verify(src, dst, metas)
