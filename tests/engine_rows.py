"""Provision engine rows through the oVirt-compatible Insert* functions.

    pool = make_pool(db)                       # data center + two Active data domains
    vm = make_vm(db, pool)                     # a VM
    disk = make_disk(db, pool, pool.domains[0], vm=vm, volumes=3)   # a 3-volume chain

Every helper returns a dataclass with the ids it created. The module also exports oVirt's
status codes (IMAGE_OK/LOCKED/ILLEGAL, DOMAIN_ACTIVE/MAINTENANCE, SPARSE/PREALLOCATED, COW/RAW).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

ZERO = uuid.UUID(int=0)
GB = 1024**3

# oVirt codes
IMAGE_OK, IMAGE_LOCKED, IMAGE_ILLEGAL = 1, 2, 4
PREALLOCATED, SPARSE = 1, 2
COW, RAW = 4, 5
DOMAIN_ACTIVE, DOMAIN_MAINTENANCE = 3, 6
DOMAIN_DATA, DOMAIN_MASTER = 1, 0
STORAGE_NFS = 1
POOL_UP = 1


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Pool:
    id: uuid.UUID
    name: str
    domains: list[uuid.UUID] = field(default_factory=list)
    quota_id: uuid.UUID | None = None


@dataclass
class Vm:
    id: uuid.UUID
    name: str


@dataclass
class Disk:
    id: uuid.UUID  # disk id = image group id
    alias: str
    domain_id: uuid.UUID
    images: list[uuid.UUID]  # base first, leaf (active) last

    @property
    def leaf(self) -> uuid.UUID:
        return self.images[-1]


def make_domain(
    db: Any,
    pool_id: uuid.UUID | None,
    *,
    name: str | None = None,
    status: int = DOMAIN_ACTIVE,
    available_gb: int = 500,
    used_gb: int = 100,
    domain_type: int = DOMAIN_DATA,
) -> uuid.UUID:
    sd = uuid.uuid4()
    name = name or f"sd-{sd.hex[:8]}"
    db.execute(
        "SELECT Insertstorage_domain_static(%s, %s, %s, '', '', %s, %s, '5', NULL, FALSE, FALSE,"
        " NULL, NULL, 10, 5, NULL, FALSE, 512)",
        (sd, f"/exports/{name}", name, STORAGE_NFS, domain_type),
    )
    db.execute("SELECT Insertstorage_domain_dynamic(%s, %s, %s)", (available_gb, sd, used_gb))
    if pool_id is not None:
        db.execute("SELECT Insertstorage_pool_iso_map(%s, %s, %s)", (sd, pool_id, status))
    return sd


def make_pool(db: Any, *, domains: int = 2, name: str | None = None, quota: bool = True) -> Pool:
    pid = uuid.uuid4()
    name = name or f"dc-{pid.hex[:8]}"
    db.execute(
        "SELECT Insertstorage_pool('', '', %s, %s, %s, FALSE, 1, NULL, '4.7', 0, TRUE)",
        (pid, name, POOL_UP),
    )
    pool = Pool(pid, name)
    for i in range(domains):
        pool.domains.append(
            make_domain(db, pid, domain_type=DOMAIN_MASTER if i == 0 else DOMAIN_DATA)
        )
    if quota:
        pool.quota_id = uuid.uuid4()
        db.execute(
            "SELECT InsertQuota(%s, %s, %s, '', 80, 80, 20, 20, TRUE)",
            (pool.quota_id, pid, f"default-{pid.hex[:8]}"),
        )
        db.execute(
            "SELECT InsertQuotaLimitation(%s, %s, NULL, NULL, NULL, NULL, %s)",
            (uuid.uuid4(), pool.quota_id, -1),
        )
    return pool


def make_vm(db: Any, pool: Pool | None = None, *, name: str | None = None) -> Vm:
    vid = uuid.uuid4()
    name = name or f"vm-{vid.hex[:8]}"
    db.execute(
        "SELECT InsertVmStaticRow('', '', 1024, 0, NULL, %s, %s, %s, %s, %s, NULL)",
        (vid, name, ZERO, now(), pool.quota_id if pool else None),
    )
    return Vm(vid, name)


def make_disk(
    db: Any,
    pool: Pool,
    domain_id: uuid.UUID | None = None,
    *,
    vm: Vm | None = None,
    volumes: int = 3,
    size: int = 10 * GB,
    actual_size: int = GB,
    status: int = IMAGE_OK,
    alias: str | None = None,
    wipe_after_delete: bool = False,
) -> Disk:
    """A disk of ``volumes`` chained volumes on one domain, attached to ``vm`` if given."""
    domain_id = domain_id or pool.domains[0]
    did = uuid.uuid4()
    alias = alias or f"disk-{did.hex[:8]}"
    db.execute(
        "SELECT InsertBaseDisk(%s, %s, 'Off', %s, '', FALSE, NULL, 0::SMALLINT, NULL, 0::SMALLINT, 'None', NULL)",
        (did, wipe_after_delete, alias),
    )
    images: list[uuid.UUID] = []
    parent = ZERO
    for i in range(volumes):
        img = uuid.uuid4()
        leaf = i == volumes - 1
        db.execute(
            "SELECT InsertImage(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (now(), img, ZERO, size, parent, status, now(), uuid.uuid4(),
             SPARSE, COW, did, leaf, 0 if leaf else 1, i + 1),
        )
        db.execute(
            "SELECT Insertimage_storage_domain_map(%s, %s, %s, NULL)",
            (img, domain_id, pool.quota_id),
        )
        db.execute(
            "SELECT Insertdisk_image_dynamic(%s, 0, 0, 0, 0, %s, 0, 0, 0)", (img, actual_size)
        )
        images.append(img)
        parent = img
    if vm is not None:
        db.execute(
            "SELECT InsertVmDevice(%s, %s, 'disk', 'disk', '', '', TRUE, TRUE, FALSE, '', NULL,"
            " NULL, NULL, NULL)",
            (did, vm.id),
        )
    return Disk(did, alias, domain_id, images)
