"""Real images: adopting a directory of qcow2/raw files, template-based chains copied and
compared with qemu-img, a corrupted copy caught by the copy's own checks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from agenttools import AgentProcess, Pool, new_id, volume_path

from movedisk.agent import COPY, MOVE, SimControl, StorageClient
from movedisk.agent import errors as E
from movedisk.cli import main as movedisk

MiB = 1 << 20


def qemu(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True,
                          cwd=cwd).stdout


def qemu_io(path: Path, *cmds: str) -> None:
    argv = ["qemu-io", "-f", "qcow2" if path.read_bytes()[:4] == b"QFI\xfb" else "raw"]
    for c in cmds:
        argv += ["-c", c]
    subprocess.run(argv + [str(path)], check=True, capture_output=True, cwd=path.parent)


def view(path: Path) -> bytes:
    out = path.with_name(f".view-{new_id()}")
    qemu("convert", "-U", "-O", "raw", str(path), str(out), cwd=path.parent)
    try:
        return out.read_bytes()
    finally:
        out.unlink()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = movedisk(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_adopts_a_directory_of_chains_and_a_template(
    agent: AgentProcess, client: StorageClient, sim: SimControl, pool: Pool, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = tmp_path / "images"
    src.mkdir()
    # a raw template with two disks based on it (one with a snapshot) ...
    qemu("create", "-f", "raw", str(src / "template.raw"), "2M")
    qemu_io(src / "template.raw", "write -P 0x11 0 1M")
    for name, parent, pattern in (("vm1-disk", "template.raw", "0x21"),
                                  ("vm1-snap", "vm1-disk", "0x22"),
                                  ("vm2-disk", "template.raw", "0x31")):
        qemu("create", "-f", "qcow2", "-b", parent, "-F",
             "raw" if parent.endswith(".raw") else "qcow2", str(src / name), "2M", cwd=src)
        qemu_io(src / name, f"write -P {pattern} {512 * 1024} 64k")
    # ... and a chain of its own in a directory named as an image group, files named as volumes
    img_id, base_id, top_id = new_id(), new_id(), new_id()
    (src / img_id).mkdir()
    qemu("create", "-f", "qcow2", str(src / img_id / base_id), "4M")
    qemu_io(src / img_id / base_id, "write -P 0x41 0 2M")
    qemu("create", "-f", "qcow2", "-b", base_id, "-F", "qcow2", str(src / img_id / top_id), "4M",
         cwd=src / img_id)
    qemu_io(src / img_id / top_id, "write -P 0x42 1M 4k")
    originals = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    views = {name: view(src / name) for name in ("vm1-snap", "vm2-disk", f"{img_id}/{top_id}")}

    code, out, err = run(capsys, "agent", "import", str(src), "--domain", pool.src,
                         "--socket", agent.socket, "--json")
    assert code == 0, err
    groups = json.loads(out)
    assert len(groups) == 4
    by_leaf: dict[str, dict[str, Any]] = {}
    for g in groups:
        origin = g["volumes"][-1]["description"].removeprefix("imported from ")
        by_leaf[str(Path(origin).relative_to(src))] = g
    tmpl = by_leaf["template.raw"]
    (tv,) = tmpl["volumes"]
    assert (tv["format"], tv["voltype"], tv["capacity"]) == ("RAW", "SHARED", 2 * MiB)
    vm1 = by_leaf["vm1-snap"]
    assert [v["volUUID"] for v in vm1["volumes"]][0] == tv["volUUID"]
    assert [v["shared"] for v in vm1["volumes"]] == [True, False, False]
    assert [v["voltype"] for v in vm1["volumes"][1:]] == ["INTERNAL", "LEAF"]
    own = by_leaf[f"{img_id}/{top_id}"]
    assert own["imgUUID"] == img_id and [v["volUUID"] for v in own["volumes"]] == [base_id, top_id]
    # the content a VM sees is the same through the adopted chains; the originals untouched
    root = agent.root
    for name, g in by_leaf.items():
        if name in views:
            leaf = volume_path(root, pool.src, g["imgUUID"], g["volumes"][-1]["volUUID"])
            assert view(leaf) == views[name]
            backing = json.loads(qemu("info", "-U", "--output=json", str(leaf)))["backing-filename"]
            assert backing == g["volumes"][-2]["volUUID"]
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == originals
    code, out, _ = run(capsys, "agent", "ls", "--root", str(root), "--domain", pool.src,
                       "--verify", "--json")
    assert code == 0
    # the adopted disks move like any other: the template first, then a disk based on it
    with pytest.raises(E.CouldNotValideTemplateOnTargetDomain):
        client.move_image(pool.sp, pool.src, pool.dst, vm1["imgUUID"], MOVE)
    client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, tmpl["imgUUID"], COPY))
    st = client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, vm1["imgUUID"], MOVE))
    assert (st["taskResult"], st["code"], st["result"]["source_deleted"]) == ("success", 0, True)
    leaf = volume_path(root, pool.dst, vm1["imgUUID"], vm1["volumes"][-1]["volUUID"])
    assert view(leaf) == views["vm1-snap"]
    # importing the same files again is refused: their volume ids are taken
    with pytest.raises(E.VolumeAlreadyExists):
        sim.import_images(pool.src, src / img_id)


def test_import_refuses_a_chain_whose_backing_file_is_elsewhere(
    sim: SimControl, pool: Pool, tmp_path: Path, agent_root: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    qemu("create", "-f", "qcow2", str(tmp_path / "a" / "base"), "1M")
    qemu("create", "-f", "qcow2", "-b", "../a/base", "-F", "qcow2", str(tmp_path / "b" / "top"),
         "1M", cwd=tmp_path / "b")
    with pytest.raises(E.InvalidParameter) as exc:
        sim.import_images(pool.src, tmp_path / "b")
    assert "backing file ../a/base is not among the images" in exc.value.message
    assert not any((agent_root / "domains" / pool.src / "images").iterdir())


def test_a_copy_that_does_not_match_its_source_is_never_legal(
    agent: AgentProcess, client: StorageClient, sim: SimControl, pool: Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The copy's own verification can fail: a source whose data changed after its checksum
    was taken (as a bad disk would) is caught, and the copy stays ILLEGAL."""
    img, base, top = new_id(), new_id(), new_id()
    sim.create_image(pool.src, img, [{"volUUID": base, "size": 2 * MiB, "extents": [(0, MiB)]},
                                     {"volUUID": top, "size": 2 * MiB, "extents": [(0, 4096)]}])
    qemu_io(volume_path(agent.root, pool.src, img, base), "write -P 0x55 4096 512")
    st = client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, img, MOVE))
    assert (st["taskResult"], st["code"]) == ("cleanFailure", 484)
    assert base in st["message"] and "checksum" in st["message"]
    assert client.get_images(pool.sp, pool.src) == [img]  # a failed copy never deletes
    assert [v["legality"] for v in client.volumes_info(pool.sp, pool.dst, img)] == \
        ["ILLEGAL", "ILLEGAL"]


