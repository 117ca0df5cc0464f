"""``movedisk verify``: the DBA checks of the database plus a comparison with the storage.

The database part is ``VerifyAll()`` (sql/procedures/verify_sp.sql), run in a READ ONLY
transaction, so it works against a streaming replica and as ``movedisk_dba``. The storage
part reads what the storage agent holds from its files (as ``movedisk agent ls`` does,
whether the agent runs or not) and compares it with ``GetExpectedVolumesOnStorage()``:

- ``volume_unknown`` (error): a volume on a domain that no disk, leftover, move or pending
  deletion (``image_groups_to_be_deleted``) accounts for (invariant I2: nothing untracked);
- ``volume_missing`` (error): a disk's volume mapped to a domain that does not hold it (I1);
- ``volume_corrupt`` (error): a disk's volume whose data no longer matches its checksum, whose
  data file is gone or that the storage marks ILLEGAL (I1);
- ``leftover_absent`` (warning): a leftover recorded in ``images_to_be_deleted`` whose source
  copy is no longer on its domain (its deletion happened but was not recorded; ``movedisk
  remove`` or recovery clears the record);
- ``removal_unfinished`` (warning): an image group whose deletion started on the storage
  (``_remove_me_``) and that no disk, leftover or pending deletion in the database accounts
  for, so nothing will finish it.

A move may commit between the two reads: the storage is compared with the database read
before and after walking it, and only a finding that holds against both is reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from .agent import datacopy
from .agent.layout import Root, walk
from .db import call


@dataclass(frozen=True)
class Finding:
    """One finding, in the shape of the package's ``verify_finding`` plus where it came from."""

    check_name: str
    severity: str
    entity_type: str
    entity_id: str | None
    related_ids: tuple[str, ...]
    message: str
    source: str = "database"

    @property
    def key(self) -> tuple[str, str | None, tuple[str, ...]]:
        return (self.check_name, self.entity_id, self.related_ids)

    def to_json(self) -> dict[str, Any]:
        return {
            "check_name": self.check_name,
            "severity": self.severity,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "related_ids": list(self.related_ids),
            "message": self.message,
            "source": self.source,
        }


def database_findings(conn: psycopg.Connection[Any], leftover_age: str | None = None,
                      command_age: str | None = None) -> list[Finding]:
    """Every finding of ``VerifyAll`` (ages as PostgreSQL intervals, e.g. '6 hours')."""
    args: list[Any] = []
    if leftover_age is not None or command_age is not None:
        args = [leftover_age or "1 day", command_age or "5 minutes"]
    return [
        Finding(
            check_name=r["check_name"],
            severity=r["severity"],
            entity_type=r["entity_type"],
            entity_id=str(r["entity_id"]) if r["entity_id"] is not None else None,
            related_ids=tuple(str(x) for x in r["related_ids"] or ()),
            message=r["message"],
        )
        for r in call(conn, "VerifyAll", *args)
    ]


@dataclass(frozen=True)
class Expected:
    storage_domain_id: str
    image_group_id: str
    image_id: str | None  # None: the whole image group (PENDING_DELETION)
    kind: str  # DISK, LEFTOVER, MOVE_COPY or PENDING_DELETION
    disk_alias: str
    temporary_image_id: str | None


def expected_volumes(conn: psycopg.Connection[Any]) -> list[Expected]:
    """What the database says each domain holds (GetExpectedVolumesOnStorage)."""
    return [
        Expected(
            storage_domain_id=str(r["storage_domain_id"]),
            image_group_id=str(r["image_group_id"]),
            image_id=str(r["image_id"]) if r["image_id"] is not None else None,
            kind=r["kind"],
            disk_alias=r["disk_alias"] or "",
            temporary_image_id=str(r["temporary_image_id"]) if r["temporary_image_id"] else None,
        )
        for r in call(conn, "GetExpectedVolumesOnStorage")
    ]


@dataclass
class StoredVolume:
    storage_domain_id: str
    image_group_id: str
    image_id: str
    legality: str
    has_data: bool
    checksum_ok: bool | None  # None: not computed


@dataclass
class StorageView:
    """The volumes an agent root holds (shared template links left out: their owner counts)."""

    root: str
    volumes: dict[tuple[str, str, str], StoredVolume] = field(default_factory=dict)
    removing: list[tuple[str, str]] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)


def read_storage(root: str | Path, checksums: bool = True,
                 only: Iterable[tuple[str, str, str]] | None = None) -> StorageView:
    """Walk the agent's files; recompute checksums of the volumes in ``only`` (all if None)."""
    r = Root(root)
    view = StorageView(str(r.root))
    wanted = set(only) if only is not None else None
    for d in walk(r):
        sd = d["sdUUID"]
        view.domains.append(sd)
        view.removing += [(sd, img) for img in d["removing"]]
        for img in d["images"]:
            for v in img["volumes"]:
                if v.get("shared"):
                    continue
                key = (sd, img["imgUUID"], v["volUUID"])
                path = r.image_dir(sd, img["imgUUID"]) / v["volUUID"]
                has_data = path.exists()
                ok: bool | None = None
                if checksums and has_data and (wanted is None or key in wanted):
                    try:
                        ok = datacopy.checksum(str(path)) == v.get("checksum")
                    except FileNotFoundError:  # its image group deleted while we read it
                        continue
                view.volumes[key] = StoredVolume(sd, img["imgUUID"], v["volUUID"],
                                                 str(v.get("legality", "")), has_data, ok)
    return view


