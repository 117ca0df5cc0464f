"""Every verb of the agent against real files in a real simulator process."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from agenttools import AgentProcess, Pool, allocated, new_id, snapshot, volume_path

from movedisk.agent import COPY, MOVE, SimControl, StorageClient, datacopy
from movedisk.agent import errors as E
from movedisk.errors import DeletionBlocked, InsufficientSpace, MalformedId, WrongStorageDomain

MiB = 1 << 20


# One agent for the module (none of these tests kills it); each test makes its own pool.
@pytest.fixture
def agent(module_agent: AgentProcess) -> AgentProcess:
    return module_agent


@pytest.fixture
def agent_root(module_agent: AgentProcess) -> Path:
    return module_agent.root


def state(root: Path, pool: Pool) -> dict[str, dict[str, tuple[int, str]]]:
    """The files of the test's two domains and every task record (the agent is shared)."""
    return {name: snapshot(root / sub) for name, sub in
            (("src", f"domains/{pool.src}"), ("dst", f"domains/{pool.dst}"), ("tasks", "tasks"))}


def make_chain(sim: SimControl, sd: str, sizes: int = 4 * MiB,
               base_format: str = "cow") -> tuple[str, list[str]]:
    """A 3-volume qcow2 chain: a sparse base with two data runs, a middle with one, a leaf
    with a few bytes (through qemu-io: the leaf's cluster keeps the rest from below)."""
    img, vols = new_id(), [new_id() for _ in range(3)]
    sim.create_image(sd, img, [
        {"volUUID": vols[0], "size": sizes, "extents": [(0, MiB), (3 * MiB, MiB // 2)], "seed": 1,
         "format": base_format},
        {"volUUID": vols[1], "size": sizes, "extents": [(MiB, 64 * 1024)], "seed": 2},
        {"volUUID": vols[2], "size": sizes, "content": b"leaf data"},
    ])
    return img, vols


def guest_view(path: Path) -> bytes:
    """What a VM sees through the chain ending at ``path`` (qemu-img convert to raw)."""
    out = path.with_name(f".view-{path.name}-{new_id()}")
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", str(path), str(out)], check=True,
                   cwd=path.parent)
    try:
        return out.read_bytes()
    finally:
        out.unlink()


def qemu_info(path: Path) -> dict[str, Any]:
    res = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], check=True,
                         capture_output=True, text=True)
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_created_chain_is_listed_base_first_with_sizes_parents_checksums(
    client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path
) -> None:
    img, vols = make_chain(sim, pool.src)
    assert client.get_volumes(pool.sp, pool.src, img) == vols
    infos = client.volumes_info(pool.sp, pool.src, img)
    assert [i["parent"] for i in infos] == ["00000000-0000-0000-0000-000000000000", vols[0], vols[1]]
    assert [i["format"] for i in infos] == ["COW", "COW", "COW"]
    assert [i["voltype"] for i in infos] == ["INTERNAL", "INTERNAL", "LEAF"]
    assert all(i["capacity"] == 4 * MiB for i in infos)
    # real qcow2 images, each naming its parent by volume id, relative to the image group
    files = [volume_path(agent_root, pool.src, img, v) for v in vols]
    assert all(f.read_bytes()[:4] == b"QFI\xfb" for f in files)
    qinfo = [qemu_info(f) for f in files]
    assert [q["virtual-size"] for q in qinfo] == [4 * MiB] * 3
    assert [q.get("backing-filename") for q in qinfo] == [None, vols[0], vols[1]]
    # the data is really there, seen through the chain: each MiB stamped with its seed
    view = guest_view(files[2])
    assert view[:9] == b"leaf data" and view[MiB:MiB + 16] == (2).to_bytes(8, "big") + \
        (1).to_bytes(8, "big") and view[3 * MiB:3 * MiB + 8] == (1).to_bytes(8, "big")
    assert view[2 * MiB:3 * MiB] == bytes(MiB)
    # sparse: the base stores its 1.5 MiB of data, not its 4 MiB
    assert infos[0]["data_bytes"] == MiB + MiB // 2 and infos[0]["truesize"] < 2 * MiB
    assert len({i["checksum"] for i in infos}) == 3
    assert client.get_images(pool.sp, pool.src) == [img]
    assert client.get_images(pool.sp, pool.dst) == []
    dom = client.get_domain_info(pool.sp, pool.src)
    assert dom["capacity"] == 1 << 30 and dom["used"] == sum(i["truesize"] for i in infos)