@pytest.mark.parametrize("compat", ["1.1", "0.10"])
def test_layer_read_from_the_qcow2_tables_is_what_qemu_img_map_says(
    tmp_path: Path, compat: str
) -> None:
    """The checksum reads a qcow2 layer's own tables; qemu-img map is the reference, over
    copy-on-write partial clusters, zeroed and discarded ranges, an odd virtual size, a
    second L2 table, and (read by qemu-img only) compressed clusters."""
    from movedisk.agent import images

    base, top = tmp_path / "base", tmp_path / "top"
    qemu("create", "-f", "qcow2", "-o", f"compat={compat},cluster_size=4096", str(base),
         str(3 * MiB + 1234))
    qemu_io(base, "write -P 0x61 0 1M", "write -P 0x62 2M 700k", "write -P 0x63 3M 1234")
    qemu("create", "-f", "qcow2", "-o", f"compat={compat},cluster_size=4096", "-b", "base", "-F",
         "qcow2", str(top), str(3 * MiB + 1234), cwd=tmp_path)
    qemu_io(top, "write -P 0x71 1000 10", "write -z 512k 64k", "discard 2M 8k",
            "write -P 0x72 2100k 3k")
    packed = tmp_path / "packed"
    qemu("convert", "-c", "-O", "qcow2", str(base), str(packed))
    for f in (base, top, packed):
        assert images.layer_checksum(f, "COW") == images.layer_checksum(f, "COW", use_qemu=True)
    assert images.qcow2_layer(base) is not None and images.qcow2_layer(packed) is None
    lay = images.qcow2_layer(top)
    assert lay is not None and len(lay.data) >= 2 and lay.size == 3 * MiB + 1536  # in sectors