def _vol_finding(check: str, severity: str, vol: str, img: str, sd: str, message: str) -> Finding:
    return Finding(check, severity, "volume", vol, (img, sd), message, source="storage")


def compare(expected: list[Expected], storage: StorageView) -> list[Finding]:
    """Findings of the database's expectations against what the storage holds."""
    out: list[Finding] = []
    known = {(e.storage_domain_id, e.image_group_id, e.image_id) for e in expected}
    groups = {(e.storage_domain_id, e.image_group_id) for e in expected if e.image_id is None}
    for e in expected:
        if e.image_id is None:
            continue  # a pending deletion: whatever of the image group is left may be there
        key = (e.storage_domain_id, e.image_group_id, e.image_id)
        stored = storage.volumes.get(key)
        what = f"volume {e.image_id} of disk {e.image_group_id} ({e.disk_alias or 'no alias'})"
        if e.kind == "DISK":
            if stored is None:
                out.append(_vol_finding(
                    "volume_missing", "error", e.image_id, e.image_group_id, e.storage_domain_id,
                    f"{what} is mapped to domain {e.storage_domain_id}, which does not hold it"))
            elif not stored.has_data:
                out.append(_vol_finding(
                    "volume_corrupt", "error", e.image_id, e.image_group_id, e.storage_domain_id,
                    f"{what} on domain {e.storage_domain_id} has metadata but no data file"))
            elif stored.checksum_ok is False:
                out.append(_vol_finding(
                    "volume_corrupt", "error", e.image_id, e.image_group_id, e.storage_domain_id,
                    f"{what} on domain {e.storage_domain_id} does not match its checksum"))
            elif stored.legality and stored.legality != "LEGAL":
                out.append(_vol_finding(
                    "volume_corrupt", "error", e.image_id, e.image_group_id, e.storage_domain_id,
                    f"{what} on domain {e.storage_domain_id} is {stored.legality} on the storage"))
        elif e.kind == "LEFTOVER" and stored is None:
            out.append(_vol_finding(
                "leftover_absent", "warning", e.image_id, e.image_group_id, e.storage_domain_id,
                f"the leftover {what} on domain {e.storage_domain_id} is recorded (temporary "
                f"image {e.temporary_image_id}) but the domain no longer holds it"))
    accounted = {(e.storage_domain_id, e.image_group_id) for e in expected}
    for sd, img in sorted(storage.removing):
        if (sd, img) not in accounted:
            out.append(Finding(
                "removal_unfinished", "warning", "image_group", img, (sd,),
                f"the deletion of image group {img} on domain {sd} started and did not finish "
                f"(_remove_me_{img}), and nothing in the database will finish it; it holds "
                "space and blocks a move of that disk onto the domain", source="storage"))
    for key, v in sorted(storage.volumes.items()):
        if key not in known and key[:2] not in groups:
            out.append(_vol_finding(
                "volume_unknown", "error", v.image_id, v.image_group_id, v.storage_domain_id,
                f"volume {v.image_id} of image group {v.image_group_id} on domain "
                f"{v.storage_domain_id} belongs to no disk, leftover or move in the database"))
    return out


@dataclass
class StorageReport:
    """What the storage comparison looked at, and what it found."""

    findings: list[Finding]
    domains: int
    volumes: int
    checksummed: int

    def to_json(self) -> dict[str, int]:
        return {"domains": self.domains, "volumes": self.volumes, "checksummed": self.checksummed}


def compare_storage(conn: psycopg.Connection[Any], root: str | Path,
                    checksums: bool = True) -> StorageReport:
    """The storage comparison, kept to findings that hold before and after the walk.

    ``conn`` should be in autocommit or READ COMMITTED mode with a fresh transaction per
    read (each ``expected_volumes`` call is its own snapshot).
    """
    before = expected_volumes(conn)
    _end_transaction(conn)
    disks = {(e.storage_domain_id, e.image_group_id, e.image_id or "") for e in before
             if e.kind == "DISK"}
    storage = read_storage(root, checksums=checksums, only=disks)
    after = expected_volumes(conn)
    _end_transaction(conn)
    second = {f.key for f in compare(after, storage)}
    return StorageReport(
        findings=[f for f in compare(before, storage) if f.key in second],
        domains=len({sd for sd, _, _ in storage.volumes} | set(storage.domains)),
        volumes=len(storage.volumes),
        checksummed=sum(1 for v in storage.volumes.values() if v.checksum_ok is not None),
    )


def storage_findings(conn: psycopg.Connection[Any], root: str | Path,
                     checksums: bool = True) -> list[Finding]:
    """The findings of :func:`compare_storage`."""
    return compare_storage(conn, root, checksums).findings


def _end_transaction(conn: psycopg.Connection[Any]) -> None:
    if not conn.autocommit:
        conn.rollback()  # read-only work: ends the snapshot, changes nothing


def agent_root_of(socket: str | None) -> str:
    """The agent root to read: the running agent's (asked over ``socket``) or the embedded one."""
    from .embedded import EmbeddedAgent

    if socket:
        from .agent.client import StorageClient

        return str(StorageClient(socket, timeout=10.0).ping()["root"])
    return str(EmbeddedAgent.default().root)