@pytest.mark.parametrize("base_format", ["cow", "raw"])
def test_copy_of_a_3_volume_chain_keeps_formats_chain_content_and_sparseness(
    client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path, base_format: str
) -> None:
    img, vols = make_chain(sim, pool.src, base_format=base_format)
    before = snapshot(agent_root / "domains" / pool.src)
    task = client.move_image(pool.sp, pool.src, pool.dst, img, COPY, tag="cmd-1")
    st = client.wait_task(task)
    assert (st["taskState"], st["taskResult"], st["code"]) == ("finished", "success", 0)
    assert st["progress"]["bytes_done"] == st["progress"]["bytes_total"] > MiB
    for vol in vols:
        src, dst = (volume_path(agent_root, sd, img, vol) for sd in (pool.src, pool.dst))
        # what a VM sees at each snapshot is the same, byte for byte, through the new chain
        assert guest_view(dst) == guest_view(src)
        qs, qd = qemu_info(src), qemu_info(dst)
        assert (qd["format"], qd["virtual-size"], qd.get("backing-filename")) == \
            (qs["format"], qs["virtual-size"], qs.get("backing-filename"))
        # the backing file resolves on the destination, not back to the source
        if "backing-filename" in qs:
            assert qd["full-backing-filename"] == str(dst.with_name(qs["backing-filename"]))
        assert allocated(dst) <= allocated(src) + 64 * 1024  # holes stay holes
        # the checksum a reader computes from the file (as the invariant checks do) is the
        # one the metadata records, on both domains, though the qcow2 bytes may differ
        recorded = json.loads(src.with_name(f"{vol}.meta").read_text())["checksum"]
        assert datacopy.checksum(str(src)) == datacopy.checksum(str(dst)) == recorded
    assert allocated(volume_path(agent_root, pool.dst, img, vols[0])) < 2 * MiB
    assert qemu_info(volume_path(agent_root, pool.dst, img, vols[0]))["format"] == \
        {"cow": "qcow2", "raw": "raw"}[base_format]
    file_facts = ("apparentsize", "truesize")
    assert [{k: v for k, v in i.items() if k not in file_facts}
            for i in client.volumes_info(pool.sp, pool.dst, img)] == [
        {**{k: v for k, v in i.items() if k not in file_facts}, "domain": pool.dst}
        for i in client.volumes_info(pool.sp, pool.src, img)
    ]
    # op=Copy leaves the source exactly as it was
    assert snapshot(agent_root / "domains" / pool.src) == before


def test_raw_volume_cannot_have_a_parent(client: StorageClient, sim: SimControl, pool: Pool) -> None:
    img, base = new_id(), new_id()
    sim.create_volume(pool.src, img, base, MiB)
    with pytest.raises(E.InvalidParameter):
        sim.call("Sim.createVolume", sdUUID=pool.src, imgUUID=img, volUUID=new_id(), size=MiB,
                 parent=base, format="raw")
    with pytest.raises(E.InvalidParameter):
        sim.call("Sim.createVolume", sdUUID=pool.src, imgUUID=img, volUUID=new_id(), size=MiB,
                 parent=base, format="vmdk")


def test_move_deletes_the_source_and_says_so(
    client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path
) -> None:
    img, vols = make_chain(sim, pool.src)
    data = guest_view(volume_path(agent_root, pool.src, img, vols[2]))
    st = client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, img, MOVE))
    assert st["taskResult"] == "success" and st["result"]["source_deleted"] is True
    assert client.get_images(pool.sp, pool.src) == []
    assert not (agent_root / "domains" / pool.src / "images" / img).exists()
    assert guest_view(volume_path(agent_root, pool.dst, img, vols[2])) == data


