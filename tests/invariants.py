"""ONE checker of DESIGN.md's invariants I1-I6, shared by every test that crashes something
(engine tests, the crash matrix, the model-based test).

``check(conn, agent_root, expected)`` raises AssertionError listing every violation:

- I1 no data lost: every volume of every (non-temporary) disk exists on the domain the database
  maps it to, LEGAL, and its bytes hash to the checksum recorded when it was made (``expected``:
  volume id -> checksum; volumes not in it are checked against their own .meta checksum);
- I2 nothing untracked: every image group directory on a domain is a disk mapped there, a
  recorded leftover (images_to_be_deleted, src_storage), a recorded pending deletion, or the
  destination of a move in flight (its temporary disk LOCKED);
- I3 every images_to_be_deleted row has its temporary image and every temporary image its row;
- I4 (``settled=True``, after recovery) no image LOCKED, no unfinished move, no ACTIVE command;
- I5 the live original is never deleted: I1 over the originals of temporary disks;
- I6 quota and usage views agree (VerifyAll finds no quota_usage_mismatch), and VerifyAll's
  consistency checks find nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from movedisk.agent import datacopy

LEFTOVER_SUFFIX = "_To_Be_Deleted"


def _rows(conn: psycopg.Connection[Any], query: str, params: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def volume_checksums(agent_root: Path, domains: Any = None) -> dict[str, str]:
    """Checksum of every volume file owned by its image group, by volume id (for ``expected``);
    only on ``domains`` (ids) when given (a shared agent holds other tests' domains too)."""
    out = {}
    patterns = [f"{sd}/images/*/*.meta" for sd in domains] if domains is not None else [
        "*/images/*/*.meta"]
    metas = [m for pattern in patterns for m in Path(agent_root, "domains").glob(pattern)]
    for meta_path in metas:
        meta = json.loads(meta_path.read_text())
        if meta.get("image") == meta_path.parent.name:
            out[meta["volUUID"]] = datacopy.checksum(str(meta_path.with_suffix("")))
    return out


def check(conn: psycopg.Connection[Any], agent_root: Path, expected: dict[str, str] | None = None,
          settled: bool = True) -> None:
    expected = expected or {}
    problems: list[str] = []
    domains = Path(agent_root, "domains")

    # I1 / I5: the volumes of every disk where the database maps them, intact.
    mapped = _rows(conn, """
        SELECT i.image_guid::text AS vol, i.image_group_id::text AS img,
               m.storage_domain_id::text AS sd, b.disk_alias AS alias,
               EXISTS (SELECT 1 FROM images_to_be_deleted t WHERE t.image_id = i.image_guid) AS tmp
        FROM images i
        JOIN image_storage_domain_map m ON m.image_id = i.image_guid
        LEFT JOIN base_disks b ON b.disk_id = i.image_group_id""")
    for r in mapped:
        if r["tmp"]:
            continue
        vol_dir = domains / r["sd"] / "images" / r["img"]
        path, meta_path = vol_dir / r["vol"], vol_dir / f"{r['vol']}.meta"
        if not path.exists() or not meta_path.exists():
            problems.append(f"I1 volume {r['vol']} of disk {r['alias']} missing on {r['sd']}")
            continue
        meta = json.loads(meta_path.read_text())
        if meta.get("legality") != "LEGAL":
            problems.append(f"I1 volume {r['vol']} of disk {r['alias']} is {meta.get('legality')}")
        got = datacopy.checksum(str(path))
        want = expected.get(r["vol"], meta.get("checksum"))
        if got != want:
            problems.append(f"I1 volume {r['vol']} of disk {r['alias']} on {r['sd']}: checksum "
                            f"{got}, expected {want}")

    # I2: every image group directory is known.
    known = {(r["sd"], r["img"]) for r in mapped if not r["tmp"]}
    known |= {(r["sd"], r["img"]) for r in _rows(conn, """
        SELECT src_storage::text AS sd, src_image_group_id::text AS img FROM images_to_be_deleted""")}
    known |= {(r["sd"], r["img"]) for r in _rows(conn, """
        SELECT storage_domain_id::text AS sd, image_group_id::text AS img FROM image_groups_to_be_deleted""")}
    # A move in flight (its temporary disk LOCKED) is copying to its destination.
    known |= {(r["sd"], r["img"]) for r in _rows(conn, """
        SELECT t.dest_storage::text AS sd, t.src_image_group_id::text AS img
        FROM images_to_be_deleted t JOIN images i ON i.image_guid = t.image_id
        WHERE i.imagestatus = 2""")}
    ours = {r["id"] for r in _rows(conn, "SELECT id::text AS id FROM storage_domain_static")}
    if domains.exists():
        for sd_dir in domains.iterdir():
            if sd_dir.name not in ours:  # another database's domain (a shared agent)
                continue
            images = sd_dir / "images"
            if not images.is_dir():
                continue
            for img_dir in images.iterdir():
                name = img_dir.name.removeprefix("_remove_me_")
                if (sd_dir.name, name) not in known:
                    problems.append(f"I2 untracked image group {img_dir.name} on {sd_dir.name}")

    # I3: rows <-> temporary images.
    for r in _rows(conn, """
        SELECT i.image_guid::text AS vol FROM images i JOIN base_disks b ON b.disk_id = i.image_group_id
        WHERE b.disk_alias LIKE %s
          AND NOT EXISTS (SELECT 1 FROM images_to_be_deleted t WHERE t.image_id = i.image_guid)""",
            ("%" + LEFTOVER_SUFFIX,)):
        problems.append(f"I3 temporary image {r['vol']} has no images_to_be_deleted row")
    for r in _rows(conn, """
        SELECT t.image_id::text AS vol FROM images_to_be_deleted t
        WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.image_guid = t.image_id)"""):
        problems.append(f"I3 images_to_be_deleted row {r['vol']} has no image")

    # I4: nothing in flight once recovery ran.
    if settled:
        for r in _rows(conn, "SELECT image_guid::text AS vol FROM images WHERE imagestatus = 2"):
            problems.append(f"I4 image {r['vol']} is LOCKED")
        for r in _rows(conn, "SELECT command_id::text AS c, stage FROM move_disk_commands "
                             "WHERE ended_at IS NULL"):
            problems.append(f"I4 move {r['c']} unfinished at {r['stage']}")
        for r in _rows(conn, "SELECT command_id::text AS c FROM command_entities WHERE status = 'ACTIVE'"):
            problems.append(f"I4 command {r['c']} is ACTIVE")

    # I6 and the DBA checks.
    for r in _rows(conn, "SELECT * FROM VerifyAll()"):
        if r["check_name"] in ("old_leftover",):
            continue
        if not settled and r["check_name"] in ("locked_image_without_command", "command_without_task"):
            continue
        problems.append(f"I6/verify {r['check_name']}: {r['message']}")

    assert not problems, "invariants violated:\n  " + "\n  ".join(problems)


def agent_files(agent_root: Path) -> set[str]:
    """Every image group directory on every domain ("sd/img"), to compare before and after."""
    out = set()
    for dirpath in Path(agent_root, "domains").glob("*/images/*"):
        out.add(f"{dirpath.parent.parent.name}/{dirpath.name}")
    return out


__all__ = ["agent_files", "check", "volume_checksums", "os"]
