"""Reading the storage while the agent deletes: ``agent ls`` and ``movedisk verify`` walk the
files of a live agent, and an image group may be renamed away (deleted) between the listing of
a domain's image groups and the reading of one of them, or a volume file between its listing
and its checksum. Neither may fail the walk (test_verify_live once did: ImageDoesNotExistInSD
out of verify while a move deleted its source)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from agenttools import Pool, new_id

from movedisk import verify as verify_mod
from movedisk.agent import SimControl, datacopy
from movedisk.agent.layout import Root, walk

MiB = 1 << 20


def _two_images(sim: SimControl, pool: Pool) -> tuple[str, str]:
    imgs = (new_id(), new_id())
    for i, img in enumerate(imgs):
        sim.create_image(pool.src, img, [{"volUUID": new_id(), "size": MiB,
                                          "extents": [(0, 65536)], "seed": i}])
    return imgs


def test_an_image_group_deleted_after_the_listing_is_left_out(
    sim: SimControl, pool: Pool, agent_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept, gone = _two_images(sim, pool)
    root = Root(agent_root)
    listed = root.image_ids(pool.src)
    assert set(listed) == {kept, gone}
    shutil.rmtree(root.image_dir(pool.src, gone))  # as if deleted right after the listing
    monkeypatch.setattr(Root, "image_ids", lambda self, sd: listed if sd == pool.src else [])
    (dom,) = [d for d in walk(root) if d["sdUUID"] == pool.src]
    assert [i["imgUUID"] for i in dom["images"]] == [kept]
    view = verify_mod.read_storage(agent_root)
    assert {img for (_, img, _) in view.volumes} == {kept}


def test_a_volume_deleted_while_its_checksum_is_read_is_left_out(
    sim: SimControl, pool: Pool, agent_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept, gone = _two_images(sim, pool)
    real = datacopy.checksum

    def vanishing(path: str) -> str:
        if f"/{gone}/" in path:
            raise FileNotFoundError(path)
        return real(path)

    monkeypatch.setattr(datacopy, "checksum", vanishing)
    view = verify_mod.read_storage(agent_root)
    assert {img for (_, img, _) in view.volumes} == {kept}
    assert all(v.checksum_ok for v in view.volumes.values())