def test_tasks_are_found_by_tag_listed_and_cleared(
    client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path
) -> None:
    img, _ = make_chain(sim, pool.src)
    tag = f"command-{new_id()}"
    task = client.move_image(pool.sp, pool.src, pool.dst, img, COPY, tag=tag)
    client.wait_task(task)
    assert [s["taskID"] for s in client.tasks_by_tag(tag)] == [task]
    assert client.tasks_by_tag(new_id()) == []
    assert task in client.get_all_tasks_statuses()
    assert (agent_root / "tasks" / f"{task}.json").exists()
    second = client.delete_image(pool.sp, pool.dst, img, tag=tag)
    client.wait_task(second)
    assert [s["taskID"] for s in client.tasks_by_tag(tag)] == [task, second]
    # Several tags in one call (recovery asks for a batch of moves' tasks at once).
    other = f"command-{new_id()}"
    third = client.move_image(pool.sp, pool.src, pool.dst, img, COPY, tag=other)
    client.wait_task(third)
    assert set(client.get_all_tasks_statuses(tags=[tag, other, new_id()])) == {task, second, third}
    assert set(client.get_all_tasks_statuses(tags=[other])) == {third}
    assert client.get_all_tasks_statuses(tags=[]) == {}
    assert client.clear_task(third)
    with pytest.raises(E.InvalidParameter):
        client.call("Host.getAllTasksStatuses", tags="not-a-list")
    assert client.clear_task(task)
    assert task not in client.get_all_tasks_statuses()
    assert [s["taskID"] for s in client.tasks_by_tag(tag)] == [second]
    assert not (agent_root / "tasks" / f"{task}.json").exists()
    assert client.clear_task(second)
    assert client.tasks_by_tag(tag) == []
    with pytest.raises(E.InvalidParameter):
        client.call("Host.getAllTasksStatuses", tag=["not", "a", "string"])
    with pytest.raises(E.UnknownTask) as exc:
        client.get_task_status(task)
    assert exc.value.vdsm_code == 401


def test_running_task_cannot_be_cleared_and_stop_aborts_it(
    client: StorageClient, sim: SimControl, pool: Pool
) -> None:
    img, _ = make_chain(sim, pool.src)
    sim.add_fault("copy_delay", imgUUID=img, sleep_per_chunk=0.05, chunk=64 * 1024)
    task = client.move_image(pool.sp, pool.src, pool.dst, img, COPY)
    with pytest.raises(E.TaskNotFinished) as exc:
        client.clear_task(task)
    assert exc.value.vdsm_code == 403
    assert client.stop_task(task)
    st = client.wait_task(task)
    assert (st["taskResult"], st["code"]) == ("cleanFailure", 411)
    assert st["progress"]["bytes_done"] < st["progress"]["bytes_total"]
    with pytest.raises(E.TaskStateError):
        client.stop_task(task)
    assert client.clear_task(task)


def test_delete_with_post_zero_wipes_the_data_before_removing(
    client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path
) -> None:
    img, vols = make_chain(sim, pool.src)
    witness = agent_root / f"witness-{new_id()}"  # a second name for the base volume's inode
    os.link(volume_path(agent_root, pool.src, img, vols[0]), witness)
    assert any(witness.read_bytes())
    st = client.wait_task(client.delete_image(pool.sp, pool.src, img, postZero=True))
    assert st["taskResult"] == "success" and st["result"]["bytes_zeroed"] >= MiB
    assert client.get_images(pool.sp, pool.src) == []
    assert witness.read_bytes() == bytes(witness.stat().st_size)  # the qcow2 file, all of it
    with pytest.raises(E.ImageDoesNotExistInSD) as exc:
        client.get_volumes(pool.sp, pool.src, img)
    assert exc.value.vdsm_code == 268


