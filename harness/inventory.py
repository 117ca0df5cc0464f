"""``movedisk inventory FILE``: data centers, storage domains, templates, VMs and disks (with
snapshot chains, and disks based on a template's disk) created on the database, through the
package's Insert* functions, and on the storage agent (Sim.createDomain, Sim.createImage) at
once. The database side is one transaction, committed only once the agent made everything.

The file (JSON; sizes are bytes or strings like "8M", "1G"; ids default to stable uuid5s of
the names, so that the same file gives the same ids)::

    {"data_centers": [{
        "name": "dc1",
        "domains": [{"name": "sd1", "capacity": "1G"}, {"name": "sd2", "status": "active"}],
        "templates": [{"name": "tpl", "domain": "sd1",
                       "disks": [{"alias": "tpl-os", "size": "16M", "data": "4M"}]}],
        "vms": [{"name": "vm1", "template": "tpl",
                 "disks": [{"alias": "vm1-os", "domain": "sd1", "template_disk": "tpl-os",
                            "size": "16M", "data": "1M", "snapshots": 2},
                           {"alias": "vm1-data", "domain": "sd1", "size": "8M", "data": "2M",
                            "wipe_after_delete": true}]}]
    }]}

A disk has ``snapshots`` + 1 volumes (base first), qcow2 images; with ``template_disk`` its base
volume's parent is that template disk's volume (the template must be on the same domain).
``status`` of a domain: active (default), maintenance, inactive.

A disk can instead be made of existing images: ``{"alias": "legacy", "domain": "sd1",
"import": {"dir": "/srv/images/legacy"}}`` (``"import": "/srv/images/legacy"`` is the same; a
relative dir is taken from the inventory file's directory). The directory holds one chain of
qcow2/raw images (each naming its parent as backing file, inside the directory; see ``movedisk
agent import``): the agent adopts it as one image group of the domain (the files are copied,
the originals left alone) and the database records its volumes with the format, virtual size,
parent and allocation the agent reads from the images. The disk's id is the image group's (the
directory's name when that is a UUID); ``size``, ``data``, ``snapshots`` and ``template_disk``
do not apply.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg

from .agent import SimControl, images
from .agent.errors import AgentError
from .agent.layout import BLANK_UUID
from .db import call
from .errors import MovediskError

_SALT = ""
_REHEARSAL = False  # build's first pass: the database alone, rolled back
NAMESPACE = uuid.UUID("6f1d6b35-7c1e-4f4e-9a55-6d6f76656469")
ZERO = uuid.UUID(int=0)
DOMAIN_STATUS = {"active": 3, "maintenance": 6, "inactive": 4}
GB = 1 << 30
VOLUME_FORMAT = {images.COW: 4, images.RAW: 5}  # oVirt VolumeFormat


class _Rehearsed(Exception):
    """Ends the rehearsal transaction of :func:`build`."""


class InventoryError(MovediskError):
    """The inventory file is not valid (nothing was created)."""

    code = "MD112"
    exit_code = 16


def size_of(value: Any, what: str) -> int:
    if isinstance(value, int) and value >= 0:
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", str(value), re.I)
    if not m:
        raise InventoryError(f"{what}: not a size: {value!r}")
    return int(m.group(1)) << (10 * " KMGT".index(m.group(2).upper() or " "))


def id_of(item: dict[str, Any], kind: str, name: str, salt: str = "") -> uuid.UUID:
    if item.get("id"):
        try:
            return uuid.UUID(str(item["id"]))
        except ValueError:
            raise InventoryError(f"{kind} {name}: id {item['id']!r} is not a UUID") from None
    return uuid.uuid5(NAMESPACE, f"{salt or _SALT}{kind}:{name}")


@dataclass
class Made:
    data_centers: dict[str, str] = field(default_factory=dict)
    domains: dict[str, str] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    vms: dict[str, str] = field(default_factory=dict)
    disks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"data_centers": self.data_centers, "domains": self.domains,
                "templates": self.templates, "vms": self.vms, "disks": self.disks}


def load(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InventoryError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise InventoryError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("data_centers"), list):
        raise InventoryError(f"{path}: expected an object with a list 'data_centers'")
    base = Path(path).absolute().parent
    for dc in data["data_centers"]:  # import dirs relative to the file
        for owner in [*dc.get("templates", []), *dc.get("vms", [])] if isinstance(dc, dict) else []:
            for disk in owner.get("disks", []) if isinstance(owner, dict) else []:
                if isinstance(disk, dict) and "import" in disk:
                    imp = disk["import"]
                    d = imp.get("dir") if isinstance(imp, dict) else imp
                    if isinstance(d, str) and d:
                        disk["import"] = {**(imp if isinstance(imp, dict) else {}),
                                          "dir": str(base / d)}
    return data


def build(conn: psycopg.Connection[Any], sim: SimControl | None, spec: dict[str, Any],
          salt: str = "") -> Made:
    """Create everything in ``spec`` on the database (one transaction) and on the agent
    (``sim``; None: the database only, for storage already made from the same file).
    ``salt`` varies the ids derived from names (tests build the same file many times)."""
    global _SALT, _REHEARSAL
    _SALT = salt
    if sim is not None:
        # A rehearsal on the database alone, rolled back: a bad file fails here, before the
        # agent made anything.
        _REHEARSAL = True
        try:
            with conn.transaction():
                for dc in spec["data_centers"]:
                    _data_center(conn, None, dc, Made())
                raise _Rehearsed
        except _Rehearsed:
            pass
        finally:
            _REHEARSAL = False
    made = Made()
    with conn.transaction():
        for dc in spec["data_centers"]:
            _data_center(conn, sim, dc, made)
    return made


def _data_center(conn: psycopg.Connection[Any], sim: SimControl | None, dc: dict[str, Any], made: Made) -> None:
    name = str(dc.get("name") or "")
    if not name:
        raise InventoryError("a data center needs a name")
    sp = id_of(dc, "dc", name)
    call(conn, "Insertstorage_pool", "", "", sp, name, 1, False, 1, None, "4.7", 0, True)
    made.data_centers[name] = str(sp)
    domains: dict[str, uuid.UUID] = {}
    for d in dc.get("domains", []):
        dname = str(d.get("name") or "")
        if not dname:
            raise InventoryError(f"data center {name}: a domain needs a name")
        sd = id_of(d, "sd", dname)
        capacity = size_of(d.get("capacity", "1G"), f"domain {dname} capacity")
        status = DOMAIN_STATUS.get(str(d.get("status", "active")))
        if status is None:
            raise InventoryError(f"domain {dname}: status must be one of {sorted(DOMAIN_STATUS)}")
        call(conn, "Insertstorage_domain_static", sd, f"/rhev/data-center/{sp}/{sd}", dname, "", "",
             1, 1, "5", 0, False, False, None, None, 10, 5, 0, False, 512)
        call(conn, "Insertstorage_domain_dynamic", max(1, capacity // GB), sd, 0)
        call(conn, "Insertstorage_pool_iso_map", sd, sp, status)
        if sim is not None:
            sim.create_domain(str(sd), str(sp), capacity, description=dname)
        domains[dname] = sd
        made.domains[dname] = str(sd)
    template_vols: dict[str, tuple[uuid.UUID, str, int]] = {}  # template disk alias -> (vol, sd, size)
    for t in dc.get("templates", []):
        tname = str(t.get("name") or "")
        tid = id_of(t, "template", tname)
        call(conn, "InsertVmTemplateRow", None, "", "", 1024, tname, 0, tid, None, 0, None, "TEMPLATE",
             None)
        made.templates[tname] = str(tid)
        for disk in t.get("disks", []):
            disk = {**disk, "domain": disk.get("domain", t.get("domain")), "snapshots": 0}
            vols = _disk(conn, sim, disk, domains, template_vols, tid, made)
            template_vols[str(disk["alias"])] = (vols[0], str(disk["domain"]),
                                                 size_of(disk.get("size", "16M"), "size"))
    for vm in dc.get("vms", []):
        vname = str(vm.get("name") or "")
        vid = id_of(vm, "vm", vname)
        tmpl = vm.get("template")
        vmt = uuid.UUID(made.templates[tmpl]) if tmpl else ZERO
        if tmpl and tmpl not in made.templates:
            raise InventoryError(f"vm {vname}: unknown template {tmpl!r}")
        call(conn, "InsertVmStaticRow", "", "", 1024, 0, None, vid, vname, vmt, None, None, None)
        made.vms[vname] = str(vid)
        for disk in vm.get("disks", []):
            _disk(conn, sim, disk, domains, template_vols, vid, made)


def _disk(conn: psycopg.Connection[Any], sim: SimControl | None, disk: dict[str, Any],
          domains: dict[str, uuid.UUID], template_vols: dict[str, tuple[uuid.UUID, str, int]],
          owner_id: uuid.UUID, made: Made) -> list[uuid.UUID]:
    alias = str(disk.get("alias") or "")
    if not alias:
        raise InventoryError("a disk needs an alias")
    dom = disk.get("domain")
    if dom not in domains:
        raise InventoryError(f"disk {alias}: unknown domain {dom!r}")
    sd = domains[dom]
    if "import" in disk:
        return _imported_disk(conn, sim, disk, alias, sd, owner_id, made)
    size = size_of(disk.get("size", "16M"), f"disk {alias} size")
    data = size_of(disk.get("data", "1M"), f"disk {alias} data")
    if data > size:
        raise InventoryError(f"disk {alias}: data ({data}) is larger than its size ({size})")
    disk_id = id_of(disk, "disk", alias)
    parent, it_guid = ZERO, ZERO
    base = disk.get("template_disk")
    if base:
        if base not in template_vols:
            raise InventoryError(f"disk {alias}: unknown template disk {base!r}")
        parent, tsd, size = template_vols[base][0], template_vols[base][1], template_vols[base][2]
        it_guid = parent
        if tsd != dom:
            raise InventoryError(f"disk {alias}: template disk {base} is on {tsd}, not on {dom}")
    wipe = bool(disk.get("wipe_after_delete", False))
    call(conn, "InsertBaseDisk", disk_id, wipe, "Off", alias, "", False, None, 0, None, 0, "None",
         None)
    count = int(disk.get("snapshots", 0)) + 1
    vols = [uuid.uuid5(disk_id, f"volume:{i}") for i in range(count)]
    seed = int(disk_id.int % 100000)
    agent_vols = []
    prev = parent
    for i, vol in enumerate(vols):
        chunk = data if i == 0 else max(4096, data // 4)
        chunk = min(chunk, size)
        now = datetime.now(timezone.utc)
        call(conn, "InsertImage", now, vol, it_guid, size, prev, 1, now, None, 2,
             VOLUME_FORMAT[images.COW], disk_id, i == count - 1, 0 if i == count - 1 else 1, i + 1)
        call(conn, "Insertdisk_image_dynamic", vol, 0, 0, 0, 0, chunk, None, None, None)
        call(conn, "Insertimage_storage_domain_map", vol, sd, None, None)
        offset = (i * 65536) % max(1, size - chunk + 1)
        offset -= offset % 4096
        agent_vols.append({"volUUID": str(vol), "size": size, "extents": [[offset, chunk]],
                           "seed": seed + i})
        prev = vol
    call(conn, "InsertVmDevice", disk_id, owner_id, "disk", "disk", "", "", True, True, False, "", "",
         None, None, None)
    if sim is not None:
        sim.create_image(str(sd), str(disk_id), agent_vols,
                         parent=str(parent) if parent != ZERO else BLANK_UUID)
    made.disks[alias] = {"id": str(disk_id), "domain": str(sd), "volumes": [str(v) for v in vols]}
    return vols


def _import_dir(disk: dict[str, Any], alias: str) -> Path:
    imp = disk["import"]
    d = imp.get("dir") if isinstance(imp, dict) else imp
    if not isinstance(d, str) or not d:
        raise InventoryError(f"disk {alias}: import needs a directory: "
                             '"import": {"dir": "/path/to/images"}')
    path = Path(d).absolute()
    if not path.is_dir():
        raise InventoryError(f"disk {alias}: import: not a directory: {path}")
    for key in ("size", "data", "snapshots", "template_disk"):
        if key in disk:
            raise InventoryError(f"disk {alias}: {key!r} does not apply to an imported disk "
                                 "(its images say what it is)")
    return path


def _imported_disk(conn: psycopg.Connection[Any], sim: SimControl | None, disk: dict[str, Any],
                   alias: str, sd: uuid.UUID, owner_id: uuid.UUID, made: Made) -> list[uuid.UUID]:
    """A disk made of the existing images of one directory: adopted by the agent
    (Sim.importImages), recorded with what the agent read from them."""
    path = _import_dir(disk, alias)
    if sim is None and not _REHEARSAL:
        raise InventoryError(f"disk {alias}: an imported disk needs the storage agent "
                             "(it adopts the images)")
    try:
        if sim is None:  # the rehearsal: what the agent would make, read here
            plan = images.import_plan(path)
            groups = [{"imgUUID": g.img_id, "template": g.template_parent, "volumes": [
                {"volUUID": v.vol_id, "parent": v.parent_id or BLANK_UUID, "format": v.format,
                 "capacity": v.capacity, "truesize": os.stat(v.path).st_blocks * 512}
                for v in g.volumes]} for g in plan]
        else:
            groups = sim.import_images(str(sd), path)
    except AgentError as exc:
        raise InventoryError(f"disk {alias}: import of {path}: {exc.message}") from None
    if len(groups) != 1 or groups[0].get("template") or any(
            v.get("shared") for v in groups[0]["volumes"]):
        raise InventoryError(f"disk {alias}: {path} holds {len(groups)} chains; an imported "
                             "disk is one chain whose base is in the directory")
    group = groups[0]
    disk_id = uuid.UUID(group["imgUUID"])
    if disk.get("id") and id_of(disk, "disk", alias) != disk_id:
        raise InventoryError(f"disk {alias}: an imported disk's id is its image group's "
                             f"({disk_id}); leave out 'id' or name the directory by it")
    call(conn, "InsertBaseDisk", disk_id, bool(disk.get("wipe_after_delete", False)), "Off",
         alias, "", False, None, 0, None, 0, "None", None)
    vols = group["volumes"]
    ids = []
    for i, v in enumerate(vols):
        vol = uuid.UUID(v["volUUID"])
        parent = ZERO if v["parent"] == BLANK_UUID else uuid.UUID(v["parent"])
        last = i == len(vols) - 1
        now = datetime.now(timezone.utc)
        call(conn, "InsertImage", now, vol, ZERO, int(v["capacity"]), parent, 1, now, None, 2,
             VOLUME_FORMAT[v["format"]], disk_id, last, 0 if last else 1, i + 1)
        call(conn, "Insertdisk_image_dynamic", vol, 0, 0, 0, 0, int(v.get("truesize") or 0),
             None, None, None)
        call(conn, "Insertimage_storage_domain_map", vol, sd, None, None)
        ids.append(vol)
    call(conn, "InsertVmDevice", disk_id, owner_id, "disk", "disk", "", "", True, True, False, "", "",
         None, None, None)
    made.disks[alias] = {"id": str(disk_id), "domain": str(sd), "volumes": [str(v) for v in ids],
                         "imported_from": str(path),
                         "formats": [str(v["format"]) for v in vols]}
    return ids
