"""Rows the feature tests provision: a pool, domains, quotas and disk chains (no tests here).

Sizes are bytes; a domain's free space is in GB as in oVirt's storage_domain_dynamic.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg

ZERO = uuid.UUID(int=0)
OK, LOCKED, ILLEGAL = 1, 2, 4
ACTIVE, MAINTENANCE = 3, 6
GB = 1024**3

# The tables a move touches; a refused call must leave all of them as they were.
TABLES = (
    "images",
    "base_disks",
    "image_storage_domain_map",
    "disk_image_dynamic",
    "images_to_be_deleted",
)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def make_pool(db: psycopg.Connection[Any], name: str | None = None) -> uuid.UUID:
    pool = new_id()
    db.execute(
        "INSERT INTO storage_pool (id, name, description, status, master_domain_version) "
        "VALUES (%s, %s, '', 1, 1)",
        (pool, name or f"dc-{str(pool)[:8]}"),
    )
    return pool


def make_domain(
    db: psycopg.Connection[Any],
    pool: uuid.UUID | None,
    *,
    status: int = ACTIVE,
    available_gb: int | None = 100,
    name: str | None = None,
) -> uuid.UUID:
    sd = new_id()
    db.execute(
        "INSERT INTO storage_domain_static (id, storage, storage_name, storage_domain_type, "
        "storage_type) VALUES (%s, %s, %s, 1, 1)",
        (sd, f"/exports/{sd}", name or f"sd-{str(sd)[:8]}"),
    )
    db.execute(
        "INSERT INTO storage_domain_dynamic (id, available_disk_size, used_disk_size) "
        "VALUES (%s, %s, 0)",
        (sd, available_gb),
    )
    if pool is not None:
        db.execute(
            "INSERT INTO storage_pool_iso_map (storage_id, storage_pool_id, status) "
            "VALUES (%s, %s, %s)",
            (sd, pool, status),
        )
    return sd


def make_quota(db: psycopg.Connection[Any], pool: uuid.UUID) -> uuid.UUID:
    q = new_id()
    db.execute(
        "INSERT INTO quota (id, storage_pool_id, quota_name) VALUES (%s, %s, %s)",
        (q, pool, f"q-{str(q)[:8]}"),
    )
    return q


@dataclass
class Disk:
    disk_id: uuid.UUID
    images: list[uuid.UUID] = field(default_factory=list)  # base first, active last


def make_disk(
    db: psycopg.Connection[Any],
    domain: uuid.UUID,
    *,
    volumes: int = 2,
    size: int = 10 * GB,
    actual_sizes: list[int] | None = None,
    quota: uuid.UUID | None = None,
    alias: str = "disk1",
    wipe_after_delete: bool = False,
    status: int = OK,
    base_parent: uuid.UUID | None = None,
    volume_type: int = 2,
) -> Disk:
    """A disk of ``volumes`` chained volumes on ``domain``; ``base_parent`` is a volume
    outside the chain (a template's) that the base volume is based on."""
    disk = Disk(new_id())
    db.execute(
        "INSERT INTO base_disks (disk_id, disk_alias, wipe_after_delete) VALUES (%s, %s, %s)",
        (disk.disk_id, alias, wipe_after_delete),
    )
    parent = base_parent or ZERO
    actual_sizes = actual_sizes or [GB * (i + 1) for i in range(volumes)]
    for i in range(volumes):
        img = new_id()
        db.execute(
            "INSERT INTO images (image_guid, creation_date, size, it_guid, parentid, imagestatus, "
            "lastmodified, volume_type, volume_format, image_group_id, active) "
            "VALUES (%s, now(), %s, %s, %s, %s, now(), %s, 4, %s, %s)",
            (img, size, base_parent or ZERO, parent, status, volume_type, disk.disk_id,
             i == volumes - 1),
        )
        db.execute(
            "INSERT INTO disk_image_dynamic (image_id, actual_size) VALUES (%s, %s)",
            (img, actual_sizes[i]),
        )
        db.execute(
            "INSERT INTO image_storage_domain_map (image_id, storage_domain_id, quota_id) "
            "VALUES (%s, %s, %s)",
            (img, domain, quota),
        )
        disk.images.append(img)
        parent = img
    return disk


@dataclass
class Setup:
    pool: uuid.UUID
    src: uuid.UUID
    dest: uuid.UUID
    disk: Disk
    quota: uuid.UUID


def setup(db: psycopg.Connection[Any], **disk_args: Any) -> Setup:
    """A pool with two active domains S and D and a 2-volume disk on S."""
    pool = make_pool(db)
    src = make_domain(db, pool, name="S")
    dest = make_domain(db, pool, name="D")
    quota = make_quota(db, pool)
    disk = make_disk(db, src, quota=quota, **disk_args)
    return Setup(pool, src, dest, disk, quota)


def snapshot(db: psycopg.Connection[Any], tables: tuple[str, ...] = TABLES) -> dict[str, list]:
    """Every row of ``tables`` (sorted), to prove a refused call changed nothing."""
    out = {}
    for t in tables:
        rows = db.execute(
            psycopg.sql.SQL("SELECT to_jsonb(x)::text AS r FROM {} AS x ORDER BY 1").format(
                psycopg.sql.Identifier(t)
            )
        ).fetchall()
        out[t] = [r["r"] if isinstance(r, dict) else r[0] for r in rows]
    return out


def refused(db: psycopg.Connection[Any], sqlstate: str, query: str, params: Any = None) -> str:
    """Runs ``query`` in a savepoint, asserts it fails with ``sqlstate`` and changed nothing;
    returns the error message."""
    before = snapshot(db)
    try:
        with db.transaction():
            db.execute(query, params)
    except psycopg.Error as exc:
        assert exc.sqlstate == sqlstate, (exc.sqlstate, str(exc))
        assert snapshot(db) == before
        return exc.diag.message_primary or ""
    raise AssertionError(f"{query} did not fail (expected {sqlstate})")


def move_phase1(db: psycopg.Connection[Any], s: Setup) -> tuple[uuid.UUID, dict]:
    rows = db.execute(
        "SELECT * FROM CreateTemporaryDiskForMove(v_image_group_id => %s, v_src_storage => %s, "
        "v_dest_storage => %s)",
        (s.disk.disk_id, s.src, s.dest),
    ).fetchall()
    return rows[0]["temporary_disk_id"], {r["original_image_id"]: r["temporary_image_id"] for r in rows}


def move_phase3(db: psycopg.Connection[Any], s: Setup) -> int:
    return db.execute(
        "SELECT UpdateImageGroupStorageDomain(v_image_group_id => %s, v_src_storage => %s, "
        "v_dest_storage => %s) AS n",
        (s.disk.disk_id, s.src, s.dest),
    ).fetchone()["n"]