def test_template_deletion_is_refused_while_dependents_exist(
    client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path
) -> None:
    tmpl_img, tmpl_vol = new_id(), new_id()
    sim.create_image(pool.src, tmpl_img, [{"volUUID": tmpl_vol, "size": 2 * MiB,
                                           "extents": [(0, MiB)], "seed": 7}])
    disks = []
    for seed in (1, 2):
        img, vol = new_id(), new_id()
        chain = sim.create_disk_from_template(pool.src, img, vol, tmpl_vol,
                                              extents=[(0, 4096)], seed=seed)
        assert [v["volUUID"] for v in chain] == [tmpl_vol, vol]
        assert chain[0]["shared"] and chain[1]["parent"] == tmpl_vol
        disks.append(img)
    # linked, not copied: the dependent directory holds the template's inode
    assert os.path.samefile(volume_path(agent_root, pool.src, tmpl_img, tmpl_vol),
                            volume_path(agent_root, pool.src, disks[0], tmpl_vol))
    before = state(agent_root, pool)
    with pytest.raises(E.CannotDeleteSharedVolume) as exc:
        client.delete_image(pool.sp, pool.src, tmpl_img)
    assert exc.value.vdsm_code == 223 and isinstance(exc.value, DeletionBlocked)
    assert {d["imgUUID"] for d in exc.value.details["dependents"]} == set(disks)
    assert state(agent_root, pool) == before
    # deleting one dependent leaves the template intact; the other still blocks
    client.wait_task(client.delete_image(pool.sp, pool.src, disks[0]))
    assert volume_path(agent_root, pool.src, tmpl_img, tmpl_vol).stat().st_nlink == 2
    with pytest.raises(E.CannotDeleteSharedVolume):
        client.delete_image(pool.sp, pool.src, tmpl_img)
    client.wait_task(client.delete_image(pool.sp, pool.src, disks[1]))
    st = client.wait_task(client.delete_image(pool.sp, pool.src, tmpl_img))
    assert st["taskResult"] == "success"
    assert client.get_images(pool.sp, pool.src) == []


def test_move_of_a_template_reports_the_refused_source_deletion(
    client: StorageClient, sim: SimControl, pool: Pool
) -> None:
    tmpl_img, tmpl_vol = new_id(), new_id()
    sim.create_image(pool.src, tmpl_img, [{"volUUID": tmpl_vol, "size": MiB, "extents": [(0, MiB)]}])
    sim.create_disk_from_template(pool.src, new_id(), new_id(), tmpl_vol)
    with pytest.raises(E.CannotDeleteSharedVolume):  # op=Move is refused up front ...
        client.move_image(pool.sp, pool.src, pool.dst, tmpl_img, MOVE)
    # ... op=Copy works; the dependent disk can then follow it to the destination
    st = client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, tmpl_img, COPY))
    assert st["taskResult"] == "success"
    assert client.get_volumes(pool.sp, pool.dst, tmpl_img) == [tmpl_vol]


def test_dependent_disk_moves_only_where_its_template_is(
    client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path
) -> None:
    tmpl_img, tmpl_vol, img, vol = new_id(), new_id(), new_id(), new_id()
    sim.create_image(pool.src, tmpl_img, [{"volUUID": tmpl_vol, "size": MiB, "extents": [(0, MiB)]}])
    sim.create_disk_from_template(pool.src, img, vol, tmpl_vol, extents=[(0, 8192)])
    with pytest.raises(E.CouldNotValideTemplateOnTargetDomain) as exc:
        client.move_image(pool.sp, pool.src, pool.dst, img, MOVE)
    assert exc.value.vdsm_code == 263
    client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, tmpl_img, COPY))
    st = client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, img, MOVE))
    assert st["taskResult"] == "success" and st["result"]["source_deleted"] is True
    assert st["result"]["copied"] == [vol]
    assert os.path.samefile(volume_path(agent_root, pool.dst, tmpl_img, tmpl_vol),
                            volume_path(agent_root, pool.dst, img, tmpl_vol))
    # the template on the source lost its dependent: it may go now
    client.wait_task(client.delete_image(pool.sp, pool.src, tmpl_img))
    assert client.get_images(pool.sp, pool.src) == []


def test_full_destination_refuses_the_copy(
    client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path
) -> None:
    img, _ = make_chain(sim, pool.src)
    sim.fill_domain(pool.dst)
    before = state(agent_root, pool)
    with pytest.raises(E.NoSpaceLeftOnDomain) as exc:
        client.move_image(pool.sp, pool.src, pool.dst, img, COPY)
    assert exc.value.vdsm_code == 397 and isinstance(exc.value, InsufficientSpace)
    assert state(agent_root, pool) == before
    sim.set_capacity(pool.dst, 1 << 30)
    assert client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, img, COPY))[
        "taskResult"] == "success"


def test_existing_destination_needs_force(
    client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path
) -> None:
    img, vols = make_chain(sim, pool.src)
    client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, img, COPY))
    with pytest.raises(E.DestImageActionError) as exc:
        client.move_image(pool.sp, pool.src, pool.dst, img, COPY)
    assert exc.value.vdsm_code == 260
    dst = volume_path(agent_root, pool.dst, img, vols[2])
    dst.write_bytes(b"garbage")
    st = client.wait_task(client.move_image(pool.sp, pool.src, pool.dst, img, COPY, force=True))
    assert st["taskResult"] == "success"
    assert guest_view(dst) == guest_view(volume_path(agent_root, pool.src, img, vols[2]))


@pytest.mark.parametrize(
    "case, error, code",
    [
        ("unknown domain", E.StorageDomainDoesNotExist, 358),
        ("other pool", E.StorageDomainNotInPool, 353),
        ("malformed id", E.InvalidUUID, 1000),
        ("image absent", E.ImageDoesNotExistInSD, 268),
        ("same domain", E.InvalidParameter, 1000),
        ("bad op", E.InvalidParameter, 1000),
        ("missing parameter", E.InvalidParameter, 1000),
    ],
)
def test_bad_request_gets_a_typed_error_and_changes_no_file(
    client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path, agent: AgentProcess,
    case: str, error: type[E.AgentError], code: int,
) -> None:
    img, _ = make_chain(sim, pool.src)
    tasks_before = client.get_all_tasks_statuses()
    before = state(agent_root, pool)
    calls = {
        "unknown domain": lambda: client.move_image(pool.sp, pool.src, new_id(), img, COPY),
        "other pool": lambda: client.move_image(new_id(), pool.src, pool.dst, img, COPY),
        "malformed id": lambda: client.move_image(pool.sp, pool.src, pool.dst, "not-a-uuid", COPY),
        "image absent": lambda: client.move_image(pool.sp, pool.src, pool.dst, new_id(), COPY),
        "same domain": lambda: client.move_image(pool.sp, pool.src, pool.src, img, COPY),
        "bad op": lambda: client.move_image(pool.sp, pool.src, pool.dst, img, 3),
        "missing parameter": lambda: client.call("Image.move", spUUID=pool.sp, imgUUID=img),
    }
    with pytest.raises(error) as exc:
        calls[case]()
    assert exc.value.vdsm_code == code
    assert state(agent_root, pool) == before
    assert client.get_all_tasks_statuses() == tasks_before
    if case in ("unknown domain", "other pool"):
        assert isinstance(exc.value, WrongStorageDomain)
    if case == "malformed id":
        assert isinstance(exc.value, MalformedId) and exc.value.details["parameter"] == "imgUUID"


def test_bad_delete_requests_change_no_file(
    client: StorageClient, sim: SimControl, pool: Pool, agent_root: Path
) -> None:
    make_chain(sim, pool.src)
    before = state(agent_root, pool)
    with pytest.raises(E.ImageDoesNotExistInSD):
        client.delete_image(pool.sp, pool.src, new_id())
    with pytest.raises(E.StorageDomainDoesNotExist):
        client.delete_image(pool.sp, new_id(), new_id())
    with pytest.raises(E.InvalidUUID):
        client.delete_image(pool.sp, pool.src, "../../etc")
    with pytest.raises(E.UnknownTask):
        client.get_task_status(new_id())
    with pytest.raises(E.ProtocolError):
        client.call("Image.explode")
    assert state(agent_root, pool) == before
